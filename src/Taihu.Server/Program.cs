using Taihu.Server;

var builder = WebApplication.CreateBuilder(args);
builder.AddTaihu();

var app = builder.Build();
app.UseWebSockets();
app.MapTaihu();
app.Run();

/// <summary>The entry point, visible to functional tests.</summary>
public partial class Program;
