using Taihu.Server;
using Taihu.WebConsole;

SocketCompletions.RunInline();
var builder = WebApplication.CreateBuilder(args);
builder.AddTaihu();
builder.Services.AddTaihuConsole();
WebApplication app;
try
{
    // Building configures the listeners, which checks every setting first (TaihuServerExtensions.ValidateSettings).
    app = builder.Build();
}
catch (InvalidSettingsException e)
{
    // A bad setting is the operator's to fix: say which, without a stack trace.
    Console.Error.WriteLine($"Taihu cannot start: {e.Message}");
    return 1;
}

app.UseWebSockets();
app.MapTaihu();
app.MapTaihuConsole();
app.Run();
return 0;

/// <summary>The entry point, visible to functional tests.</summary>
public partial class Program;
