using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using HdrHistogram;
using Taihu.Bench.Client;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// live: --clients WebSocket subscribers on <c>/api/ws</c> (ThingsBoard's live API, <c>tsSubCmds</c>, every key of
/// one device each, a tenant administrator's JWT) while the same number of devices (taihu-bench's own MQTT
/// client, QoS 1, --inflight messages in flight each, as <c>telemetry</c> does) send telemetry at --rate messages
/// per second in all, --keys points each. Key <c>k0</c> carries the message's sequence number, so each point a
/// subscriber receives is matched to the moment its message was written to the device's socket: the latency is
/// publish to frame. The client cannot see when the server committed the point, so this is an upper bound of
/// commit to frame (it includes the wait for the batch's commit). With --pid, the server's resident memory
/// (VmRSS) is sampled once a second from before the devices publish to the end of the drain.
/// </summary>
public sealed class LiveScenario(BenchOptions o, PlatformTarget p, int keys, string? subscribeKeys, IProgress<ProgressReport>? progress)
{
    // Send timestamps by device and sequence (a ring per device): written by the device's publisher, read by its subscriber.
    private const int Ring = 4096;
    private long[] _sentAt = [];
    private long[] _sentSequence = [];
    private readonly LongConcurrentHistogram _latency = new(1, 600_000_000, 3);
    private long _windowStart = long.MaxValue;
    private long _windowEnd = long.MaxValue;
    private long _sentInWindow;
    private long _seenInWindow;
    private long _frames;
    private long _badFrames;
    private long _errorFrames;
    private long _closed;
    private string? _firstError;

    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        using var http = p.CreateHttpClient();
        var tenant = await BenchTenant.CreateAsync(http, p.AdminUser, p.AdminPassword, cancellationToken);
        BenchClient[] devices = [];
        var sockets = new ClientWebSocket[o.Clients];
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var receiving = new List<Task>();
        try
        {
            var (ids, tokens) = await tenant.CreateDevicesAsync(o.Clients, progress, cancellationToken);
            _sentAt = new long[o.Clients * Ring];
            _sentSequence = new long[o.Clients * Ring];
            Array.Fill(_sentSequence, -1);
            // Every key unless told: a dashboard shows the device. Keys without k0 leave nothing to time (a diagnostic).
            var keyList = subscribeKeys is null ? "" : ",\"keys\":" + System.Text.Json.JsonSerializer.Serialize(subscribeKeys);
            var wsBase = new Uri(new Uri(p.ApiUrl.Replace("http://", "ws://", StringComparison.Ordinal).Replace("https://", "wss://", StringComparison.Ordinal)), "/api/ws");
            using (var gate = new SemaphoreSlim(32))
            {
                var ready = new Task[o.Clients];
                for (var d = 0; d < o.Clients; d++)
                {
                    var i = d;
                    await gate.WaitAsync(cancellationToken);
                    ready[i] = Task.Run(async () =>
                    {
                        try
                        {
                            var socket = sockets[i] = new ClientWebSocket();
                            await socket.ConnectAsync(wsBase, cancellationToken);
                            var command = $"{{\"authCmd\":{{\"cmdId\":0,\"token\":\"{tenant.AdminToken}\"}},\"tsSubCmds\":[{{\"entityType\":\"DEVICE\",\"entityId\":\"{ids[i]}\",\"scope\":\"LATEST_TELEMETRY\",\"cmdId\":1{keyList}}}]}}";
                            await socket.SendAsync(Encoding.UTF8.GetBytes(command), WebSocketMessageType.Text, true, cancellationToken);
                            var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                            lock (receiving)
                            {
                                receiving.Add(ReceiveAsync(socket, i, first, stop.Token));
                            }

                            await first.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken); // the snapshot
                        }
                        finally
                        {
                            gate.Release();
                        }
                    }, cancellationToken);
                }

                await Task.WhenAll(ready);
            }

            devices = await DeviceFleet.ConnectAsync(o, tenant.RunId, tokens, null, progress, cancellationToken);
            return await MeasureAsync(devices, stop, receiving, cancellationToken);
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var socket in sockets)
            {
                socket?.Abort();
                socket?.Dispose();
            }

            await DeviceFleet.DisposeAsync(devices);
            await tenant.DeleteAsync();
        }
    }

    private async Task ReceiveAsync(ClientWebSocket socket, int device, TaskCompletionSource first, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        var values = new List<long>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length)
                    {
                        Array.Resize(ref buffer, buffer.Length * 2);
                    }

                    result = await socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                    length += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    Interlocked.Increment(ref _closed);
                    Interlocked.CompareExchange(ref _firstError, $"socket {device} closed: {socket.CloseStatus} {socket.CloseStatusDescription}", null);
                    first.TrySetException(new InvalidOperationException($"The server closed subscriber {device}: {socket.CloseStatus} {socket.CloseStatusDescription}"));
                    return;
                }

                var now = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref _frames);
                values.Clear();
                if (!LiveFrames.TryRead(buffer.AsSpan(0, length), "k0"u8, values, out _, out var errorCode))
                {
                    Interlocked.Increment(ref _badFrames);
                    continue;
                }

                if (errorCode != 0)
                {
                    Interlocked.Increment(ref _errorFrames);
                    Interlocked.CompareExchange(ref _firstError, Encoding.UTF8.GetString(buffer, 0, Math.Min(length, 300)), null);
                    first.TrySetException(new InvalidOperationException("The subscription was refused: " + Encoding.UTF8.GetString(buffer, 0, Math.Min(length, 300))));
                    continue;
                }

                first.TrySetResult();
                foreach (var sequence in values)
                {
                    Matched(device, sequence, now);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            first.TrySetException(ex);
        }
    }

    private void Matched(int device, long sequence, long now)
    {
        var slot = (device * Ring) + (int)(sequence % Ring);
        if (sequence < 0 || Volatile.Read(ref _sentSequence[slot]) != sequence)
        {
            return; // not this run's message, or one the ring has already overwritten
        }

        var sentAt = Interlocked.Exchange(ref _sentAt[slot], 0);
        if (sentAt == 0 || sentAt < Interlocked.Read(ref _windowStart) || sentAt >= Interlocked.Read(ref _windowEnd))
        {
            return; // seen before (a repeat), or sent outside the window
        }

        Interlocked.Increment(ref _seenInWindow);
        _latency.RecordValue(Math.Clamp((long)((now - sentAt) * 1_000_000.0 / Stopwatch.Frequency), 1, 600_000_000));
    }

    private async Task<BenchResult> MeasureAsync(BenchClient[] clients, CancellationTokenSource stop, List<Task> receiving, CancellationToken cancellationToken)
    {
        var topic = "v1/devices/me/telemetry"u8.ToArray();
        var rss = new List<(double Seconds, long Bytes)>();
        var start = Stopwatch.GetTimestamp();
        Interlocked.Exchange(ref _windowStart, start + (long)(o.WarmupSeconds * Stopwatch.Frequency));
        var windowEnd = _windowStart + (long)(o.DurationSeconds * Stopwatch.Frequency);
        Interlocked.Exchange(ref _windowEnd, windowEnd);
        using var sampling = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var sampler = o.BrokerPid is { } pid ? SampleMemoryAsync(pid, start, rss, sampling.Token) : Task.CompletedTask;
        var perDevice = o.Rate / clients.Length;
        long skipped = 0;
        var publishing = new Task[clients.Length];
        for (var d = 0; d < clients.Length; d++)
        {
            var index = d;
            publishing[d] = Task.Run(async () =>
            {
                var client = clients[index];
                var buffer = new byte[16 + (keys * 32)];
                var pacer = RateController.ForDevice(perDevice, start, Stopwatch.Frequency, index, clients.Length, maxBurst: perDevice == 0 ? 4 : 100);
                long sequence = 0;
                while (Stopwatch.GetTimestamp() < windowEnd && !cancellationToken.IsCancellationRequested)
                {
                    var due = pacer.Due(Stopwatch.GetTimestamp(), sequence);
                    if (due == 0)
                    {
                        await pacer.WaitForNextAsync(sequence, cancellationToken);
                        continue;
                    }

                    for (var n = 0; n < due; n++)
                    {
                        var length = TelemetryScenario.WritePayload(buffer, keys, sequence);
                        // Written into the client's buffer once a slot of its window is free; stamped after that
                        // wait (a full window is the device waiting, not the server) and before the flush below,
                        // so no frame can carry the point before its stamp is there.
                        await client.PublishRawAsync(topic, buffer.AsMemory(0, length), QoS.AtLeastOnce, flush: false, cancellationToken);
                        var slot = (index * Ring) + (int)(sequence % Ring);
                        Volatile.Write(ref _sentSequence[slot], -1);
                        var now = Stopwatch.GetTimestamp();
                        Volatile.Write(ref _sentAt[slot], now);
                        Volatile.Write(ref _sentSequence[slot], sequence);
                        if (now >= _windowStart && now < windowEnd)
                        {
                            Interlocked.Increment(ref _sentInWindow);
                        }

                        sequence++;
                    }

                    await client.FlushAsync(cancellationToken);
                }

                Interlocked.Add(ref skipped, pacer.Skipped);
            }, cancellationToken);
        }

        ProcessSample? brokerStart = null;
        ProcessSample? selfStart = null;
        ServerCounters? serverStart = null;
        long ackStart = 0;
        var all = Task.WhenAll(publishing);
        while (!all.IsCompleted)
        {
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromMilliseconds(250), cancellationToken));
            var now = Stopwatch.GetTimestamp();
            if (brokerStart is null && now >= _windowStart)
            {
                brokerStart = o.BrokerPid is { } p0 ? ProcessSampler.Sample(p0) : null;
                selfStart = ProcessSampler.Self();
                ackStart = Acknowledged(clients);
                serverStart = await ServerCounters.ReadAsync(o.MetricsUrl, cancellationToken);
            }

            progress?.Report(new ProgressReport(now < _windowStart ? "warming up" : "publishing", Stopwatch.GetElapsedTime(start),
                TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds), Interlocked.Read(ref _sentInWindow), Interlocked.Read(ref _seenInWindow), Percentile(99)));
        }

        await all;
        var brokerEnd = o.BrokerPid is { } p1 ? ProcessSampler.Sample(p1) : null;
        var selfEnd = ProcessSampler.Self();
        var ackEnd = Acknowledged(clients);
        var serverEnd = await ServerCounters.ReadAsync(o.MetricsUrl, cancellationToken);
        var seconds = (double)(Stopwatch.GetTimestamp() - _windowStart) / Stopwatch.Frequency;

        // The drain: what was published still commits and reaches its subscriber.
        var drainEnd = Stopwatch.GetTimestamp() + (long)(o.DrainSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < drainEnd && Interlocked.Read(ref _seenInWindow) < Interlocked.Read(ref _sentInWindow))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
        }

        await sampling.CancelAsync();
        await sampler;
        await stop.CancelAsync();
        Task[] receivers;
        lock (receiving)
        {
            receivers = [.. receiving];
        }

        await Task.WhenAll(receivers);
        var sent = Interlocked.Read(ref _sentInWindow);
        var seen = Interlocked.Read(ref _seenInWindow);
        long refused = 0;
        foreach (var client in clients)
        {
            refused += client.Refused;
        }

        var acknowledgedPerSecond = (ackEnd - ackStart) / seconds;
        var pointsAcknowledged = (ackEnd - ackStart) * keys;
        // With --metrics-url: what the server spent per point acknowledged in the window (CPU, allocations,
        // collections) and the frames it sent, which a loaded machine changes far less than the latency.
        var server = serverStart is { } c0 && serverEnd is { } c1
            ? string.Create(CultureInfo.InvariantCulture, $"; {ServerCounters.DescribeCommitToFrame(c0, c1)}; {(c1.Frames - c0.Frames) / seconds:N0} frames/s sent ({(c1.Frames - c0.Frames) / Math.Max(1.0, ackEnd - ackStart):F2} per message acknowledged), ")
              + c1.Runtime.Describe(c0.Runtime, pointsAcknowledged, "point acknowledged")
            : "";
        var memory = rss.Count == 0 ? "" : string.Create(CultureInfo.InvariantCulture,
            $"; server resident memory (VmRSS, {rss.Count} samples, 1/s): {rss[0].Bytes / 1048576.0:F1} MiB at start, {rss[^1].Bytes / 1048576.0:F1} MiB at the end, {MaxOf(rss) / 1048576.0:F1} MiB at most");
        return new BenchResult
        {
            Scenario = "live",
            Target = $"{p.ApiUrl}/api/ws (devices on {o.Host}:{o.Port})",
            Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
            QoS = 1,
            PayloadSize = TelemetryScenario.WritePayload(new byte[16 + (keys * 32)], keys, 0),
            OfferedRate = o.Rate,
            DurationSeconds = seconds,
            Publishers = clients.Length,
            Subscribers = clients.Length,
            Sent = sent,
            Expected = sent,
            Delivered = seen,
            Lost = Math.Max(0, sent - seen),
            DeliveredPerSecond = seen / seconds,
            AcknowledgedPerSecond = acknowledgedPerSecond,
            LatencyP50Ms = Percentile(50),
            LatencyP90Ms = Percentile(90),
            LatencyP99Ms = Percentile(99),
            LatencyP999Ms = Percentile(99.9),
            LatencyMaxMs = _latency.TotalCount == 0 ? 0 : _latency.GetMaxValue() / 1000.0,
            BrokerCpuPercent = brokerStart is { } b0 && brokerEnd is { } b1 ? ProcessSampler.CpuPercent(b0, b1) : null,
            BrokerResidentBytes = rss.Count > 0 ? rss[^1].Bytes : brokerEnd?.ResidentBytes,
            BrokerResidentStartBytes = rss.Count > 0 ? rss[0].Bytes : null,
            BrokerResidentMaxBytes = rss.Count > 0 ? MaxOf(rss) : null,
            // Per million points acknowledged (5 a message by default), so that runs with and without subscribers compare.
            BrokerCpuSecondsPerMillion = serverStart is { } u0 && serverEnd is { } u1 && pointsAcknowledged > 0
                ? (u1.Runtime.CpuUserSeconds + u1.Runtime.CpuSystemSeconds - u0.Runtime.CpuUserSeconds - u0.Runtime.CpuSystemSeconds) * 1e6 / pointsAcknowledged : null,
            BrokerAllocatedBytesPerDelivered = serverStart is { } a0 && serverEnd is { } a1 && pointsAcknowledged > 0
                ? (a1.Runtime.AllocatedBytes - a0.Runtime.AllocatedBytes) / pointsAcknowledged : null,
            GeneratorCpuPercent = selfStart is { } s0 ? ProcessSampler.CpuPercent(s0, selfEnd) : 0,
            Connections = clients.Length * 2,
            PacedMessagesSkipped = Interlocked.Read(ref skipped),
            Note = string.Create(CultureInfo.InvariantCulture,
                $"latency is publish to frame (an upper bound of commit to frame); {acknowledgedPerSecond * keys:N0} points/s acknowledged ({acknowledgedPerSecond:N0} msg/s x {keys} keys), {refused:N0} refused; {Interlocked.Read(ref _frames):N0} frames ({Interlocked.Read(ref _badFrames):N0} unreadable, {Interlocked.Read(ref _errorFrames):N0} errors), {Interlocked.Read(ref _closed):N0} sockets closed by the server{(_firstError is { } e ? $" (first: {e})" : "")}{memory}{server}"),
        };
    }

    /// <summary>The server's runtime counters and the live sockets' frames sent, from its /metrics.</summary>
    private readonly record struct ServerCounters(RuntimeCounters Runtime, double Frames, double[][] CommitToFrame)
    {
        public static async Task<ServerCounters?> ReadAsync(string? url, CancellationToken cancellationToken)
        {
            var text = url is null ? null : await MetricsScraper.ReadTextAsync(url, cancellationToken);
            return RuntimeCounters.Parse(text) is { } runtime
                ? new ServerCounters(runtime, MetricsScraper.Find(text!, "taihu_live_updates_sent_total") ?? 0,
                    MetricsScraper.Buckets(text!, "taihu_live_commit_to_frame_milliseconds"))
                : null;
        }

        /// <summary>The server's commit-to-frame percentiles over the window, as bucket bounds ("at most").</summary>
        public static string DescribeCommitToFrame(ServerCounters start, ServerCounters end)
        {
            static string Bound(double? ms) => ms switch
            {
                null => "n/a",
                double.PositiveInfinity => "over 5,000 ms",
                { } v => string.Create(CultureInfo.InvariantCulture, $"at most {v:N0} ms"),
            };

            return $"commit to frame (the server's histogram, each change at its frame's oldest): p50 {Bound(MetricsScraper.Percentile(start.CommitToFrame, end.CommitToFrame, 50))}, "
                + $"p99 {Bound(MetricsScraper.Percentile(start.CommitToFrame, end.CommitToFrame, 99))}";
        }
    }

    private static long MaxOf(List<(double Seconds, long Bytes)> samples)
    {
        long max = 0;
        foreach (var (_, bytes) in samples)
        {
            max = Math.Max(max, bytes);
        }

        return max;
    }

    private static long Acknowledged(BenchClient[] clients)
    {
        long sum = 0;
        foreach (var client in clients)
        {
            sum += client.Acknowledged;
        }

        return sum;
    }

    private static async Task SampleMemoryAsync(int pid, long start, List<(double Seconds, long Bytes)> samples, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        do
        {
            if (ProcessSampler.Sample(pid) is { } sample)
            {
                samples.Add((Stopwatch.GetElapsedTime(start).TotalSeconds, sample.ResidentBytes));
            }
        }
        while (await WaitAsync(timer, cancellationToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken cancellationToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private double Percentile(double percentile)
    {
        try
        {
            return _latency.TotalCount == 0 ? 0 : _latency.GetValueAtPercentile(percentile) / 1000.0;
        }
        catch (InvalidOperationException)
        {
            return 0;
        }
    }
}
