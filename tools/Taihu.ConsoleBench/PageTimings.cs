using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Playwright;

namespace Taihu.ConsoleBench;

/// <summary>
/// The issue's "how fast" measurements in the browser: a week of one-minute data and a day of one-second data
/// drawn (click to chart), the device list at 10,000 devices (first page, server time; search as you type), and a
/// value published with mosquitto_pub shown on an open device page. Each is repeated and reported as median and
/// worst, with the target beside it.
/// </summary>
public static class PageTimings
{
    /// <summary>Click-to-chart: the range and aggregation chosen on the device page until the chart has drawn.</summary>
    public static async Task<int> ChartAsync(ServerOptions options, int runs, CancellationToken cancellationToken)
    {
        await using var server = await BenchServer.StartAsync(options, cancellationToken);
        var (ids, tokens) = await server.Tenant.CreateDevicesAsync(2, null, cancellationToken);
        var weekDevice = await server.ConnectDeviceAsync(tokens[0], cancellationToken);
        var dayDevice = await server.ConnectDeviceAsync(tokens[1], cancellationToken);
        Console.WriteLine("Storing a week of one-minute data (10,080 points) and a day of one-second data (86,400 points)...");
        await BenchServer.SeedAsync(weekDevice, "flow", 10_080, TimeSpan.FromMinutes(1), cancellationToken);
        await BenchServer.SeedAsync(dayDevice, "pressure", 86_400, TimeSpan.FromSeconds(1), cancellationToken);
        await server.WaitForPointsAsync(ids[0], "flow", 10_080, TimeSpan.FromDays(7), cancellationToken);
        await server.WaitForPointsAsync(ids[1], "pressure", 86_400, TimeSpan.FromDays(1), cancellationToken);

        var page = await server.SignedInPageAsync();
        var failed = 0;
        failed += await ReportAsync("week of one-minute data, raw (10,080 points)", 1000, runs,
            () => DrawAsync(page, ids[0], "week", "NONE"), cancellationToken);
        failed += await ReportAsync("week of one-minute data, AVG per 10 min (1,008 points)", 1000, runs,
            () => DrawAsync(page, ids[0], "week", "AVG"), cancellationToken);
        failed += await ReportAsync("day of one-second data, raw (86,400 points)", 2000, runs,
            () => DrawAsync(page, ids[1], "day", "NONE"), cancellationToken);
        failed += await ReportAsync("day of one-second data, AVG per minute (1,440 points)", 2000, runs,
            () => DrawAsync(page, ids[1], "day", "AVG"), cancellationToken);
        return failed == 0 ? 0 : 1;
    }

    /// <summary>Opens the device page, then times choosing the range and aggregation until the new chart is drawn.</summary>
    private static async Task<(double Ms, string Detail)> DrawAsync(IPage page, string deviceId, string range, string aggregation)
    {
        await page.GotoAsync($"/devices/{deviceId}");
        // The page opens on the last hour; wait for that chart, so the timing is of the chosen range alone.
        await page.WaitForFunctionAsync("() => document.getElementById('chart')?.dataset.view === 'hour/NONE'");
        // The aggregation first (it reloads the last hour, quickly), then the range is the timed click.
        await page.EvaluateAsync("agg => { const s = document.getElementById('chart-agg'); s.disabled = false; s.value = agg; }", aggregation);
        var clock = Stopwatch.StartNew();
        await page.Locator("#chart-range").SelectOptionAsync(range);
        await page.WaitForFunctionAsync("v => document.getElementById('chart').dataset.view === v", $"{range}/{aggregation}",
            new PageWaitForFunctionOptions { PollingInterval = 5, Timeout = 60_000 });
        var ms = clock.Elapsed.TotalMilliseconds;
        var drawn = await page.EvaluateAsync<string>("() => document.getElementById('chart').dataset.drawn");
        return (ms, drawn + " points drawn");
    }

    /// <summary>The device list with <paramref name="devices"/> devices: first page server time, and search as you type.</summary>
    public static async Task<int> DevicesAsync(ServerOptions options, int devices, int runs, CancellationToken cancellationToken)
    {
        await using var server = await BenchServer.StartAsync(options, cancellationToken);
        Console.WriteLine($"Creating {devices:N0} devices...");
        var created = Stopwatch.StartNew();
        await server.Tenant.CreateDevicesAsync(devices, null, cancellationToken);
        Console.WriteLine($"Created in {created.Elapsed.TotalSeconds:0.0} s.");
        var page = await server.SignedInPageAsync();
        var failed = 0;

        // Server time of the page's document: the navigation's request start to its response start (the server's
        // work, loopback adds nothing measurable); the whole load beside it.
        failed += await ReportAsync("device list, first page, server time (request to first byte)", 300, runs, async () =>
        {
            await page.GotoAsync("/devices");
            var timing = await page.EvaluateAsync<double[]>("() => { const n = performance.getEntriesByType('navigation')[0]; return [n.responseStart - n.requestStart, n.loadEventEnd - n.startTime]; }");
            return (timing[0], $"page loaded in {timing[1]:0} ms");
        }, cancellationToken);

        // Search as you type: the text typed one key at a time; timed from the last key until the list shows the match.
        var random = new Random(7);
        failed += await ReportAsync("device search as you type, last key to results shown", 500, runs, async () =>
        {
            await page.GotoAsync("/devices");
            var n = random.Next(devices);
            var text = $"meter {n}";
            var search = page.GetByRole(AriaRole.Searchbox);
            await search.PressSequentiallyAsync(text[..^1], new LocatorPressSequentiallyOptions { Delay = 80 });
            var clock = Stopwatch.StartNew();
            await search.PressAsync(text[^1..]);
            await page.WaitForFunctionAsync("t => document.getElementById('device-results')?.dataset.search === t", text,
                new PageWaitForFunctionOptions { PollingInterval = 5, Timeout = 30_000 });
            var ms = clock.Elapsed.TotalMilliseconds;
            var rows = await page.Locator("[data-testid=device-table] tbody tr").CountAsync();
            return (ms, $"'{text}': {rows} rows");
        }, cancellationToken);
        return failed == 0 ? 0 : 1;
    }

    /// <summary>mosquitto_pub of a new value until the open device page shows it.</summary>
    public static async Task<int> LatencyAsync(ServerOptions options, int runs, CancellationToken cancellationToken)
    {
        await using var server = await BenchServer.StartAsync(options, cancellationToken);
        var (ids, tokens) = await server.Tenant.CreateDevicesAsync(1, null, cancellationToken);
        var page = await server.SignedInPageAsync();
        await page.GotoAsync($"/devices/{ids[0]}");
        // The page records when each value of 'level' appears (its clock, Date.now, is the machine's, as is ours); the
        // value as sent is the cell's data-value (its text is the number in the page's language, 1,000).
        await page.EvaluateAsync("""
            () => {
              window.__seen = {};
              const note = () => { const cell = document.querySelector('[data-testid=value-level]'); const v = cell && (cell.dataset.value ?? cell.textContent); if (v && !(v in window.__seen)) window.__seen[v] = Date.now(); };
              new MutationObserver(note).observe(document.getElementById('latest'), { subtree: true, childList: true, characterData: true });
            }
            """);
        var n = 0;
        return await ReportAsync("mosquitto_pub to the value shown on the device page", 500, runs, async () =>
        {
            var value = (1000 + n++).ToString(CultureInfo.InvariantCulture);
            var sent = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            await MosquittoPubAsync(server.Options, tokens[0], $"{{\"level\":{value}}}", cancellationToken);
            await page.WaitForFunctionAsync("v => window.__seen[v] !== undefined", value, new PageWaitForFunctionOptions { Timeout = 30_000 });
            var seen = await page.EvaluateAsync<double>("v => window.__seen[v]", value);
            return (seen - sent, "");
        }, cancellationToken) == 0 ? 0 : 1;
    }

    private static async Task MosquittoPubAsync(ServerOptions options, string token, string json, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("mosquitto_pub")
        {
            ArgumentList = { "-h", options.MqttHost, "-p", options.MqttPort.ToString(CultureInfo.InvariantCulture), "-q", "1", "-u", token, "-t", "v1/devices/me/telemetry", "-m", json },
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("mosquitto_pub could not be started (apt-get install mosquitto-clients).");
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException("mosquitto_pub failed: " + await process.StandardError.ReadToEndAsync(cancellationToken));
        }
    }

    /// <summary>Runs a measurement once to warm up, then <paramref name="runs"/> times; prints median and worst against the target. Returns 1 when the median misses it.</summary>
    private static async Task<int> ReportAsync(string what, double targetMs, int runs, Func<Task<(double Ms, string Detail)>> measure, CancellationToken cancellationToken)
    {
        var (_, warmDetail) = await measure();
        var times = new List<double>(runs);
        var detail = warmDetail;
        for (var i = 0; i < runs && !cancellationToken.IsCancellationRequested; i++)
        {
            (var ms, detail) = await measure();
            times.Add(ms);
        }

        times.Sort();
        var median = times[times.Count / 2];
        var line = new StringBuilder().Append(CultureInfo.InvariantCulture,
            $"{what}: median {median:0} ms, worst {times[^1]:0} ms over {times.Count} runs (target < {targetMs:0} ms: {(median < targetMs ? "met" : "MISSED")})");
        if (detail.Length > 0)
        {
            line.Append("; ").Append(detail);
        }

        Console.WriteLine(line.ToString());
        return median < targetMs ? 0 : 1;
    }
}
