using System.CommandLine;
using System.Globalization;
using Taihu.Sim.Running;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim;

/// <summary>The command line: check a scenario, print the schema.</summary>
internal static class SimCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Run();
        yield return Check();
        yield return Schema();
    }

    private static Command Run()
    {
        var file = new Argument<string>("scenario") { Description = "The scenario file (YAML)." };
        var speed = new Option<double>("--speed") { Description = "Run N times faster: every interval, deadline and provisioned threshold is divided by N.", DefaultValueFactory = _ => 1 };
        var scale = new Option<double>("--scale") { Description = "Shrink (or grow) every fleet by this factor; each keeps at least one device.", DefaultValueFactory = _ => 1 };
        var url = new Option<string>("--url") { Description = "The server's HTTP address (management API and HTTP device API).", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var mqttHost = new Option<string?>("--mqtt-host") { Description = "The MQTT host; default: the host of --url." };
        var mqttPort = new Option<int>("--mqtt-port") { Description = "The MQTT port.", DefaultValueFactory = _ => 1883 };
        var hj212Port = new Option<int>("--hj212-port") { Description = "Where HJ 212 stations connect (TCP, on the MQTT host).", DefaultValueFactory = _ => 9212 };
        var jt808Port = new Option<int>("--jt808-port") { Description = "Where JT/T 808 terminals connect (TCP, on the MQTT host).", DefaultValueFactory = _ => 6808 };
        var coapPort = new Option<int>("--coap-port") { Description = "Where CoAP devices send (UDP, on the MQTT host).", DefaultValueFactory = _ => 5683 };
        var admin = new Option<string>("--admin") { Description = "The system administrator, who creates the run's tenant.", DefaultValueFactory = _ => "sysadmin@taihu.local" };
        var password = new Option<string?>("--password") { Description = "The system administrator's password; default: the TAIHU_ADMIN_PASSWORD environment variable." };
        var serverPid = new Option<int?>("--server-pid") { Description = "A local server process to sample CPU and memory of (from /proc); default: the server's /metrics." };
        var report = new Option<string>("--report") { Description = "Directory for report.html and report.json.", DefaultValueFactory = _ => "sim-report" };
        var plainMqtt = new Option<bool>("--plain-mqtt") { Description = "The server is a plain MQTT server (Mosquitto, EMQX, ...): provision nothing, connect without credentials, skip what needs the platform's API (read-back, alarms, RPC calls) and say so in the report." };
        var tenantAdmin = new Option<string?>("--tenant-admin") { Description = "Use this tenant administrator's existing tenant (and its devices and profiles of the scenario's names) instead of making a tenant; the password from --tenant-password or TAIHU_TENANT_PASSWORD." };
        var tenantPassword = new Option<string?>("--tenant-password") { Description = "The --tenant-admin's password." };
        var window = new Option<string?>("--for") { Description = "Run only the scenario's first part, e.g. 10m (scenario time): its faults that start in it, none of its expectations (written for the whole run); for measuring a long scenario at its real rates." };
        var slice = new Option<string>("--slice") { Description = "Run part of the fleet, 'i/n': the i-th of n simulator processes sharing the scenario (device k of each fleet where (k - 1) mod n = i - 1).", DefaultValueFactory = _ => "1/1" };
        var command = new Command("run", "Provisions the scenario's fleet in a tenant of its own, runs it, reads back what was stored and which alarms fired, checks the expectations and writes the report. "
            + "Exit code 0: every expectation met; 1: one or more not met; 2: the scenario file is wrong; 3: the run could not be made.")
        {
            file, speed, scale, url, mqttHost, mqttPort, hj212Port, jt808Port, coapPort, admin, password, serverPid, report, plainMqtt, slice, window, tenantAdmin, tenantPassword,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            Scenario scenario;
            ScenarioScaling scaling;
            FleetSlice part;
            TimeSpan? full = null;
            try
            {
                scenario = ScenarioLoader.Load(parse.GetRequiredValue(file));
                scaling = new ScenarioScaling(parse.GetValue(speed), parse.GetValue(scale));
                part = FleetSlice.Parse(parse.GetRequiredValue(slice));
                if (parse.GetValue(window) is { } first)
                {
                    if (!Durations.TryParse(first, out var length, out _) || length <= TimeSpan.Zero)
                    {
                        Console.Error.WriteLine($"--for takes a duration above zero, such as 10m (found '{first}').");
                        return 2;
                    }

                    full = scenario.Duration;
                    scenario = scenario.FirstPart(length);
                }
            }
            catch (Exception e) when (e is ScenarioException or ArgumentOutOfRangeException or IOException)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }

            var http = new Uri(parse.GetRequiredValue(url));
            var plain = parse.GetValue(plainMqtt);
            var secret = parse.GetValue(password) ?? Environment.GetEnvironmentVariable("TAIHU_ADMIN_PASSWORD") ?? "";
            (string, string)? tenant = null;
            if (parse.GetValue(tenantAdmin) is { } tenantUser)
            {
                var tenantSecret = parse.GetValue(tenantPassword) ?? Environment.GetEnvironmentVariable("TAIHU_TENANT_PASSWORD");
                if (string.IsNullOrEmpty(tenantSecret))
                {
                    Console.Error.WriteLine("The tenant administrator's password is needed: --tenant-password, or the TAIHU_TENANT_PASSWORD environment variable.");
                    return 3;
                }

                tenant = (tenantUser, tenantSecret);
            }

            if (!plain && tenant is null && string.IsNullOrEmpty(secret))
            {
                Console.Error.WriteLine("The system administrator's password is needed: --password, or the TAIHU_ADMIN_PASSWORD environment variable.");
                return 3;
            }

            var target = new SimTarget(http, parse.GetValue(mqttHost) ?? http.Host, parse.GetValue(mqttPort), parse.GetRequiredValue(admin), secret)
            {
                ServerPid = parse.GetValue(serverPid),
                PlainMqtt = plain,
                Tenant = tenant,
                Slice = part,
                Hj212Port = parse.GetValue(hj212Port),
                Jt808Port = parse.GetValue(jt808Port),
                CoapPort = parse.GetValue(coapPort),
                WholeDuration = full,
            };
            try
            {
                var result = await new Running.SimRunner(scenario, scaling, target, Console.Out).RunAsync(cancellationToken);
                var html = result.Write(parse.GetRequiredValue(report));
                Console.Out.WriteLine(result.Summary());
                Console.Out.WriteLine($"report: {html}");
                return result.Passed ? 0 : 1;
            }
            catch (Exception e) when (e is HttpRequestException or InvalidOperationException or MQTTnet.Exceptions.MqttCommunicationException or TimeoutException or System.Net.Sockets.SocketException)
            {
                Console.Error.WriteLine($"The run could not be made: {e.Message}");
                return 3;
            }
        });
        return command;
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
            if (fleet.Real is { } real)
            {
                lines.Add(string.Create(CultureInfo.InvariantCulture,
                    $"  {fleet.Name}: a real device, connecting through the proxy on {(real.Port == 0 ? "a free port" : "port " + real.Port)} with its own token, in real time"));
                continue;
            }

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
