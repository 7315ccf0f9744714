using System.CommandLine;
using Taihu.Sim;

var root = new RootCommand("taihu-sim: runs a scenario file of simulated devices against Taihu (or any ThingsBoard-compatible or MQTT server) and reports what happened.");
foreach (var command in SimCommands.Create())
{
    root.Subcommands.Add(command);
}

return await root.Parse(args).InvokeAsync();
