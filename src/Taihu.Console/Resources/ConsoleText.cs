namespace Taihu.WebConsole.Resources;

/// <summary>The console's user-visible text (ConsoleText.resx; a ConsoleText.zh-Hans.resx beside it adds Chinese).</summary>
public sealed class ConsoleText;
