using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using HdrHistogram;
using Taihu.Bench.Client;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// rpc: lightweight two-way RPC through the REST API. --clients devices (taihu-bench's own MQTT client) connect,
/// subscribe to <c>v1/devices/me/rpc/request/+</c> and answer every command at once; a tenant administrator
/// calls <c>POST /api/rpc/twoway/{deviceId}</c> at --rate calls per second, round robin over the devices, from
/// one HTTP client with a pool of kept-alive connections (calls are not held back by slow ones: each starts on
/// time). Latency is from the call's start to the end of its HTTP response, which holds the device's reply; a
/// call counts as answered only when that reply echoes the call's own <c>seq</c>. Calls started in the
/// measurement window count; every one of them is waited for (at most its timeout) before the result.
/// </summary>
public sealed class RpcScenario(BenchOptions o, PlatformTarget p, int timeoutMs, int noGcMegabytes, IProgress<ProgressReport>? progress)
{
    private readonly LongConcurrentHistogram _latency = new(1, 600_000_000, 3);
    private long _answered;
    private long _answeredAll;
    private long _failed;
    private long _wrongReply;
    private string? _firstFailure;
    private readonly Dictionary<int, long> _statuses = [];

    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        using var http = p.CreateHttpClient(maxConnections: 512);
        var tenant = await BenchTenant.CreateAsync(http, p.AdminUser, p.AdminPassword, cancellationToken);
        BenchClient[] devices = [];
        MQTTnet.IMqttClient[] mqttNetDevices = [];
        MqttJsDeviceFleet? mqttJsDevices = null;
        try
        {
            var (ids, tokens) = await tenant.CreateDevicesAsync(o.Clients, progress, cancellationToken);
            long commands = 0;
            DeviceFleet.CommandHandler counted = (_, _, _, _) => Interlocked.Increment(ref commands);
            // --client picks the devices' MQTT client: taihu-bench's own, MQTTnet as third-party firmware, or the npm
            // mqtt client in a Node.js process of its own.
            Func<long> received = () => Interlocked.Read(ref commands);
            if (o.Client == ClientKind.MqttNet)
            {
                mqttNetDevices = await MqttNetDeviceFleet.ConnectAsync(o, tenant.RunId, tokens, counted, progress, cancellationToken);
            }
            else if (o.Client == ClientKind.MqttJs)
            {
                mqttJsDevices = await MqttJsDeviceFleet.StartAsync(o, tenant.RunId, tokens, progress, cancellationToken);
                var fleet = mqttJsDevices;
                received = () => fleet.Commands;
            }
            else
            {
                devices = await DeviceFleet.ConnectAsync(o, tenant.RunId, tokens, counted, progress, cancellationToken);
            }

            // What connecting the devices left in the young generations is collected now: the generator's first
            // collections after it otherwise had it all to mark and move, once paused over 100 ms in the window,
            // and every call in flight meanwhile counted it as the server's latency.
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            // From here to the window's end the generator does not collect at all, if its budget lasts (NoGcWindow).
            using var noGc = NoGcWindow.Start(noGcMegabytes);
            return await MeasureAsync(http, tenant.AdminToken, ids, received, noGc, cancellationToken);
        }
        finally
        {
            await DeviceFleet.DisposeAsync(devices);
            await MqttNetDeviceFleet.DisposeAsync(mqttNetDevices);
            if (mqttJsDevices is not null)
            {
                await mqttJsDevices.DisposeAsync();
            }

            await tenant.DeleteAsync();
        }
    }

    private async Task<BenchResult> MeasureAsync(HttpClient http, string jwt, string[] ids, Func<long> commands, NoGcWindow noGc, CancellationToken cancellationToken)
    {
        var authorization = "Bearer " + jwt;
        var start = Stopwatch.GetTimestamp();
        var windowStart = start + (long)(o.WarmupSeconds * Stopwatch.Frequency);
        var windowEnd = windowStart + (long)(o.DurationSeconds * Stopwatch.Frequency);
        var pacer = new RateController(o.Rate, start, Stopwatch.Frequency, maxBurst: 1000);
        var calls = new List<Task>();
        long issued = 0;
        long inWindow = 0;
        // The server's counters are read a second before the window, in the background, and again once every call
        // of the window has ended: a read is a /metrics request the server serves in the middle of the calls, and
        // awaiting it here held the calls back for its duration, then started them all at once. Costs per call are
        // divided by the calls answered between the two reads.
        var sampleAt = Math.Max(start, windowStart - Stopwatch.Frequency);
        Task<Sample>? startSample = null;
        GcWatch? generatorGc = null;
        var lastReport = start;
        while (true)
        {
            var now = Stopwatch.GetTimestamp();
            if (now >= windowEnd || cancellationToken.IsCancellationRequested)
            {
                break;
            }

            startSample ??= now >= sampleAt ? SampleAsync(cancellationToken) : null;
            if (generatorGc is null && now >= windowStart)
            {
                generatorGc = new GcWatch();
            }

            generatorGc?.Poll();

            var due = pacer.Due(now, issued);
            for (var n = 0; n < due; n++)
            {
                var counted = now >= windowStart;
                inWindow += counted ? 1 : 0;
                calls.Add(CallAsync(http, authorization, ids[issued % ids.Length], issued, counted, cancellationToken));
                issued++;
            }

            if (now - lastReport > Stopwatch.Frequency)
            {
                lastReport = now;
                calls.RemoveAll(t => t.IsCompleted);
                progress?.Report(new ProgressReport(now < windowStart ? "warming up" : "calling", Stopwatch.GetElapsedTime(start),
                    TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds), issued, commands(), Percentile(99)));
            }

            if (due == 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(1), cancellationToken);
            }
        }

        var seconds = (double)(Stopwatch.GetTimestamp() - windowStart) / Stopwatch.Frequency;
        var generatorGcs = generatorGc?.Describe();
        var noGcOutcome = noGc.End();
        await Task.WhenAll(calls);
        var first = startSample is null ? null : (Sample?)await startSample;
        var last = await SampleAsync(cancellationToken);
        var brokerStart = first?.Broker;
        var brokerEnd = last.Broker;
        var runtimeStart = first?.Runtime;
        var runtimeEnd = last.Runtime;
        var between = first is { } f0 ? last.Answered - f0.Answered : 0;
        var answered = Interlocked.Read(ref _answered);
        var lost = inWindow - answered;
        string statuses;
        lock (_statuses)
        {
            statuses = string.Join(", ", _statuses.Select(s => $"{s.Key}: {s.Value}"));
        }

        // With --metrics-url: what the server spent per call (allocations, CPU, collections), which a loaded
        // machine changes far less than the latency.
        var runtime = runtimeStart is { } r0 && runtimeEnd is { } r1 ? "; " + r1.Describe(r0, between, "answered call") : "";
        return new BenchResult
        {
            Scenario = "rpc",
            Client = BenchClients.Name(o.Client),
            Target = $"{p.ApiUrl} (devices on {o.Host}:{o.Port})",
            Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
            QoS = 1,
            OfferedRate = o.Rate,
            DurationSeconds = seconds,
            Publishers = 1,
            Subscribers = ids.Length,
            Sent = inWindow,
            Expected = inWindow,
            Delivered = answered,
            Lost = lost,
            DeliveredPerSecond = answered / seconds,
            LatencyP50Ms = Percentile(50),
            LatencyP90Ms = Percentile(90),
            LatencyP99Ms = Percentile(99),
            LatencyP999Ms = Percentile(99.9),
            LatencyMaxMs = _latency.TotalCount == 0 ? 0 : _latency.GetMaxValue() / 1000.0,
            BrokerCpuPercent = brokerStart is { } b0 && brokerEnd is { } b1 ? ProcessSampler.CpuPercent(b0, b1) : null,
            BrokerResidentBytes = brokerEnd?.ResidentBytes,
            BrokerCpuSecondsPerMillion = brokerStart is { } c0 && brokerEnd is { } c1 && between > 0 ? (c1.CpuTime - c0.CpuTime).TotalSeconds * 1e6 / between : null,
            BrokerAllocatedBytesPerDelivered = runtimeStart is { } a0 && runtimeEnd is { } a1 && between > 0 ? (a1.AllocatedBytes - a0.AllocatedBytes) / between : null,
            GeneratorCpuPercent = first is { } g0 ? ProcessSampler.CpuPercent(g0.Self, last.Self) : 0,
            Connections = ids.Length + 1,
            PacedMessagesSkipped = pacer.Skipped,
            Note = string.Create(CultureInfo.InvariantCulture,
                $"two-way calls through POST /api/rpc/twoway (timeout {timeoutMs} ms), latency from the call's start to its HTTP response; 'lost' = calls of the window not answered 200 with their own reply ({Interlocked.Read(ref _failed)} failed{(statuses.Length > 0 ? $" [{statuses}]" : "")}, {Interlocked.Read(ref _wrongReply)} with another call's reply){(_firstFailure is { } f ? $"; first failure: {f}" : "")}{runtime}{(generatorGcs is null ? "" : "; " + generatorGcs)}; {noGcOutcome}"),
        };
    }

    /// <summary>The server's and the generator's counters, and the calls answered so far (window or not).</summary>
    private readonly record struct Sample(ProcessSample? Broker, ProcessSample Self, RuntimeCounters? Runtime, long Answered);

    private async Task<Sample> SampleAsync(CancellationToken cancellationToken)
    {
        var answered = Interlocked.Read(ref _answeredAll);
        var broker = o.BrokerPid is { } pid ? ProcessSampler.Sample(pid) : null;
        var self = ProcessSampler.Self();
        var runtime = await RuntimeCounters.ReadAsync(o.MetricsUrl, cancellationToken);
        return new Sample(broker, self, runtime, answered);
    }

    private double Percentile(double percentile)
    {
        try
        {
            return _latency.TotalCount == 0 ? 0 : _latency.GetValueAtPercentile(percentile) / 1000.0;
        }
        catch (InvalidOperationException)
        {
            return 0; // read while recording (the live display only)
        }
    }

    private async Task CallAsync(HttpClient http, string authorization, string deviceId, long sequence, bool counted, CancellationToken cancellationToken)
    {
        var body = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{{\"method\":\"getValue\",\"params\":{{\"seq\":{sequence}}},\"timeout\":{timeoutMs}}}"));
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/rpc/twoway/" + deviceId) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            request.Headers.Add("X-Authorization", authorization);
            using var response = await http.SendAsync(request, cancellationToken);
            var reply = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            var elapsed = Stopwatch.GetElapsedTime(started);
            var ownReply = response.IsSuccessStatusCode && reply.AsSpan().SequenceEqual(RpcMessages.Reply(sequence));
            if (ownReply)
            {
                Interlocked.Increment(ref _answeredAll);
            }

            if (!counted)
            {
                return;
            }

            if (!response.IsSuccessStatusCode)
            {
                Fail((int)response.StatusCode, Encoding.UTF8.GetString(reply));
                return;
            }

            if (!ownReply)
            {
                Interlocked.Increment(ref _wrongReply);
                Fail(200, "a reply that is not the call's own: " + Encoding.UTF8.GetString(reply));
                return;
            }

            Interlocked.Increment(ref _answered);
            _latency.RecordValue(Math.Clamp((long)elapsed.TotalMicroseconds, 1, 600_000_000));
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
        {
            if (counted)
            {
                Fail(0, ex.Message);
            }
        }
    }

    private void Fail(int status, string detail)
    {
        Interlocked.Increment(ref _failed);
        Interlocked.CompareExchange(ref _firstFailure, $"{status} {detail}", null);
        lock (_statuses)
        {
            _statuses[status] = _statuses.GetValueOrDefault(status) + 1;
        }
    }
}

/// <summary>Where the platform scenarios reach Taihu's HTTP API, and the system administrator who makes their tenant.</summary>
public sealed record PlatformTarget(string ApiUrl, string AdminUser, string AdminPassword)
{
    public HttpClient CreateHttpClient(int maxConnections = 16) =>
        new(new SocketsHttpHandler { MaxConnectionsPerServer = maxConnections, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = new Uri(ApiUrl),
            Timeout = TimeSpan.FromMinutes(5),
        };
}
