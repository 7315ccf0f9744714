using System.Diagnostics;
using System.Text;
using Taihu.Bench.Client;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>Who publishes where and who subscribes to what, for the message-flow scenarios.</summary>
public sealed record FlowPlan(string Name, IReadOnlyList<string> PublisherTopics, IReadOnlyList<string> SubscriberFilters, int ExpectedCopies)
{
    public static FlowPlan FanIn(BenchOptions o) => new(
        "fan-in",
        Enumerable.Range(0, o.Publishers).Select(i => $"{o.TopicPrefix}/in/{i}").ToArray(),
        Enumerable.Range(0, o.Subscribers).Select(_ => $"{o.TopicPrefix}/in/+").ToArray(),
        o.Subscribers);

    public static FlowPlan FanOut(BenchOptions o) => new(
        "fan-out",
        [$"{o.TopicPrefix}/out"],
        Enumerable.Range(0, o.Subscribers).Select(_ => $"{o.TopicPrefix}/out").ToArray(),
        o.Subscribers);

    public static FlowPlan Pairs(BenchOptions o) => new(
        "pairs",
        Enumerable.Range(0, o.Clients).Select(i => $"{o.TopicPrefix}/pair/{i}").ToArray(),
        Enumerable.Range(0, o.Clients).Select(i => $"{o.TopicPrefix}/pair/{i}").ToArray(),
        1);

    public static FlowPlan Shared(BenchOptions o) => new(
        "shared",
        Enumerable.Range(0, o.Publishers).Select(i => $"{o.TopicPrefix}/shared/{i}").ToArray(),
        Enumerable.Range(0, o.Subscribers).Select(_ => $"$share/bench/{o.TopicPrefix}/shared/+").ToArray(),
        1);
}

/// <summary>
/// Runs one message-flow scenario: connects subscribers, then publishers; publishes at the offered rate through
/// warm-up and the measurement window; drains; reports. The generator's own CPU and allocations are measured
/// too, so a saturated generator shows in the result instead of passing for a slow broker.
/// </summary>
public sealed class ThroughputScenario
{
    private readonly BenchOptions _options;
    private readonly FlowPlan _plan;
    private readonly IProgress<ProgressReport>? _progress;

    public ThroughputScenario(BenchOptions options, FlowPlan plan, IProgress<ProgressReport>? progress)
    {
        _options = options;
        _plan = plan;
        _progress = progress;
    }

    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        var o = _options;
        var qos = (QoS)o.QoS;
        var recorder = new RunRecorder(Stopwatch.Frequency, _plan.ExpectedCopies);
        var runId = Guid.NewGuid().ToString("N")[..8];
        var subscribers = new List<IBenchClient>();
        var publishers = new List<IBenchClient>();
        var connectFailures = 0;
        try
        {
            await ConnectAllAsync(_plan.SubscriberFilters.Count, async i =>
            {
                var node = o.TargetAt(i);
                var client = await BenchClients.OpenAsync(o.Client, node, o.MaxInflight, cancellationToken, SourceAddress(i));
                client.OnMessage = (sent, _, _) => recorder.Received(sent, Stopwatch.GetTimestamp());
                await client.ConnectAsync($"{runId}-sub-{i}", node, 600, true, cancellationToken);
                await client.SubscribeAsync(_plan.SubscriberFilters[i], qos, cancellationToken);
                lock (subscribers)
                {
                    subscribers.Add(client);
                }
            }, () => Interlocked.Increment(ref connectFailures));

            await ConnectAllAsync(_plan.PublisherTopics.Count, async i =>
            {
                // On a cluster, publisher i goes to the node after subscriber i's, so that its messages cross nodes.
                var node = o.TargetAt(i + 1);
                var client = await BenchClients.OpenAsync(o.Client, node, o.MaxInflight, cancellationToken, SourceAddress(i + _plan.SubscriberFilters.Count));
                await client.ConnectAsync($"{runId}-pub-{i}", node, 600, true, cancellationToken);
                lock (publishers)
                {
                    publishers.Add(client);
                }
            }, () => Interlocked.Increment(ref connectFailures));

            if (publishers.Count == 0 || subscribers.Count == 0)
            {
                throw new InvalidOperationException($"Could not connect: {connectFailures} connections failed.");
            }

            // The broker's first answer on its metrics endpoint compiles its HTTP path (a second of CPU in .NET):
            // ask once before publishing, so that the CPU measured in the window is the messages' alone.
            if (o.MetricsUrl is { } warmUrl)
            {
                await MetricsScraper.ReadAsync(warmUrl, MetricsScraper.AllocatedBytesMetric, cancellationToken);
            }

            var start = Stopwatch.GetTimestamp();
            var windowStart = start + (long)(o.WarmupSeconds * Stopwatch.Frequency);
            var windowEnd = windowStart + (long)(o.DurationSeconds * Stopwatch.Frequency);
            recorder.StartWindow(windowStart);
            recorder.EndWindow(windowEnd);
            var perPublisherRate = o.Rate / publishers.Count;
            var skipped = 0L;
            var publishing = publishers.Select((client, i) => Task.Run(async () =>
            {
                var topic = Encoding.UTF8.GetBytes(_plan.PublisherTopics[i]);
                var pacer = new RateController(perPublisherRate, start, Stopwatch.Frequency, maxBurst: perPublisherRate == 0 ? 64 : 1000);
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
                        var now = Stopwatch.GetTimestamp();
                        await client.PublishAsync(topic, o.PayloadSize, qos, i, sequence++, flush: false, cancellationToken);
                        recorder.Sent(now);
                    }

                    await client.FlushAsync(cancellationToken);
                }

                Interlocked.Add(ref skipped, pacer.Skipped);
            }, cancellationToken)).ToArray();

            ProcessSample? brokerStart = null;
            ProcessSample? selfStart = null;
            long allocatedStart = 0;
            var sampledStart = false;
            double? brokerAllocatedStart = null;
            double? brokerDroppedStart = null;
            var all = Task.WhenAll(publishing);
            while (!all.IsCompleted)
            {
                await Task.WhenAny(all, Task.Delay(500, cancellationToken));
                var now = Stopwatch.GetTimestamp();
                if (!sampledStart && now >= windowStart)
                {
                    sampledStart = true;
                    brokerAllocatedStart = o.MetricsUrl is { } url ? await MetricsScraper.ReadAsync(url, MetricsScraper.AllocatedBytesMetric, cancellationToken) : null;
                    brokerDroppedStart = o.MetricsUrl is { } dropUrl ? await MetricsScraper.ReadAsync(dropUrl, MetricsScraper.DroppedMessagesMetric, cancellationToken) ?? 0 : (double?)null;
                    brokerStart = o.BrokerPid is { } pid ? ProcessSampler.SampleAll(pid, OtherPids()) : null; // after the scrapes: their cost is not the messages'
                    selfStart = ProcessSampler.Self();
                    allocatedStart = GC.GetTotalAllocatedBytes();
                }

                Report(recorder, start, windowStart, windowEnd, now, "publishing");
            }

            await all;
            var brokerEnd = o.BrokerPid is { } endPid ? ProcessSampler.SampleAll(endPid, OtherPids()) : null;
            var selfEnd = ProcessSampler.Self();
            var allocatedEnd = GC.GetTotalAllocatedBytes();
            var brokerAllocatedEnd = o.MetricsUrl is { } endUrl ? await MetricsScraper.ReadAsync(endUrl, MetricsScraper.AllocatedBytesMetric, cancellationToken) : null;

            // Drain: wait until everything expected arrived, or the drain time is up.
            var drainUntil = Stopwatch.GetTimestamp() + (long)(o.DrainSeconds * Stopwatch.Frequency);
            while (recorder.ReceivedInWindow < recorder.Expected && Stopwatch.GetTimestamp() < drainUntil)
            {
                await Task.Delay(50, cancellationToken);
                Report(recorder, start, windowStart, windowEnd, Stopwatch.GetTimestamp(), "draining");
            }

            // What the broker itself says it dropped over the window and the drain: a message counted lost above
            // that the broker did not drop was still on its way when the drain ended.
            double? brokerDroppedEnd = o.MetricsUrl is { } droppedUrl ? await MetricsScraper.ReadAsync(droppedUrl, MetricsScraper.DroppedMessagesMetric, cancellationToken) ?? 0 : null;
            var publisherCount = publishers.Count;
            var subscriberCount = subscribers.Count;

            // Close every connection before reading the histogram, so no receive loop records while it is read.
            await DisconnectAllAsync(publishers, subscribers);
            double? brokerCpu = null;
            double? cpuPerMillion = null;
            if (brokerStart is { } b0 && brokerEnd is { } b1)
            {
                brokerCpu = ProcessSampler.CpuPercent(b0, b1);
                var delivered = Math.Max(1, recorder.ReceivedInWindow);
                cpuPerMillion = (b1.CpuTime - b0.CpuTime).TotalSeconds / delivered * 1_000_000;
            }

            return new BenchResult
            {
                Scenario = _plan.Name,
                Target = $"{o.Host}:{o.Port}{(o.Tls ? " tls" : "")}{(o.WebSocketPath is null ? "" : " ws")}",
                Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
                Client = o.Client == ClientKind.MqttNet ? "mqttnet" : "taihu",
                QoS = o.QoS,
                PayloadSize = Math.Max(o.PayloadSize, BenchClient.HeaderSize),
                OfferedRate = o.Rate,
                DurationSeconds = o.DurationSeconds,
                Publishers = publisherCount,
                Subscribers = subscriberCount,
                Sent = recorder.SentInWindow,
                Expected = recorder.Expected,
                Delivered = recorder.ReceivedInWindow,
                Lost = recorder.Lost,
                Duplicates = recorder.Extra,
                DeliveredPerSecond = recorder.ReceivedInWindow / o.DurationSeconds,
                LatencyP50Ms = recorder.LatencyPercentileMs(50),
                LatencyP90Ms = recorder.LatencyPercentileMs(90),
                LatencyP99Ms = recorder.LatencyPercentileMs(99),
                LatencyP999Ms = recorder.LatencyPercentileMs(99.9),
                LatencyMaxMs = recorder.LatencyMaxMs,
                BrokerCpuPercent = brokerCpu,
                BrokerCpuSecondsPerMillion = cpuPerMillion,
                BrokerResidentBytes = brokerEnd?.ResidentBytes,
                BrokerAllocatedBytesPerDelivered = brokerAllocatedStart is { } a0 && brokerAllocatedEnd is { } a1 && recorder.ReceivedInWindow > 0 ? (a1 - a0) / recorder.ReceivedInWindow : null,
                BrokerDropped = brokerDroppedStart is { } d0 && brokerDroppedEnd is { } d1 ? (long)(d1 - d0) : null,
                GeneratorCpuPercent = selfStart is { } s0 ? ProcessSampler.CpuPercent(s0, selfEnd) : 0,
                GeneratorAllocatedBytes = allocatedEnd - allocatedStart,
                PacedMessagesSkipped = Interlocked.Read(ref skipped),
                ConnectFailures = connectFailures,
                Connections = publisherCount + subscriberCount,
            };
        }
        finally
        {
            await DisconnectAllAsync(publishers, subscribers);
        }
    }

    private static async Task DisconnectAllAsync(List<IBenchClient> publishers, List<IBenchClient> subscribers)
    {
        var clients = publishers.Concat(subscribers).ToArray();
        publishers.Clear();
        subscribers.Clear();
        await Task.WhenAll(clients.Select(c => c.DisconnectAsync()));
    }

    private IEnumerable<int> OtherPids()
    {
        foreach (var node in _options.OtherNodes)
        {
            yield return node.Pid;
        }
    }

    private System.Net.IPAddress? SourceAddress(int index) =>
        _options.SourceAddresses.Length == 0 ? null : System.Net.IPAddress.Parse(_options.SourceAddresses[index % _options.SourceAddresses.Length]);

    private void Report(RunRecorder recorder, long start, long windowStart, long windowEnd, long now, string phase)
    {
        _progress?.Report(new ProgressReport(
            Phase: now < windowStart ? "warm-up" : phase,
            Elapsed: TimeSpan.FromSeconds((now - start) / (double)Stopwatch.Frequency),
            Total: TimeSpan.FromSeconds((windowEnd - start) / (double)Stopwatch.Frequency),
            Sent: recorder.SentTotal,
            Received: recorder.ReceivedTotal,
            P99Ms: recorder.LivePercentileMs(99)));
    }

    /// <summary>Connects <paramref name="count"/> clients, at most 64 at a time.</summary>
    internal static async Task ConnectAllAsync(int count, Func<int, Task> connect, Action onFailure)
    {
        using var gate = new SemaphoreSlim(64);
        var tasks = new Task[count];
        for (var i = 0; i < count; i++)
        {
            var index = i;
            await gate.WaitAsync();
            tasks[i] = Task.Run(async () =>
            {
                try
                {
                    await connect(index);
                }
                catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException or TimeoutException or System.Security.Authentication.AuthenticationException or System.Net.WebSockets.WebSocketException or InvalidCastException or MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
                {
                    onFailure();
                }
                finally
                {
                    gate.Release();
                }
            });
        }

        await Task.WhenAll(tasks);
    }
}

/// <summary>A progress update for the live display.</summary>
public readonly record struct ProgressReport(string Phase, TimeSpan Elapsed, TimeSpan Total, long Sent, long Received, double P99Ms);
