using System.CommandLine;
using Taihu.Bench;

var root = new RootCommand("Taihu.Bench: load generator for any MQTT broker (fan-in, fan-out, pairs, shared, idle, connect-storm).");
foreach (var command in BenchCommands.Create())
{
    root.Subcommands.Add(command);
}

return await root.Parse(args).InvokeAsync();
