using System.Diagnostics;
using HdrHistogram;
using Taihu.Bench.Client;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// idle: hold N connections open and report the broker's resident memory per connection and its CPU while they
/// idle (each client pinging once per keep-alive period).
/// connect-storm: N connects per second; connect latency and failures.
/// </summary>
public static class ConnectionScenarios
{
    public static async Task<BenchResult> IdleAsync(BenchOptions o, IProgress<ProgressReport>? progress, CancellationToken cancellationToken)
    {
        var target = o.Target;
        var before = o.BrokerPid is { } pid ? ProcessSampler.Sample(pid) : null;
        var clients = new List<BenchClient>(o.Clients);
        var failures = 0;
        var runId = Guid.NewGuid().ToString("N")[..8];
        var started = Stopwatch.GetTimestamp();
        var connecting = ThroughputScenario.ConnectAllAsync(o.Clients, async i =>
        {
            var address = o.SourceAddresses.Length == 0 ? null : System.Net.IPAddress.Parse(o.SourceAddresses[i % o.SourceAddresses.Length]);
            var client = await BenchClient.OpenAsync(target, 1, cancellationToken, address, BenchClient.SmallBuffers);
            if (!o.SocketsOnly)
            {
                var code = await client.ConnectAsync($"{runId}-idle-{i}", target, (ushort)o.KeepAliveSeconds, true, cancellationToken);
                if (code != ReasonCode.Success)
                {
                    throw new InvalidOperationException($"CONNACK {code}");
                }
            }

            lock (clients)
            {
                clients.Add(client);
            }
        }, () => Interlocked.Increment(ref failures));
        while (!connecting.IsCompleted)
        {
            await Task.WhenAny(connecting, Task.Delay(500, cancellationToken));
            int count;
            lock (clients)
            {
                count = clients.Count;
            }

            progress?.Report(new ProgressReport("connecting", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(o.DurationSeconds), count, 0, 0));
        }

        // Pings start once everyone is connected and go on through the settling time and the hold. The broker's CPU
        // is measured over the hold only, after --warmup seconds for the connect burst to settle.
        BenchClient[] held;
        lock (clients)
        {
            held = [.. clients];
        }

        using var stopPinging = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pingFailures = 0;
        var pinging = o.KeepAliveSeconds > 0 && !o.SocketsOnly && held.Length > 0
            ? PingAsync(held, TimeSpan.FromSeconds(o.KeepAliveSeconds), TimeSpan.FromMilliseconds(o.PingTickMilliseconds), () => Interlocked.Increment(ref pingFailures), stopPinging.Token)
            : Task.CompletedTask;
        await HoldAsync(o.WarmupSeconds, "settling");
        var holdStart = o.BrokerPid is { } pid1 ? ProcessSampler.Sample(pid1) : null;
        await HoldAsync(o.DurationSeconds, "holding");

        var after = o.BrokerPid is { } pid2 ? ProcessSampler.Sample(pid2) : null;
        await stopPinging.CancelAsync();
        await pinging;
        double? perConnection = before is { } b && after is { } a && clients.Count > 0 ? (a.ResidentBytes - b.ResidentBytes) / (double)clients.Count : null;
        await Task.WhenAll(clients.Select(c => o.SocketsOnly ? c.DisposeAsync().AsTask() : c.DisconnectAsync()));
        return new BenchResult
        {
            Scenario = o.SocketsOnly ? "idle (sockets only)" : "idle",
            Target = $"{o.Host}:{o.Port}",
            Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
            DurationSeconds = o.DurationSeconds,
            Connections = clients.Count,
            ConnectFailures = failures,
            BrokerResidentBytes = after?.ResidentBytes,
            BrokerBytesPerConnection = perConnection,
            BrokerCpuPercent = holdStart is { } h && after is { } a2 ? ProcessSampler.CpuPercent(h, a2) : null,
            GeneratorCpuPercent = 0,
            Note = o.SocketsOnly || o.KeepAliveSeconds == 0
                ? $"broker CPU over the {o.DurationSeconds:0.#} s hold; no keep alive"
                : $"broker CPU over the {o.DurationSeconds:0.#} s hold; keep alive {o.KeepAliveSeconds} s, each client pings once per period, the due pings sent every {o.PingTickMilliseconds} ms ({pingFailures} pings failed)",
        };

        async Task HoldAsync(double seconds, string phase)
        {
            var until = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() is var now && now < until)
            {
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(0.5, (until - now) / (double)Stopwatch.Frequency)), cancellationToken);
                progress?.Report(new ProgressReport(phase, Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(o.DurationSeconds), held.Length, 0, 0));
            }
        }
    }

    /// <summary>Sends each client's PINGREQ when <see cref="IdlePingSchedule"/> says it is due, until cancelled.</summary>
    private static async Task PingAsync(BenchClient[] clients, TimeSpan period, TimeSpan tick, Action failed, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        long sent = 0;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var due = IdlePingSchedule.DueBy(Stopwatch.GetElapsedTime(start), clients.Length, period);
                for (; sent < due; sent++)
                {
                    var client = clients[IdlePingSchedule.ClientOf(sent, clients.Length)];
                    try
                    {
                        await client.PingAsync(cancellationToken);
                    }
                    catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
                    {
                        failed();
                    }
                }

                await Task.Delay(tick, cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
            // The hold is over.
        }
    }

    public static async Task<BenchResult> ConnectStormAsync(BenchOptions o, IProgress<ProgressReport>? progress, CancellationToken cancellationToken)
    {
        var target = o.Target;
        var latency = new LongConcurrentHistogram(1, 60_000_000, 3);
        var failures = 0;
        var succeeded = 0L;
        var runId = Guid.NewGuid().ToString("N")[..8];
        var start = Stopwatch.GetTimestamp();
        var end = start + (long)(o.DurationSeconds * Stopwatch.Frequency);
        var pacer = new RateController(o.Rate == 0 ? 1000 : o.Rate, start, Stopwatch.Frequency);
        var brokerStart = o.BrokerPid is { } pid ? ProcessSampler.Sample(pid) : null;
        var selfStart = ProcessSampler.Self();
        long launched = 0;
        var running = new List<Task>();
        using var concurrency = new SemaphoreSlim(Math.Max(1, o.Clients));
        while (Stopwatch.GetTimestamp() < end && !cancellationToken.IsCancellationRequested)
        {
            var due = pacer.Due(Stopwatch.GetTimestamp(), launched);
            if (due == 0)
            {
                await pacer.WaitForNextAsync(launched, cancellationToken);
                progress?.Report(new ProgressReport("connecting", Stopwatch.GetElapsedTime(start), TimeSpan.FromSeconds(o.DurationSeconds), launched, Interlocked.Read(ref succeeded), latency.TotalCount == 0 ? 0 : latency.GetValueAtPercentile(99) / 1000.0));
                continue;
            }

            for (var n = 0; n < due; n++)
            {
                var index = launched++;
                await concurrency.WaitAsync(cancellationToken);
                running.Add(Task.Run(async () =>
                {
                    try
                    {
                        var t0 = Stopwatch.GetTimestamp();
                        var address = o.SourceAddresses.Length == 0 ? null : System.Net.IPAddress.Parse(o.SourceAddresses[index % o.SourceAddresses.Length]);
                        // Each connection is the whole of it for the broker: TCP, the TLS handshake with --tls, CONNECT and CONNACK.
                        await using var client = o.Client == ClientKind.MqttNet
                            ? (IBenchClient)MqttNetBenchClient.Create(target, 1, address)
                            : await BenchClient.OpenAsync(target, 1, cancellationToken, address, BenchClient.SmallBuffers);
                        var code = await client.ConnectAsync($"{runId}-storm-{index}", target, 60, true, cancellationToken);
                        if (code != ReasonCode.Success)
                        {
                            Interlocked.Increment(ref failures);
                            return;
                        }

                        latency.RecordValue(Math.Max(1, (long)(Stopwatch.GetElapsedTime(t0).TotalMilliseconds * 1000)));
                        Interlocked.Increment(ref succeeded);
                        await client.DisconnectAsync();
                    }
                    catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException or TimeoutException or System.Security.Authentication.AuthenticationException or InvalidCastException)
                    {
                        Interlocked.Increment(ref failures);
                    }
                    finally
                    {
                        concurrency.Release();
                    }
                }, cancellationToken));
            }
        }

        await Task.WhenAll(running);
        var brokerEnd = o.BrokerPid is { } pid3 ? ProcessSampler.Sample(pid3) : null;
        var selfEnd = ProcessSampler.Self();
        return new BenchResult
        {
            Scenario = "connect-storm",
            Target = $"{o.Host}:{o.Port}",
            Client = o.Client == ClientKind.MqttNet ? "mqttnet" : "taihu",
            Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
            OfferedRate = o.Rate,
            DurationSeconds = o.DurationSeconds,
            Connections = (int)succeeded,
            ConnectFailures = failures,
            ConnectP50Ms = latency.TotalCount == 0 ? null : latency.GetValueAtPercentile(50) / 1000.0,
            ConnectP99Ms = latency.TotalCount == 0 ? null : latency.GetValueAtPercentile(99) / 1000.0,
            BrokerCpuPercent = brokerStart is { } b0 && brokerEnd is { } b1 ? ProcessSampler.CpuPercent(b0, b1) : null,
            // Per connection here (CPU-seconds per million connections: microseconds each), the connects and their DISCONNECTs.
            BrokerCpuSecondsPerMillion = brokerStart is { } c0 && brokerEnd is { } c1 && succeeded > 0 ? (c1.CpuTime - c0.CpuTime).TotalSeconds / succeeded * 1e6 : null,
            GeneratorCpuPercent = ProcessSampler.CpuPercent(selfStart, selfEnd),
        };
    }
}
