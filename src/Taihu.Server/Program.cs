using Taihu.Server;
using Taihu.WebConsole;

// Settings are read once, at start (nothing reloads them), so the settings files are not watched: .NET's watcher
// covers the whole content root with its subdirectories, and with the data directory under it (the default when
// started with `dotnet run`) every write to the database woke its thread (8% of the server's CPU under ingest in a
// profile). Given first, so that an argument on the command line can still turn it on.
var builder = WebApplication.CreateBuilder(["--hostBuilder:reloadConfigOnChange=false", .. args]);
// Before anything opens a socket: the runtime reads the switch at the first one.
SocketCompletions.Choose(builder.Configuration);
builder.AddTaihu();
builder.Services.AddTaihuConsole();
// The console's files (and MudBlazor's) live in their packages until published; outside Development the host
// finds them only through this manifest (a published server has them in wwwroot, and this does nothing).
builder.WebHost.UseStaticWebAssets();
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
try
{
    app.Run();
}
catch (Taihu.Cluster.ClusterStartupException e)
{
    // A node that cannot join its cluster stops before it has written anything; the reason is the operator's.
    Console.Error.WriteLine($"Taihu cannot start: {e.Message}");
    return 1;
}

return 0;

/// <summary>The entry point, visible to functional tests.</summary>
public partial class Program;
