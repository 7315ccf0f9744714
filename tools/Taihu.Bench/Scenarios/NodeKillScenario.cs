using System.Buffers.Text;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// node-kill: devices spread over the nodes of a cluster send telemetry at QoS 1, each waiting for every PUBACK (as
/// firmware does), and one node is killed with SIGKILL while they do. The devices on it reconnect to the next node
/// (in turn, as a device with a list of addresses does) and send again what was not acknowledged. Afterwards every
/// acknowledged point is looked for through a node that was not killed: none may be missing. Reports how long the
/// killed node's devices took from the kill to their first acknowledgement on another node.
/// </summary>
/// <remarks>
/// The devices run on MQTTnet's client, a client we did not write. Each message carries its own timestamp
/// (<c>{"ts":start+seq,"values":{..}}</c>, one millisecond apart per device), so that every message is its own point
/// and a device's acknowledged messages 0..n-1 are n points with known timestamps and values.
/// </remarks>
public sealed class NodeKillScenario(BenchOptions o, NodeKillOptions k, IProgress<ProgressReport>? progress)
{
    private const string Topic = "v1/devices/me/telemetry";

    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        var nodes = o.OtherNodes.Count + 1;
        // When a node dies, 5,000 MQTTnet clients end at once and their teardown holds pool threads: with the
        // default minimum the pool adds a thread or two a second, and every device of the run (those on live nodes
        // too) waited for its PUBACK to be read meanwhile. The run measures the nodes, not the pool's ramp.
        ThreadPool.GetMinThreads(out var workers, out var completions);
        ThreadPool.SetMinThreads(Math.Max(workers, 256), completions);
        using var http = new HttpClient { BaseAddress = new Uri(k.ApiUrl), Timeout = TimeSpan.FromMinutes(2) };
        var tenant = await BenchTenant.CreateAsync(http, k.AdminUser, k.AdminPassword, cancellationToken);
        try
        {
            var (ids, tokens) = await tenant.CreateDevicesAsync(o.Clients, progress, cancellationToken);
            var devices = new Device[o.Clients];
            for (var i = 0; i < devices.Length; i++)
            {
                devices[i] = new Device(i, $"{tenant.RunId}-d{i}", tokens[i], i % nodes);
            }

            var connectFailures = 0;
            using (var gate = new SemaphoreSlim(32))
            {
                var connecting = new Task[devices.Length];
                for (var i = 0; i < devices.Length; i++)
                {
                    var device = devices[i];
                    await gate.WaitAsync(cancellationToken);
                    connecting[i] = Task.Run(async () =>
                    {
                        try
                        {
                            if (!await ConnectAsync(device, device.Node, cancellationToken))
                            {
                                Interlocked.Increment(ref connectFailures);
                            }
                        }
                        finally
                        {
                            gate.Release();
                        }
                    }, cancellationToken);
                }

                await Task.WhenAll(connecting);
            }

            if (connectFailures > 0)
            {
                throw new InvalidOperationException($"{connectFailures} devices could not connect before the run.");
            }

            var onKilled = 0;
            foreach (var device in devices)
            {
                if (device.Node == k.KillNode)
                {
                    onKilled++;
                }
            }

            var baseTs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 1000;
            var start = Stopwatch.GetTimestamp();
            var end = start + (long)(o.DurationSeconds * Stopwatch.Frequency);
            var killAt = start + (long)(k.KillAfterSeconds * Stopwatch.Frequency);
            long killed = 0;
            long killedWallMs = 0;
            var killer = Task.Run(async () =>
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), killAt);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken);
                }

                var pid = o.OtherNodes[k.KillNode - 1].Pid;
                using var process = Process.GetProcessById(pid);
                process.Kill(); // SIGKILL
                Volatile.Write(ref killed, Stopwatch.GetTimestamp());
                Volatile.Write(ref killedWallMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            }, cancellationToken);

            var perDevice = o.Rate / devices.Length;
            var sending = new Task[devices.Length];
            for (var i = 0; i < devices.Length; i++)
            {
                var device = devices[i];
                sending[i] = Task.Run(() => SendAsync(device, devices.Length, nodes, baseTs, start, end, perDevice, cancellationToken), cancellationToken);
            }

            var all = Task.WhenAll(sending);
            var timeline = k.TimelinePath is null ? null : new System.Text.StringBuilder("seconds,acknowledged_per_s,waiting_over_1s,disconnected\n");
            await WatchAsync(all, devices, start, timeline, () => Volatile.Read(ref killed) != 0, cancellationToken);
            await all;
            await killer;
            if (timeline is not null)
            {
                timeline.Append(CultureInfo.InvariantCulture, $"# the kill at {k.KillAfterSeconds:0.0} s\n");
                await File.WriteAllTextAsync(k.TimelinePath!, timeline.ToString(), cancellationToken);
            }

            var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            foreach (var device in devices)
            {
                if (device.Client is { } client)
                {
                    try
                    {
                        await client.DisconnectAsync(cancellationToken: CancellationToken.None);
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        // The run is over; a connection that is already gone is fine.
                    }

                    client.Dispose();
                }
            }

            // Every acknowledged point, looked for through the API of a node that was not killed.
            var missing = 0L;
            var missingDevices = 0;
            string? firstMissing = null;
            var next = -1;
            var readers = new Task[8];
            for (var r = 0; r < readers.Length; r++)
            {
                readers[r] = Task.Run(async () =>
                {
                    int i;
                    while ((i = Interlocked.Increment(ref next)) < devices.Length)
                    {
                        var device = devices[i];
                        var count = device.Acknowledged;
                        if (count == 0)
                        {
                            continue;
                        }

                        var found = await StoredAsync(http, tenant.AdminToken, ids[i], baseTs, count, cancellationToken);
                        if (found < count)
                        {
                            Interlocked.Add(ref missing, count - found);
                            Interlocked.Increment(ref missingDevices);
                            Interlocked.CompareExchange(ref firstMissing, $"device {i} ({ids[i]}): {found} of {count} acknowledged points stored", null);
                        }
                    }
                }, cancellationToken);
            }

            await Task.WhenAll(readers);

            // The connectivity the cluster wrote, now that every device has disconnected (a node reports within a
            // second, the device's partition writes within another; the points above took longer to read): each
            // device shows a disconnect after its last connect, and each device that moved, a connect after the kill.
            var shownDisconnected = 0;
            var movedConnectedAfterKill = 0;
            next = -1;
            for (var r = 0; r < readers.Length; r++)
            {
                readers[r] = Task.Run(async () =>
                {
                    int i;
                    while ((i = Interlocked.Increment(ref next)) < devices.Length)
                    {
                        var (connect, disconnect) = await ConnectivityAsync(http, tenant.AdminToken, ids[i], cancellationToken);
                        if (connect > 0 && disconnect >= connect)
                        {
                            Interlocked.Increment(ref shownDisconnected);
                        }

                        if (devices[i].Disconnects > 0 && connect > Volatile.Read(ref killedWallMs))
                        {
                            Interlocked.Increment(ref movedConnectedAfterKill);
                        }
                    }
                }, cancellationToken);
            }

            await Task.WhenAll(readers);

            long acknowledged = 0;
            long refused = 0;
            var recoveries = new List<double>();
            var reconnects = new List<double>();
            var noticed = new List<double>();
            var reconnectsFromNoticed = new List<double>();
            var stayed = new List<double>();
            var moved = 0;
            var notRecovered = 0;
            var killTs = Volatile.Read(ref killed);
            foreach (var device in devices)
            {
                acknowledged += device.Acknowledged;
                refused += device.Refused;
                if (device.Disconnects == 0)
                {
                    stayed.Add(device.SlowestAckMs);
                }
                else
                {
                    moved++;
                    if (device.ReconnectedAt > 0)
                    {
                        reconnects.Add(Stopwatch.GetElapsedTime(killTs, device.ReconnectedAt).TotalMilliseconds);
                        var lostAt = device.ReconnectingSince;
                        if (lostAt > 0 && lostAt <= device.ReconnectedAt)
                        {
                            noticed.Add(Stopwatch.GetElapsedTime(killTs, lostAt).TotalMilliseconds);
                            reconnectsFromNoticed.Add(Stopwatch.GetElapsedTime(lostAt, device.ReconnectedAt).TotalMilliseconds);
                        }
                    }

                    if (device.RecoveredAt > 0)
                    {
                        recoveries.Add(Stopwatch.GetElapsedTime(killTs, device.RecoveredAt).TotalMilliseconds);
                    }
                    else
                    {
                        notRecovered++;
                    }
                }
            }

            recoveries.Sort();
            reconnects.Sort();
            noticed.Sort();
            reconnectsFromNoticed.Sort();
            stayed.Sort();
            static double Of(List<double> sorted, double p) => sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
            double Percentile(double p) => Of(recoveries, p);
            var note = string.Create(CultureInfo.InvariantCulture,
                $"node {k.KillNode} of {nodes} killed (SIGKILL) {k.KillAfterSeconds:0.#} s in; {onKilled} devices were on it, {moved} devices lost their connection, " +
                $"{recoveries.Count} were acknowledged again on another node, {notRecovered} never were; from the kill to that acknowledgement: " +
                $"p50 {Percentile(0.5) / 1000:0.00} s, p99 {Percentile(0.99) / 1000:0.00} s, max {Percentile(1) / 1000:0.00} s " +
                $"(to the CONNACK on the other node: p50 {Of(reconnects, 0.5) / 1000:0.00} s, p99 {Of(reconnects, 0.99) / 1000:0.00} s, max {Of(reconnects, 1) / 1000:0.00} s; " +
                $"the device found its connection gone and began to reconnect p50 {Of(noticed, 0.5) / 1000:0.00} s, max {Of(noticed, 1) / 1000:0.00} s after the kill, and had the CONNACK " +
                $"p50 {Of(reconnectsFromNoticed, 0.5) / 1000:0.00} s, p99 {Of(reconnectsFromNoticed, 0.99) / 1000:0.00} s, max {Of(reconnectsFromNoticed, 1) / 1000:0.00} s after that); " +
                $"the devices that kept their connection waited for a PUBACK at most (each its slowest, over the run): p50 {Of(stayed, 0.5) / 1000:0.00} s, p99 {Of(stayed, 0.99) / 1000:0.00} s, max {Of(stayed, 1) / 1000:0.00} s; " +
                $"{acknowledged:N0} messages acknowledged ({acknowledged * k.Keys:N0} points), {missing:N0} acknowledged points not found through the API " +
                $"(on {missingDevices} devices{(firstMissing is null ? "" : "; first: " + firstMissing)}); {refused:N0} publishes refused; " +
                $"sessions {(k.Persistent ? "persistent (clean session 0)" : "clean")}; reconnects {(k.Spread ? "spread over the other nodes" : "to the next node")}; " +
                $"connectivity written once all had disconnected: {shownDisconnected} of {devices.Length} devices shown disconnected after their last connect, " +
                $"{movedConnectedAfterKill} of {moved} moved devices shown connected after the kill");
            return new BenchResult
            {
                Scenario = "node-kill",
                Target = $"{o.Host}:{o.Port} and {o.OtherNodes.Count} more nodes",
                Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
                Client = "mqttnet",
                QoS = 1,
                OfferedRate = o.Rate,
                DurationSeconds = seconds,
                Publishers = devices.Length,
                Sent = acknowledged + refused,
                Expected = acknowledged,
                Delivered = acknowledged - missing,
                Lost = missing,
                DeliveredPerSecond = acknowledged / seconds,
                LatencyP50Ms = Percentile(0.5),
                LatencyP99Ms = Percentile(0.99),
                LatencyMaxMs = Percentile(1),
                Connections = devices.Length,
                Note = note,
            };
        }
        finally
        {
            await tenant.DeleteAsync();
        }
    }

    private async Task<bool> ConnectAsync(Device device, int node, CancellationToken cancellationToken)
    {
        var target = o.TargetAt(node);
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder().WithTcpServer(target.Host, target.Port);
        if (o.SourceAddresses.Length > 0)
        {
            // Devices of a city come from many addresses: each from one of --source-addresses, in turn.
            var local = System.Net.IPAddress.Parse(o.SourceAddresses[device.Index % o.SourceAddresses.Length]);
            options = options.WithTcpServer(tcp =>
            {
                tcp.RemoteEndpoint = new System.Net.DnsEndPoint(target.Host, target.Port);
                tcp.LocalEndpoint = new System.Net.IPEndPoint(local, 0);
                tcp.NoDelay = true;
            });
        }

        options = options
            .WithProtocolVersion(o.Version == ProtocolVersion.V500 ? MqttProtocolVersion.V500 : MqttProtocolVersion.V311)
            .WithClientId(device.ClientId)
            .WithCredentials(device.Token)
            .WithCleanSession(!k.Persistent)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(30))
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (k.Persistent && o.Version == ProtocolVersion.V500)
        {
            options = options.WithSessionExpiryInterval(3600);
        }

        try
        {
            var result = await client.ConnectAsync(options.Build(), cancellationToken);
            if (result.ResultCode != MqttClientConnectResultCode.Success)
            {
                client.Dispose();
                return false;
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            client.Dispose();
            return false;
        }

        var lost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.DisconnectedAsync += _ =>
        {
            lost.TrySetResult();
            return Task.CompletedTask;
        };
        if (!client.IsConnected)
        {
            lost.TrySetResult();
        }

        device.Client?.Dispose();
        device.Client = client;
        device.Lost = lost;
        device.Node = node;
        return true;
    }

    /// <summary>
    /// Once a second until the devices are done: reports progress and, when <paramref name="timeline"/> is given,
    /// appends a line of the messages acknowledged per second, the devices waiting over 1 s for a PUBACK, and
    /// the devices disconnected.
    /// </summary>
    private async Task WatchAsync(Task all, Device[] devices, long start, System.Text.StringBuilder? timeline, Func<bool> killed, CancellationToken cancellationToken)
    {
        long lastAcked = 0;
        var lastAt = start;
        while (!all.IsCompleted)
        {
            await Task.WhenAny(all, Task.Delay(1000, cancellationToken));
            long acked = 0;
            var waiting = 0;
            var disconnected = 0;
            var now = Stopwatch.GetTimestamp();
            var second = now - Stopwatch.Frequency;
            foreach (var device in devices)
            {
                acked += Volatile.Read(ref device.Acknowledged);
                var since = Volatile.Read(ref device.AwaitingSince);
                if (since != 0 && since < second)
                {
                    waiting++;
                }

                if (device.Lost.Task.IsCompleted)
                {
                    disconnected++;
                }
            }

            timeline?.Append(CultureInfo.InvariantCulture, $"{Stopwatch.GetElapsedTime(start, now).TotalSeconds:0.0},{(acked - lastAcked) / Stopwatch.GetElapsedTime(lastAt, now).TotalSeconds:0},{waiting},{disconnected}\n");
            lastAcked = acked;
            lastAt = now;
            progress?.Report(new ProgressReport(killed() ? "node killed, publishing" : "publishing",
                Stopwatch.GetElapsedTime(start), TimeSpan.FromSeconds(o.DurationSeconds), acked, acked, 0));
        }
    }

    private async Task SendAsync(Device device, int count, int nodes, long baseTs, long start, long end, double perDevice, CancellationToken cancellationToken)
    {
        var buffer = new byte[32 + (k.Keys * 32)];
        var pacer = RateController.ForDevice(perDevice, start, Stopwatch.Frequency, device.Index, count, maxBurst: 4);
        long sequence = 0;
        var recovering = false;
        while (Stopwatch.GetTimestamp() < end && !cancellationToken.IsCancellationRequested)
        {
            // Right after a reconnect the message waiting is sent at once, so that the time to recover is the
            // reconnect and one round trip, not the wait for the next message's turn.
            if (!recovering && pacer.Due(Stopwatch.GetTimestamp(), sequence) == 0)
            {
                // A connection lost meanwhile is noticed when it goes, as MQTTnet tells it, not at the next send.
                await Task.WhenAny(pacer.WaitForNextAsync(sequence, cancellationToken), device.Lost.Task);
                if (!device.Lost.Task.IsCompleted)
                {
                    continue;
                }
            }

            if (!device.Lost.Task.IsCompleted && await PublishAsync(device, buffer, baseTs, sequence, cancellationToken) is { } acknowledged)
            {
                if (acknowledged)
                {
                    Volatile.Write(ref device.Acknowledged, sequence + 1);
                    if (recovering)
                    {
                        device.RecoveredAt = Stopwatch.GetTimestamp();
                        recovering = false;
                    }
                }
                else
                {
                    device.Refused++;
                }

                sequence++;
                continue;
            }

            // The connection ended: the message is sent again, with the same sequence, once connected to a node
            // again; recovered once a message is acknowledged again (after the kill, the time from it is reported).
            device.Disconnects++;
            device.RecoveredAt = 0;
            device.ReconnectedAt = 0;
            device.ReconnectingSince = Stopwatch.GetTimestamp();
            recovering = true;
            await ReconnectAsync(device, nodes, end, cancellationToken);
        }
    }

    /// <summary>Publishes message <paramref name="sequence"/> and waits for its PUBACK: true when accepted, false when refused, null when the connection ended.</summary>
    private async Task<bool?> PublishAsync(Device device, byte[] buffer, long baseTs, long sequence, CancellationToken cancellationToken)
    {
        var length = WritePayload(buffer, k.Keys, baseTs, sequence);
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(Topic)
            .WithPayload(buffer.AsSpan(0, length).ToArray())
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        var sentAt = Stopwatch.GetTimestamp();
        Volatile.Write(ref device.AwaitingSince, sentAt);
        MqttClientPublishResult result;
        try
        {
            result = await device.Client!.PublishAsync(message, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // MQTTnet throws its own exceptions when the connection ends under a publish, a NullReferenceException among them.
            return null;
        }
        finally
        {
            Volatile.Write(ref device.AwaitingSince, 0);
        }

        var waited = Stopwatch.GetElapsedTime(sentAt).TotalMilliseconds;
        if (waited > device.SlowestAckMs)
        {
            device.SlowestAckMs = waited;
        }

        return result.IsSuccess;
    }

    /// <summary>
    /// Connects to the next node in turn, then the one after, as a device with a list of addresses tries them; or,
    /// spread, the devices of one node over all the others, as a load balancer in front of the nodes does.
    /// </summary>
    private async Task ReconnectAsync(Device device, int nodes, long end, CancellationToken cancellationToken)
    {
        var node = device.Node;
        var step = k.Spread && nodes > 2 ? 1 + (device.Index / nodes % (nodes - 1)) : 1;
        while (Stopwatch.GetTimestamp() < end && !cancellationToken.IsCancellationRequested)
        {
            node = (node + step) % nodes;
            step = 1;
            if (await ConnectAsync(device, node, cancellationToken))
            {
                device.ReconnectedAt = Stopwatch.GetTimestamp();
                return;
            }

            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>How many of points 0..count-1 of the device's key k0 the store has (each at its own timestamp, with its value).</summary>
    /// <summary>The device's lastConnectTime and lastDisconnectTime server attributes (0 when not written).</summary>
    private static async Task<(long Connect, long Disconnect)> ConnectivityAsync(HttpClient http, string token, string deviceId, CancellationToken cancellationToken)
    {
        var body = await BenchTenant.SendAsync(http, HttpMethod.Get, token,
            $"/api/plugins/telemetry/DEVICE/{deviceId}/values/attributes/SERVER_SCOPE?keys=lastConnectTime,lastDisconnectTime", null, cancellationToken);
        long connect = 0, disconnect = 0;
        if (body.ValueKind == JsonValueKind.Array)
        {
            foreach (var entry in body.EnumerateArray())
            {
                if (entry.TryGetProperty("value", out var value) && value.ValueKind == JsonValueKind.Number)
                {
                    var key = entry.GetProperty("key").GetString();
                    if (key == "lastConnectTime")
                    {
                        connect = value.GetInt64();
                    }
                    else if (key == "lastDisconnectTime")
                    {
                        disconnect = value.GetInt64();
                    }
                }
            }
        }

        return (connect, disconnect);
    }

    private static async Task<long> StoredAsync(HttpClient http, string token, string deviceId, long baseTs, long count, CancellationToken cancellationToken)
    {
        var path = string.Create(CultureInfo.InvariantCulture,
            $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=k0&startTs={baseTs - 1}&endTs={baseTs + count + 1}&limit={count + 100}&agg=NONE");
        var body = await BenchTenant.SendAsync(http, HttpMethod.Get, token, path, null, cancellationToken);
        if (!body.TryGetProperty("k0", out var points))
        {
            return 0;
        }

        var seen = new bool[count];
        long found = 0;
        foreach (var point in points.EnumerateArray())
        {
            var offset = point.GetProperty("ts").GetInt64() - baseTs;
            var value = point.GetProperty("value");
            var text = value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText();
            if (offset >= 0 && offset < count && !seen[offset] && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v == offset)
            {
                seen[offset] = true;
                found++;
            }
        }

        return found;
    }

    /// <summary>Writes <c>{"ts":..,"values":{"k0":seq,"k1":..}}</c>; returns the length.</summary>
    internal static int WritePayload(byte[] buffer, int keys, long baseTs, long sequence)
    {
        var position = 0;
        "{\"ts\":"u8.CopyTo(buffer);
        position += 6;
        Utf8Formatter.TryFormat(baseTs + sequence, buffer.AsSpan(position), out var written);
        position += written;
        ",\"values\":"u8.CopyTo(buffer.AsSpan(position));
        position += 10;
        position += TelemetryScenario.WritePayload(buffer.AsSpan(position), keys, sequence);
        buffer[position++] = (byte)'}';
        return position;
    }

    private sealed class Device(int index, string clientId, string token, int node)
    {
        public int Index { get; } = index;

        public string ClientId { get; } = clientId;

        public string Token { get; } = token;

        public int Node { get; set; } = node;

        public IMqttClient? Client { get; set; }

        /// <summary>Messages 0..Acknowledged-1 are acknowledged (one at a time: each waits for the last's PUBACK).</summary>
        public long Acknowledged;

        public long Refused;

        public int Disconnects;

        /// <summary>When the first acknowledgement after the last lost connection came (Stopwatch ticks), 0 if none.</summary>
        public long RecoveredAt;

        /// <summary>When the device found its last connection gone and began to reconnect (Stopwatch ticks), 0 if never.</summary>
        public long ReconnectingSince;

        /// <summary>When the connection after the last lost one was accepted (CONNACK, Stopwatch ticks), 0 if none.</summary>
        public long ReconnectedAt;

        /// <summary>The longest a publish of this device waited for its PUBACK, in milliseconds.</summary>
        public double SlowestAckMs;

        /// <summary>When the publish now waiting for its PUBACK was sent (Stopwatch ticks), 0 if none waits.</summary>
        public long AwaitingSince;

        /// <summary>Completed when the current connection ends.</summary>
        public TaskCompletionSource Lost { get; set; } = new();
    }
}

/// <summary>Options of the node-kill scenario beyond the common ones.</summary>
public sealed record NodeKillOptions(string ApiUrl, string AdminUser, string AdminPassword, int Keys, int KillNode, double KillAfterSeconds, bool Persistent)
{
    /// <summary>The killed node's devices reconnect spread over the other nodes instead of all to the next one.</summary>
    public bool Spread { get; init; }

    /// <summary>A CSV file to write the per-second timeline to, or null.</summary>
    public string? TimelinePath { get; init; }
}
