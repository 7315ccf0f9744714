using System.CommandLine;
using System.Globalization;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim;

/// <summary>The command line: check a scenario, print the schema.</summary>
internal static class SimCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Check();
        yield return Schema();
    }

    private static Command Check()
    {
        var file = new Argument<string>("scenario") { Description = "The scenario file (YAML)." };
        var speed = new Option<double>("--speed") { Description = "Run N times faster: every interval, deadline and provisioned threshold is divided by N.", DefaultValueFactory = _ => 1 };
        var scale = new Option<double>("--scale") { Description = "Shrink (or grow) every fleet by this factor; each keeps at least one device.", DefaultValueFactory = _ => 1 };
        var command = new Command("check", "Reads a scenario file, reports the first problem with its line, or summarizes the run it describes.") { file, speed, scale };
        command.SetAction(parse =>
        {
            try
            {
                var scenario = ScenarioLoader.Load(parse.GetRequiredValue(file));
                var scaling = new ScenarioScaling(parse.GetValue(speed), parse.GetValue(scale));
                Console.Out.WriteLine(Summary(scenario, scaling));
                return 0;
            }
            catch (ScenarioException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            catch (ArgumentOutOfRangeException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            catch (IOException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
        });
        return command;
    }

    private static Command Schema()
    {
        var command = new Command("schema", "Prints the JSON Schema scenario files are checked against (point an editor's YAML support at it).");
        command.SetAction(_ =>
        {
            Console.Out.WriteLine(ScenarioLoader.SchemaText());
            return 0;
        });
        return command;
    }

    /// <summary>What a run of the scenario would do, in a few lines a person reads.</summary>
    internal static string Summary(Scenario scenario, ScenarioScaling scaling)
    {
        var lines = new List<string>
        {
            string.Create(CultureInfo.InvariantCulture, $"{scenario.Name}: {Durations.Format(scenario.Duration)} of scenario time in {Durations.Format(scaling.Real(scenario.Duration))} at --speed {scaling.Speed}"),
        };
        var devices = 0;
        var perSecond = 0.0;
        foreach (var fleet in scenario.Fleets)
        {
            var count = scaling.Count(fleet.Count);
            var interval = scaling.Real(fleet.Interval);
            devices += count;
            perSecond += count / interval.TotalSeconds;
            lines.Add(string.Create(CultureInfo.InvariantCulture,
                $"  {fleet.Name}: {count} device(s) over {fleet.Protocol.ToString().ToLowerInvariant()}, every {Durations.Format(interval)}, {fleet.Telemetry.Count} key(s), {fleet.Events.Count} event(s)"));
        }

        lines.Add(string.Create(CultureInfo.InvariantCulture, $"  in all: {devices} device(s), about {perSecond:0.#} messages per second"));
        return string.Join(Environment.NewLine, lines);
    }
}
