using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Taihu.Protocols.Hj212;

namespace Taihu.Bench.Scenarios;

/// <summary>What the hj212 verb is asked to do.</summary>
public sealed record Hj212BenchOptions(
    string Host, int Port, string ApiUrl, string AdminUser, string AdminPassword, int Stations, double IntervalSeconds, double DurationSeconds,
    double AnswerTimeoutSeconds, bool ConnectionPerUpload, int Verify, string? JsonPath);

/// <summary>
/// N HJ 212 stations send minute data (CN 2051, eight pollutants with Min, Avg, Max and Flag, Flag=5 asking for the
/// 9014 answer) every <c>--interval</c> seconds, spread evenly over the interval, each over its own long connection
/// (or a connection per upload). The stations provision themselves: their PW is the provision key of a profile the
/// bench creates in a tenant of its own, so no device is made through the API beforehand. A station waits for each
/// upload's 9014 (sent by the server after the commit) before the next, and, as real stations do, when its
/// connection breaks or no answer comes in time it connects again and sends the same upload again (each upload has
/// its own DataTime, so a resend overwrites its own point). Reports uploads sent and acknowledged, those never
/// acknowledged, the latency from upload to 9014, and, read back through the REST API for <c>--verify</c> stations,
/// acknowledged uploads missing from storage (lost): run it across a server restart and nothing acknowledged may be lost.
/// </summary>
public sealed class Hj212Scenario(Hj212BenchOptions options)
{
    private const int Pollutants = 8;
    private static readonly string[] Codes = ["a34004", "a34002", "a21026", "a21004", "a21005", "a05024", "a01001", "a01002"];

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private long _sent;
    private long _acked;
    private long _resent;
    private long _reconnects;

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(options.ApiUrl), Timeout = TimeSpan.FromSeconds(60) };
        var tenant = await BenchTenant.CreateAsync(http, options.AdminUser, options.AdminPassword, cancellationToken);
        var key = "B" + tenant.RunId; // 9 characters: a PW may have no more.
        await BenchTenant.SendAsync(http, HttpMethod.Post, tenant.AdminToken, "/api/deviceProfile", new
        {
            name = "hj212-bench-" + tenant.RunId,
            provisionType = "ALLOW_CREATE_NEW_DEVICES",
            profileData = new { provisionConfiguration = new { type = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, provisionDeviceSecret = "bench-" + tenant.RunId } },
        }, cancellationToken);
        Console.WriteLine($"hj212: {options.Stations} stations (MN HJ{tenant.RunId}00000...), minute data every {options.IntervalSeconds} s for {options.DurationSeconds} s, "
            + (options.ConnectionPerUpload ? "a connection per upload" : "long connections") + $", to {options.Host}:{options.Port}");

        var latencies = new List<double>[options.Stations];
        var firsts = new List<double>[options.Stations];
        var acked = new int[options.Stations];
        var unanswered = new int[options.Stations];
        // DataTime: one minute per upload from a day back, so that every upload is its own point.
        var baseTime = DateTimeOffset.UtcNow.AddDays(-1).ToOffset(TimeSpan.FromHours(8));
        baseTime = new DateTimeOffset(baseTime.Year, baseTime.Month, baseTime.Day, baseTime.Hour, baseTime.Minute, 0, baseTime.Offset);
        var started = Stopwatch.GetTimestamp();
        var stop = TimeSpan.FromSeconds(options.DurationSeconds);
        var stations = new Task[options.Stations];
        for (var i = 0; i < options.Stations; i++)
        {
            var index = i;
            latencies[i] = [];
            firsts[i] = [];
            stations[i] = Task.Run(() => StationAsync(index, "HJ" + tenant.RunId + index.ToString("D5", CultureInfo.InvariantCulture), key, baseTime, started, stop,
                latencies[index], firsts[index], acked, unanswered, cancellationToken), cancellationToken);
        }

        using (var progress = new PeriodicTimer(TimeSpan.FromSeconds(5)))
        {
            var all = Task.WhenAll(stations);
            while (!all.IsCompleted)
            {
                await Task.WhenAny(all, progress.WaitForNextTickAsync(cancellationToken).AsTask());
                Console.WriteLine($"  {Stopwatch.GetElapsedTime(started).TotalSeconds,6:F0} s: sent {Interlocked.Read(ref _sent)}, acknowledged {Interlocked.Read(ref _acked)}, "
                    + $"sent again {Interlocked.Read(ref _resent)}, reconnects {Interlocked.Read(ref _reconnects)}");
            }

            await all;
        }

        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var later = latencies.SelectMany(l => l).Order().ToArray();
        var firstUploads = firsts.SelectMany(l => l).Order().ToArray();
        // null (not NaN, which JSON cannot carry) when there is none: one upload per station has no "later" ones.
        static double? P(double[] sorted, double q) => sorted.Length == 0 ? null : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
        var notAcked = unanswered.Sum();

        // Read back what the first --verify stations had acknowledged.
        long checkedAcked = 0, stored = 0, lost = 0;
        for (var i = 0; i < Math.Min(options.Verify, options.Stations); i++)
        {
            var mn = "HJ" + tenant.RunId + i.ToString("D5", CultureInfo.InvariantCulture);
            var device = await BenchTenant.SendAsync(http, HttpMethod.Get, tenant.AdminToken, $"/api/tenant/devices/{mn}", null, cancellationToken);
            var id = device.GetProperty("id").GetProperty("id").GetString();
            var from = baseTime.ToUnixTimeMilliseconds();
            var to = baseTime.AddMinutes(acked[i] + unanswered[i] + 1).ToUnixTimeMilliseconds();
            var history = await BenchTenant.SendAsync(http, HttpMethod.Get, tenant.AdminToken,
                $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=a34004-Avg&startTs={from}&endTs={to}&limit=100000", null, cancellationToken);
            var count = history.TryGetProperty("a34004-Avg", out var points) ? points.GetArrayLength() : 0;
            checkedAcked += acked[i];
            stored += count;
            lost += Math.Max(0, acked[i] - count);
        }

        var result = new
        {
            scenario = "hj212",
            stations = options.Stations,
            intervalSeconds = options.IntervalSeconds,
            durationSeconds = options.DurationSeconds,
            connectionPerUpload = options.ConnectionPerUpload,
            uploadsSent = Interlocked.Read(ref _sent),
            uploadsAcknowledged = Interlocked.Read(ref _acked),
            uploadsNeverAcknowledged = notAcked,
            resent = Interlocked.Read(ref _resent),
            reconnects = Interlocked.Read(ref _reconnects),
            uploadsPerSecond = Interlocked.Read(ref _acked) / elapsed,
            // Upload to 9014 for a station already identified, and for a station's first upload (identification,
            // and creating the device: PBKDF2 of its PW, the device's insert, the audit entry).
            ackLatencyMs = new { p50 = P(later, 0.50), p99 = P(later, 0.99), max = P(later, 1) },
            firstUploadAckLatencyMs = new { p50 = P(firstUploads, 0.50), p99 = P(firstUploads, 0.99), max = P(firstUploads, 1) },
            verifiedStations = Math.Min(options.Verify, options.Stations),
            verifiedAcknowledged = checkedAcked,
            verifiedStored = stored,
            verifiedLost = lost,
        };
        Console.WriteLine(JsonSerializer.Serialize(result, Indented));
        if (options.JsonPath is { } path)
        {
            await File.WriteAllTextAsync(path, JsonSerializer.Serialize(result), cancellationToken);
        }

        await tenant.DeleteAsync();
        return lost == 0 && notAcked == 0 ? 0 : 1;
    }

    private async Task StationAsync(int index, string mn, string pw, DateTimeOffset baseTime, long started, TimeSpan stop, List<double> latencies, List<double> first,
        int[] acked, int[] unanswered, CancellationToken cancellationToken)
    {
        var interval = TimeSpan.FromSeconds(options.IntervalSeconds);
        // Spread the stations' uploads evenly over the interval.
        var offset = interval * index / options.Stations;
        var buffer = new byte[4096];
        TcpClient? client = null;
        var upload = 0;
        try
        {
            while (true)
            {
                var due = offset + (interval * upload);
                if (due >= stop)
                {
                    return;
                }

                var wait = due - Stopwatch.GetElapsedTime(started);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken);
                }

                var qn = baseTime.AddMinutes(upload).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture) + "000";
                var frame = Hj212Framing.Encode(Segment(qn, mn, pw, baseTime.AddMinutes(upload), upload));
                var answered = false;
                // As a station does: again and again until answered (through a server restart), for at most a minute past the run.
                for (var attempt = 0; !answered && Stopwatch.GetElapsedTime(started) < stop + TimeSpan.FromSeconds(60); attempt++)
                {
                    if (attempt > 0)
                    {
                        Interlocked.Increment(ref _resent);
                    }

                    try
                    {
                        if (client is null)
                        {
                            client = new TcpClient { NoDelay = true };
                            await client.ConnectAsync(options.Host, options.Port, cancellationToken);
                        }

                        var sentAt = Stopwatch.GetTimestamp();
                        var stream = client.GetStream();
                        await stream.WriteAsync(frame, cancellationToken);
                        Interlocked.Increment(ref _sent);
                        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                        timeout.CancelAfter(TimeSpan.FromSeconds(options.AnswerTimeoutSeconds));
                        answered = await ReadAnswerAsync(stream, buffer, qn, timeout.Token);
                        if (answered)
                        {
                            (upload == 0 ? first : latencies).Add(Stopwatch.GetElapsedTime(sentAt).TotalMilliseconds);
                            acked[index]++;
                            Interlocked.Increment(ref _acked);
                        }
                    }
                    catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                    {
                        answered = false;
                    }

                    if (!answered || options.ConnectionPerUpload)
                    {
                        client?.Dispose();
                        client = null;
                        if (!answered)
                        {
                            Interlocked.Increment(ref _reconnects);
                            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
                        }
                    }
                }

                if (!answered)
                {
                    unanswered[index]++;
                }

                upload++;
            }
        }
        finally
        {
            client?.Dispose();
        }
    }

    private static async Task<bool> ReadAnswerAsync(NetworkStream stream, byte[] buffer, string qn, CancellationToken cancellationToken)
    {
        var filled = 0;
        while (true)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(filled), cancellationToken);
            if (read == 0)
            {
                return false;
            }

            filled += read;
            var status = Hj212Framing.TryRead(buffer.AsSpan(0, filled), Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out var segment, out var consumed, out _);
            if (status == Hj212ReadStatus.Frame)
            {
                var text = Encoding.ASCII.GetString(buffer.AsSpan(segment));
                return text.Contains("CN=9014", StringComparison.Ordinal) && text.Contains("QN=" + qn, StringComparison.Ordinal);
            }

            if (status == Hj212ReadStatus.Invalid || filled == buffer.Length)
            {
                return false;
            }
        }
    }

    /// <summary>A minute-data upload of eight pollutants, values varying by upload.</summary>
    private static string Segment(string qn, string mn, string pw, DateTimeOffset dataTime, int upload)
    {
        var cp = new StringBuilder(512);
        cp.Append("DataTime=").Append(dataTime.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture));
        for (var p = 0; p < Pollutants; p++)
        {
            var avg = 10 + p + (upload % 50 / 10.0);
            cp.Append(';').Append(Codes[p]).Append("-Min=").Append((avg - 1).ToString("F1", CultureInfo.InvariantCulture))
              .Append(',').Append(Codes[p]).Append("-Avg=").Append(avg.ToString("F1", CultureInfo.InvariantCulture))
              .Append(',').Append(Codes[p]).Append("-Max=").Append((avg + 1).ToString("F1", CultureInfo.InvariantCulture))
              .Append(',').Append(Codes[p]).Append("-Flag=N");
        }

        return $"QN={qn};ST=22;CN=2051;PW={pw};MN={mn};Flag=5;CP=&&{cp}&&";
    }
}
