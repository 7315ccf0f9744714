using Taihu.Server;

var builder = WebApplication.CreateBuilder(args);
if (TaihuServerExtensions.FindConfigurationProblems(builder.Configuration) is { Count: > 0 } problems)
{
    // A bad setting is the operator's to fix: say which, without a stack trace.
    Console.Error.WriteLine($"Taihu cannot start: {string.Join(" ", problems)}");
    return 1;
}

builder.AddTaihu();
var app = builder.Build();
app.UseWebSockets();
app.MapTaihu();
app.Run();
return 0;

/// <summary>The entry point, visible to functional tests.</summary>
public partial class Program;
