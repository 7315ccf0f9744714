using System.CommandLine;
using Taihu.ConsoleBench;

var root = new RootCommand("Taihu.ConsoleBench: the web console measured in a real browser (Debian's chromium) against a running Taihu server.");
foreach (var command in ConsoleBenchCommands.Create())
{
    root.Subcommands.Add(command);
}

return await root.Parse(args).InvokeAsync();
