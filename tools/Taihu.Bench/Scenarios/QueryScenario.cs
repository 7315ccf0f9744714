using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// queries: how fast Taihu answers the management API's telemetry reads. Creates --clients devices with --keys
/// keys each (latest values), and one device holding --points points of one key within one hour; then, one
/// request at a time over one kept-alive HTTP connection with a JWT, measures
/// <list type="bullet">
/// <item>latest values of a random device (<c>GET .../values/timeseries</c>);</item>
/// <item>AVG of that hour at 1-minute intervals (<c>agg=AVG&amp;interval=60000</c>).</item>
/// </list>
/// The tenant is deleted at the end.
/// </summary>
public sealed class QueryScenario(BenchOptions o, TelemetryOptions t, int points, IProgress<ProgressReport>? progress)
{
    public async Task<(BenchResult Result, string Report)> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 8 }) { BaseAddress = new Uri(t.ApiUrl), Timeout = TimeSpan.FromMinutes(5) };
        var runId = Guid.NewGuid().ToString("N")[..8];
        var sysToken = await LoginAsync(http, t.AdminUser, t.AdminPassword, cancellationToken);
        var tenant = await SendAsync(http, HttpMethod.Post, sysToken, "/api/tenant", new { title = "bench-queries-" + runId }, cancellationToken);
        var tenantId = tenant.GetProperty("id").GetProperty("id").GetString()!;
        try
        {
            var email = $"bench-{runId}@bench.local";
            var password = "bench-" + Guid.NewGuid().ToString("N");
            await SendAsync(http, HttpMethod.Post, sysToken, "/api/user?sendActivationMail=false",
                new { email, authority = "TENANT_ADMIN", password, tenantId = new { id = tenantId, entityType = "TENANT" } }, cancellationToken);
            var jwt = await LoginAsync(http, email, password, cancellationToken);

            // Devices with latest values.
            var ids = new string[o.Clients];
            var next = -1;
            var started = Stopwatch.GetTimestamp();
            var keysJson = new StringBuilder("{");
            for (var k = 0; k < t.Keys; k++)
            {
                keysJson.Append(k == 0 ? "" : ",").Append("\"k").Append(k).Append("\":").Append(k * 1.5);
            }

            var telemetry = keysJson.Append('}').ToString();
            await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < ids.Length)
                {
                    var token = $"bench-{runId}-{i}";
                    var device = await SendAsync(http, HttpMethod.Post, jwt, $"/api/device?accessToken={token}", new { name = $"meter {i}" }, cancellationToken);
                    ids[i] = device.GetProperty("id").GetProperty("id").GetString()!;
                    using var content = new StringContent(telemetry, Encoding.UTF8, "application/json");
                    (await http.PostAsync($"/api/v1/{token}/telemetry", content, cancellationToken)).EnsureSuccessStatusCode();
                    if (i % 100 == 0)
                    {
                        progress?.Report(new ProgressReport("creating devices", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(1), i, 0, 0));
                    }
                }
            }, cancellationToken)));

            // One device with many points of one key in one hour.
            var heavyToken = $"bench-{runId}-heavy";
            var heavy = await SendAsync(http, HttpMethod.Post, jwt, $"/api/device?accessToken={heavyToken}", new { name = "heavy meter" }, cancellationToken);
            var heavyId = heavy.GetProperty("id").GetProperty("id").GetString()!;
            var hourStart = (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 3_600_000 * 3_600_000) - 3_600_000;
            var step = 3_600_000.0 / points;
            const int PerRequest = 1000; // about 45 KB, under the 64 KiB payload limit
            var batches = (points + PerRequest - 1) / PerRequest;
            var nextBatch = -1;
            await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                int b;
                while ((b = Interlocked.Increment(ref nextBatch)) < batches)
                {
                    var body = new StringBuilder("[");
                    for (var p = b * PerRequest; p < Math.Min(points, (b + 1) * PerRequest); p++)
                    {
                        body.Append(p == b * PerRequest ? "" : ",").Append("{\"ts\":").Append(hourStart + (long)(p * step)).Append(",\"values\":{\"v\":")
                            .Append((p % 1000).ToString(CultureInfo.InvariantCulture)).Append("}}");
                    }

                    using var content = new StringContent(body.Append(']').ToString(), Encoding.UTF8, "application/json");
                    (await http.PostAsync($"/api/v1/{heavyToken}/telemetry", content, cancellationToken)).EnsureSuccessStatusCode();
                    if (b % 50 == 0)
                    {
                        progress?.Report(new ProgressReport("writing points", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(1), (long)b * PerRequest, 0, 0));
                    }
                }
            }, cancellationToken)));

            var random = new Random(42);
            var latest = await MeasureAsync(http, jwt, o.DurationSeconds, () => $"/api/plugins/telemetry/DEVICE/{ids[random.Next(ids.Length)]}/values/timeseries?useStrictDataTypes=true", "latest values", cancellationToken);
            var aggregate = await MeasureAsync(http, jwt, o.DurationSeconds,
                () => $"/api/plugins/telemetry/DEVICE/{heavyId}/values/timeseries?keys=v&startTs={hourStart}&endTs={hourStart + 3_600_000}&interval=60000&agg=AVG&useStrictDataTypes=true",
                "1-hour AVG at 1-minute intervals", cancellationToken);
            var report = string.Create(CultureInfo.InvariantCulture,
                $"latest values of one device among {o.Clients:N0} ({t.Keys} keys): {latest.Count:N0} requests, p50 {latest.P50:F3} ms, p99 {latest.P99:F3} ms, p99.9 {latest.P999:F3} ms\n" +
                $"AVG over 1 hour at 1-minute intervals, {points:N0} points of one key: {aggregate.Count:N0} requests, p50 {aggregate.P50:F2} ms, p99 {aggregate.P99:F2} ms");
            var result = new BenchResult
            {
                Scenario = "queries",
                Target = t.ApiUrl,
                Protocol = "HTTP",
                DurationSeconds = o.DurationSeconds,
                Sent = latest.Count + aggregate.Count,
                Delivered = latest.Count + aggregate.Count,
                DeliveredPerSecond = latest.Count / o.DurationSeconds,
                LatencyP50Ms = latest.P50,
                LatencyP90Ms = latest.P90,
                LatencyP99Ms = latest.P99,
                LatencyP999Ms = latest.P999,
                LatencyMaxMs = latest.Max,
                Connections = 1,
                Note = report,
            };
            return (result, report);
        }
        finally
        {
            await SendAsync(http, HttpMethod.Delete, sysToken, $"/api/tenant/{tenantId}", null, CancellationToken.None, tolerant: true);
        }
    }

    private readonly record struct Timing(long Count, double P50, double P90, double P99, double P999, double Max);

    private async Task<Timing> MeasureAsync(HttpClient http, string jwt, double seconds, Func<string> path, string phase, CancellationToken cancellationToken)
    {
        var histogram = new LongHistogram(60_000_000, 3);
        // A short warm-up, not recorded.
        for (var i = 0; i < 50; i++)
        {
            await GetAsync(http, jwt, path(), cancellationToken);
        }

        var started = Stopwatch.GetTimestamp();
        var end = started + (long)(seconds * Stopwatch.Frequency);
        long count = 0;
        while (Stopwatch.GetTimestamp() < end)
        {
            var before = Stopwatch.GetTimestamp();
            await GetAsync(http, jwt, path(), cancellationToken);
            histogram.RecordValue(Math.Max(1, (long)(Stopwatch.GetElapsedTime(before).TotalMicroseconds)));
            if (++count % 1000 == 0)
            {
                progress?.Report(new ProgressReport(phase, Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(seconds), count, count, histogram.GetValueAtPercentile(99) / 1000.0));
            }
        }

        return new Timing(count, histogram.GetValueAtPercentile(50) / 1000.0, histogram.GetValueAtPercentile(90) / 1000.0, histogram.GetValueAtPercentile(99) / 1000.0,
            histogram.GetValueAtPercentile(99.9) / 1000.0, histogram.GetMaxValue() / 1000.0);
    }

    private static async Task GetAsync(HttpClient http, string jwt, string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("X-Authorization", "Bearer " + jwt);
        using var response = await http.SendAsync(request, cancellationToken);
        response.EnsureSuccessStatusCode();
        await response.Content.ReadAsByteArrayAsync(cancellationToken);
    }

    private static async Task<string> LoginAsync(HttpClient http, string user, string password, CancellationToken cancellationToken)
    {
        var body = await SendAsync(http, HttpMethod.Post, null, "/api/auth/login", new { username = user, password }, cancellationToken);
        return body.GetProperty("token").GetString()!;
    }

    private static async Task<JsonElement> SendAsync(HttpClient http, HttpMethod method, string? token, string path, object? body, CancellationToken cancellationToken, bool tolerant = false)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
        if (token is not null)
        {
            request.Headers.Add("X-Authorization", "Bearer " + token);
        }

        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            if (tolerant)
            {
                return default;
            }

            throw new InvalidOperationException($"{method} {path} failed: {(int)response.StatusCode} {text}");
        }

        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }
}
