using System.CommandLine;

namespace Taihu.ConsoleBench;

/// <summary>The command line: one subcommand per measurement, sharing where the server is.</summary>
internal static class ConsoleBenchCommands
{
    private static readonly Option<string> Url = new("--url") { Description = "The server's HTTP address (the console and the API).", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
    private static readonly Option<string> MqttHost = new("--mqtt-host") { Description = "The broker's host name or address.", DefaultValueFactory = _ => "127.0.0.1" };
    private static readonly Option<int> MqttPort = new("--mqtt-port") { Description = "The broker's MQTT port.", DefaultValueFactory = _ => 1883 };
    private static readonly Option<string> AdminUser = new("--admin-user") { Description = "The system administrator, who makes the run's tenant.", DefaultValueFactory = _ => "sysadmin@taihu.local" };
    private static readonly Option<string> AdminPassword = new("--admin-password") { Description = "The system administrator's password (printed in the server's log on first start).", Required = true };
    private static readonly Option<string> Chromium = new("--chromium") { Description = "The browser to drive (Debian's chromium).", DefaultValueFactory = _ => "/usr/bin/chromium" };

    public static IEnumerable<Command> Create()
    {
        var minutes = new Option<int>("--minutes") { Description = "How long the page stays open, sampled once a minute (the issue's run is 60).", DefaultValueFactory = _ => 60 };
        var keys = new Option<int>("--keys") { Description = "Keys the device sends once a second, all charted.", DefaultValueFactory = _ => 10 };
        var heap = Command("heap", "A device page open for --minutes with --keys keys updating once a second: its JS heap after a forced GC, once a minute.");
        heap.Options.Add(minutes);
        heap.Options.Add(keys);
        heap.SetAction((r, ct) => HeapScenario.RunAsync(Server(r), r.GetValue(minutes), r.GetValue(keys), ct));
        yield return heap;

        var runs = new Option<int>("--runs") { Description = "Timed runs of each measurement (after one to warm up).", DefaultValueFactory = _ => 5 };
        var chart = Command("chart", "Click to chart: a week of one-minute data (10,080 points) and a day of one-second data (86,400 points), raw and aggregated.");
        chart.Options.Add(runs);
        chart.SetAction((r, ct) => PageTimings.ChartAsync(Server(r), r.GetValue(runs), ct));
        yield return chart;

        var count = new Option<int>("--devices") { Description = "Devices in the tenant.", DefaultValueFactory = _ => 10_000 };
        var devices = Command("devices", "The device list with --devices devices: the first page's server time, and search as you type.");
        devices.Options.Add(runs);
        devices.Options.Add(count);
        devices.SetAction((r, ct) => PageTimings.DevicesAsync(Server(r), r.GetValue(count), r.GetValue(runs), ct));
        yield return devices;

        var latency = Command("latency", "A value published with mosquitto_pub until it shows on an open device page.");
        latency.Options.Add(runs);
        latency.SetAction((r, ct) => PageTimings.LatencyAsync(Server(r), r.GetValue(runs), ct));
        yield return latency;
    }

    private static Command Command(string name, string description)
    {
        var command = new Command(name, description);
        foreach (var option in new Option[] { Url, MqttHost, MqttPort, AdminUser, AdminPassword, Chromium })
        {
            command.Options.Add(option);
        }

        return command;
    }

    private static ServerOptions Server(ParseResult r) =>
        new(new Uri(r.GetValue(Url)!), r.GetValue(MqttHost)!, r.GetValue(MqttPort), r.GetValue(AdminUser)!, r.GetValue(AdminPassword)!, r.GetValue(Chromium)!);
}
