using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;

namespace Taihu.ConsoleBench;

/// <summary>
/// A device page left open: one device has sent <c>keys</c> numbers once a second for the last hour and goes on, the
/// page shows them live and charts every one of them (the last hour, sliding). Once a minute the page's garbage is collected through the DevTools
/// protocol (HeapProfiler.collectGarbage) and the JS heap in use read (Performance.getMetrics JSHeapUsedSize), with
/// the DOM's node count and listeners (the least of five readings two seconds apart). The verdict compares the last minute's heap with the fifth minute's (the
/// page has warmed up by then): the issue asks for no more than 10% growth over an hour.
/// </summary>
public static class HeapScenario
{
    private static double Metric(JsonElement? metrics, string name)
    {
        foreach (var m in metrics!.Value.GetProperty("metrics").EnumerateArray())
        {
            if (m.GetProperty("name").GetString() == name)
            {
                return m.GetProperty("value").GetDouble();
            }
        }

        return double.NaN;
    }

    public static async Task<int> RunAsync(ServerOptions options, int minutes, int keys, CancellationToken cancellationToken)
    {
        await using var server = await BenchServer.StartAsync(options, cancellationToken);
        var (ids, tokens) = await server.Tenant.CreateDevicesAsync(1, null, cancellationToken);
        var device = await server.ConnectDeviceAsync(tokens[0], cancellationToken);
        // The device has been sending for an hour already: the chart opens on a full window (3,600 points a key), so
        // the page's data is the same size at minute 5 as at minute 60 and any growth is the page's own.
        for (var k = 0; k < keys; k++)
        {
            await BenchServer.SeedAsync(device, $"k{k}", 3600, TimeSpan.FromSeconds(1), cancellationToken);
        }

        await server.WaitForPointsAsync(ids[0], $"k{keys - 1}", 3600, TimeSpan.FromHours(1), cancellationToken);
        using var publishing = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var published = 0L;
        var publisher = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
            var json = new StringBuilder();
            var n = 0;
            do
            {
                json.Clear().Append('{');
                for (var k = 0; k < keys; k++)
                {
                    json.Append(k > 0 ? "," : "").Append(CultureInfo.InvariantCulture, $"\"k{k}\":{(20 + k + 3 * Math.Sin((n + k * 10) / 30.0)).ToString("0.##", CultureInfo.InvariantCulture)}");
                }

                await BenchServer.PublishAsync(device, json.Append('}').ToString(), publishing.Token);
                Interlocked.Increment(ref published);
                n++;
            }
            while (await timer.WaitForNextTickAsync(publishing.Token));
        }, publishing.Token);

        var page = await server.SignedInPageAsync();
        await page.GotoAsync($"/devices/{ids[0]}");
        await page.Locator($"[data-testid='value-k{keys - 1}']").WaitForAsync();
        // Every key on the chart: the heaviest use of the page.
        for (var k = 0; k < keys; k++)
        {
            var box = page.Locator($"#chart-keys input[value='k{k}']");
            await box.WaitForAsync();
            await box.CheckAsync();
        }

        await page.WaitForFunctionAsync($"() => document.getElementById('chart').dataset.drawn !== undefined");
        var cdp = await page.Context.NewCDPSessionAsync(page);
        await cdp.SendAsync("Performance.enable");
        Console.WriteLine($"Device page of {ids[0]} open with {keys} keys charted; one sample a minute for {minutes} minutes.");
        Console.WriteLine("minute  js-heap-used-MB  (most of the 5)  dom-nodes  listeners  chart-points  published");
        var heaps = new Dictionary<int, double>();
        var started = Stopwatch.StartNew();
        for (var minute = 1; minute <= minutes; minute++)
        {
            var wait = TimeSpan.FromMinutes(minute) - started.Elapsed;
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, cancellationToken);
            }

            // The page rebuilds the chart's columns every second, so one reading may catch a second's garbage in the
            // making: five readings two seconds apart, each right after a forced collection; the least is what the
            // page holds, the most is shown beside it.
            var least = double.MaxValue;
            var most = 0.0;
            JsonElement? metrics = null;
            for (var reading = 0; reading < 5; reading++)
            {
                if (reading > 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken);
                }

                await cdp.SendAsync("HeapProfiler.collectGarbage");
                metrics = await cdp.SendAsync("Performance.getMetrics");
                var used = Metric(metrics, "JSHeapUsedSize") / 1048576;
                least = Math.Min(least, used);
                most = Math.Max(most, used);
            }

            var heap = least;
            heaps[minute] = heap;
            var points = await page.EvaluateAsync<string?>("() => document.getElementById('chart').dataset.points");
            Console.WriteLine($"{minute,6}  {heap,15:0.000}  {most,15:0.000}  {Metric(metrics, "Nodes"),9:0}  {Metric(metrics, "JSEventListeners"),9:0}  {points,12}  {Interlocked.Read(ref published),9}");
        }

        await publishing.CancelAsync();
        try
        {
            await publisher;
        }
        catch (OperationCanceledException)
        {
        }

        var baseMinute = Math.Min(5, minutes);
        var growth = (heaps[minutes] - heaps[baseMinute]) / heaps[baseMinute];
        Console.WriteLine($"JS heap at minute {minutes}: {heaps[minutes]:0.000} MB, at minute {baseMinute}: {heaps[baseMinute]:0.000} MB, growth {growth:+0.0%;-0.0%} (target: within 10% at 60 against 5).");
        return Math.Abs(growth) <= 0.10 ? 0 : 1;
    }
}
