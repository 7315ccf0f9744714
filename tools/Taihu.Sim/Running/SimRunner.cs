using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Taihu.Sim.Scenarios;
using Taihu.Sim.Values;

namespace Taihu.Sim.Running;

/// <summary>Where the server is and how to sign in to it.</summary>
public sealed record SimTarget(Uri Http, string MqttHost, int MqttPort, string SysAdmin, string SysPassword)
{
    /// <summary>A local server process to sample CPU and memory of through /proc; when null, the server's /metrics is read.</summary>
    public int? ServerPid { get; init; }

    /// <summary>Where HJ 212 stations, JT/T 808 terminals and CoAP devices connect (the host is <see cref="MqttHost"/>).</summary>
    public int Hj212Port { get; init; } = 9212;

    public int Jt808Port { get; init; } = 6808;

    public int CoapPort { get; init; } = 5683;
}

/// <summary>
/// Runs a scenario: provisions the fleet, connects every device, reports on schedule for the scenario's duration
/// (divided by <c>--speed</c>), reads back what the server stored and which alarms it raised, and checks the
/// expectations.
/// </summary>
public sealed class SimRunner(Scenario scenario, ScenarioScaling scaling, SimTarget target, TextWriter log)
{
    private readonly Dictionary<string, Recorder> _fleetRecorders = new(StringComparer.Ordinal);
    private List<FaultRun> _faults = [];
    private List<RpcCallRun> _calls = [];
    private HttpClient? _http;
    private FaultProxy? _proxy;
    private Recorder? _total;
    private Provisioner? _provisioner;
    private int _failuresShown;

    /// <summary>The devices a share of a fleet is: its first by number, at least one when the share is above zero.</summary>
    internal static int Affected(double share, int fleetSize) => share <= 0 ? 0 : Math.Max(1, (int)Math.Round(share * fleetSize, MidpointRounding.AwayFromZero));

    public async Task<SimReport> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = target.Http, Timeout = TimeSpan.FromSeconds(60) };
        var provisioner = new Provisioner(http, scaling);
        _http = http;
        _provisioner = provisioner;
        var progress = new Progress<string>(line => log.WriteLine("  " + line));
        log.WriteLine(SimCommands.Summary(scenario, scaling));
        await provisioner.CreateTenantAsync(scenario, target.SysAdmin, target.SysPassword, cancellationToken);
        var profiles = await provisioner.CreateProfilesAsync(scenario, cancellationToken);
        var provisioned = await provisioner.CreateDevicesAsync(scenario, profiles, progress, cancellationToken);
        log.WriteLine($"  tenant 'sim {scenario.Name} {provisioner.RunId}' with {provisioned.Count} device(s); sign in to the console as {provisioner.TenantAdmin} / {provisioner.TenantPassword}");

        // Fleets with network faults connect through the proxy that makes them.
        var proxied = scenario.Faults.Where(f => f.Kind is FaultKind.Pause or FaultKind.HalfOpen).Select(f => f.Fleet).ToHashSet(StringComparer.Ordinal);
        await using var proxy = proxied.Count > 0 ? new FaultProxy(target.MqttHost, target.MqttPort) : null;
        _proxy = proxy;
        var devices = new List<RunningDevice>(provisioned.Count);
        var gateways = new Dictionary<string, (MqttSimDevice Connection, SemaphoreSlim Gate)>(StringComparer.Ordinal);
        foreach (var p in provisioned)
        {
            var device = new RunningDevice(p, scenario.Seed, scaling.Count(p.Fleet.Count));
            if (p.Gateway is { } gateway)
            {
                if (!gateways.TryGetValue(gateway.Id, out var shared))
                {
                    shared = (new MqttSimDevice(target.MqttHost, target.MqttPort, $"sim-{provisioner.RunId}-{gateway.FleetIndex}-gw{gateway.Number}", gateway.Token, p.Fleet, scaling,
                        new Random(HashCode.Combine(scenario.Seed, gateway.FleetIndex, -gateway.Number))), new SemaphoreSlim(1));
                    gateways[gateway.Id] = shared;
                }

                device.Connection = new GatewayChildDevice(shared.Connection, p.Name, shared.Gate);
            }
            else
            {
                device.ClientId = $"sim-{provisioner.RunId}-{p.FleetIndex}-{p.Number}";
                var (host, port) = proxy is not null && proxied.Contains(p.Fleet.Name) ? ("127.0.0.1", proxy.Port) : (target.MqttHost, target.MqttPort);
                device.Connection = p.Fleet.Protocol switch
                {
                    DeviceProtocol.Http => new HttpSimDevice(http, p.Token),
                    DeviceProtocol.Mqtt => new MqttSimDevice(host, port, device.ClientId, p.Token, p.Fleet, scaling, device.Random),
                    _ => ProtocolDevices.Create(p, target, provisioner.RunId, scaling, device.Random),
                };
            }

            devices.Add(device);
        }

        _faults = [.. scenario.Faults.Select(f => new FaultRun(f, devices.Where(d => d.Provisioned.Fleet.Name == f.Fleet && d.Provisioned.Number <= Affected(f.Share, scaling.Count(d.Provisioned.Fleet.Count))).ToList()))];
        _calls = [.. scenario.RpcCalls.Select(c => new RpcCallRun(c))];
        foreach (var device in devices)
        {
            device.Faults = [.. _faults.Where(f => f.Devices.Contains(device)).Select(f => f.Definition)];
        }

        foreach (var fleet in scenario.Fleets)
        {
            _fleetRecorders[fleet.Name] = new Recorder(0);
        }

        await ConnectAllAsync(devices, cancellationToken);
        var startTimestamp = Stopwatch.GetTimestamp();
        var startWall = DateTimeOffset.UtcNow;
        foreach (var fleet in scenario.Fleets)
        {
            _fleetRecorders[fleet.Name] = new Recorder(startTimestamp);
        }

        var total = new Recorder(startTimestamp);
        _total = total;
        var sampler = new ServerSampler(http, target.ServerPid);
        using var sampling = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var samplerTask = sampler.RunAsync(startTimestamp, sampling.Token);
        await RunScheduleAsync(devices, total, startTimestamp, cancellationToken);
        await sampling.CancelAsync();
        await samplerTask;
        var endWall = DateTimeOffset.UtcNow;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  sent {total.Sent}, acknowledged {total.Acknowledged}, failed {total.Failed}; p50 {total.Percentile(50).TotalMilliseconds:0.#} ms, p99 {total.Percentile(99).TotalMilliseconds:0.#} ms"));

        foreach (var device in devices)
        {
            await device.Connection.DisposeAsync();
        }

        foreach (var (connection, gate) in gateways.Values)
        {
            await connection.DisposeAsync();
            gate.Dispose();
        }

        var stored = await ReadBackAsync(provisioner, devices, startWall, cancellationToken);
        var alarms = await provisioner.AlarmsAsync(cancellationToken);
        return SimReport.Build(scenario, scaling, provisioner, devices, stored, alarms, total, _fleetRecorders, startWall, endWall, _faults, _calls, sampler);
    }

    private async Task ConnectAllAsync(List<RunningDevice> devices, CancellationToken cancellationToken)
    {
        using var gate = new SemaphoreSlim(64);
        var tasks = new List<Task>(devices.Count);
        foreach (var device in devices)
        {
            await gate.WaitAsync(cancellationToken);
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    await device.Connection.ConnectAsync(cancellationToken);
                    if (device.Provisioned.Fleet.Attributes is { } attributes)
                    {
                        await device.Connection.SendAttributesAsync(Utf8.Bytes(attributes.ToJsonString()), cancellationToken);
                    }
                }
                finally
                {
                    gate.Release();
                }
            }, cancellationToken));
        }

        await Task.WhenAll(tasks);
    }

    /// <summary>
    /// One loop decides who reports when (a queue ordered by due time), and hands each report to the device's
    /// connection without waiting: the run's clock does not slip behind a slow acknowledgement.
    /// </summary>
    private async Task RunScheduleAsync(List<RunningDevice> devices, Recorder total, long startTimestamp, CancellationToken cancellationToken)
    {
        var due = new PriorityQueue<RunningDevice, TimeSpan>();
        foreach (var device in devices)
        {
            // Spread the first reports over the first interval, as devices that started at different times.
            var interval = scaling.Real(device.Provisioned.Fleet.Interval);
            due.Enqueue(device, interval * device.Random.NextDouble());
        }

        var rpcDue = new PriorityQueue<(RunningDevice Device, RpcCallRun Call), TimeSpan>();
        foreach (var call in _calls)
        {
            foreach (var device in devices.Where(d => d.Provisioned.Fleet.Name == call.Definition.Fleet))
            {
                rpcDue.Enqueue((device, call), scaling.Real(call.Definition.Every) * device.Random.NextDouble());
            }
        }

        var faultsDue = new Queue<FaultRun>(_faults.OrderBy(f => f.Definition.At));
        var runFor = scaling.Real(scenario.Duration);
        var inFlight = new List<Task>();
        var lastProgress = TimeSpan.Zero;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        while (true)
        {
            var elapsed = Stopwatch.GetElapsedTime(startTimestamp);
            if (elapsed >= runFor)
            {
                break;
            }

            var now = scaling.ScenarioTime(elapsed);
            while (faultsDue.TryPeek(out var fault) && fault.Definition.At <= now)
            {
                faultsDue.Dequeue();
                inFlight.Add(InjectAsync(fault, now, cancellationToken));
            }

            while (rpcDue.TryPeek(out var call, out var callWhen) && callWhen <= elapsed)
            {
                rpcDue.Dequeue();
                inFlight.Add(CallAsync(call.Device, call.Call, cancellationToken));
                rpcDue.Enqueue(call, callWhen + scaling.Real(call.Call.Definition.Every));
            }

            while (due.TryPeek(out var device, out var when) && when <= elapsed)
            {
                due.Dequeue();
                inFlight.Add(ReportAsync(device, now, total, cancellationToken));
                var interval = scaling.Real(device.Provisioned.Fleet.Interval);
                var jitter = device.Provisioned.Fleet.Jitter * ((device.Random.NextDouble() * 2) - 1);
                due.Enqueue(device, when + (interval * (1 + jitter)));
            }

            if (inFlight.Count > 1024)
            {
                inFlight.RemoveAll(t => t.IsCompleted);
            }

            if (elapsed - lastProgress >= TimeSpan.FromSeconds(5))
            {
                lastProgress = elapsed;
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {Durations.Format(TimeSpan.FromSeconds(Math.Round(scaling.ScenarioTime(elapsed).TotalSeconds)))} of {Durations.Format(scenario.Duration)}: sent {total.Sent}, acknowledged {total.Acknowledged}, failed {total.Failed}, p99 {total.Percentile(99).TotalMilliseconds:0.#} ms"));
            }

            await timer.WaitForNextTickAsync(cancellationToken);
        }

        // What was sent gets its answer (or its failure) before the count is taken.
        await Task.WhenAll(inFlight).WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
    }

    private async Task ReportAsync(RunningDevice device, TimeSpan scenarioTime, Recorder total, CancellationToken cancellationToken)
    {
        TimeSpan skew = TimeSpan.Zero;
        FaultDefinition? skewFault = null;
        foreach (var fault in device.Faults)
        {
            if (fault.Kind == FaultKind.Silence && fault.IsActive(scenarioTime))
            {
                return;
            }

            if (fault.Kind == FaultKind.ClockSkew && fault.IsActive(scenarioTime))
            {
                skew = fault.Skew;
                skewFault = fault;
            }
        }

        if (!device.Connection.IsConnected)
        {
            // A device that lost its connection has nothing to send on until it is back: counted, not sent.
            device.CountMissedOffline();
            return;
        }

        var (payload, ts) = device.Payload(scenarioTime, DateTimeOffset.UtcNow.Add(skew).ToUnixTimeMilliseconds());
        var result = await SendCountedAsync(device, payload, total, cancellationToken);
        if (result.Acknowledged)
        {
            device.CountStoredTs(ts);
        }

        if (skewFault is not null)
        {
            _faults.First(f => f.Definition == skewFault).Record(result.Outcome);
        }
    }

    /// <summary>Sends a telemetry payload, counted as sent and as acknowledged or failed, with its latency.</summary>
    private async Task<SendResult> SendCountedAsync(RunningDevice device, byte[] payload, Recorder total, CancellationToken cancellationToken)
    {
        var fleet = _fleetRecorders[device.Provisioned.Fleet.Name];
        var sent = Stopwatch.GetTimestamp();
        total.RecordSent(sent);
        fleet.RecordSent(sent);
        device.CountSent();
        var result = await device.Connection.SendTelemetryAsync(payload, cancellationToken);
        if (result.Acknowledged)
        {
            var acked = Stopwatch.GetTimestamp();
            total.RecordAcknowledged(sent, acked);
            fleet.RecordAcknowledged(sent, acked);
            device.CountAcknowledged();
        }
        else
        {
            var failed = Stopwatch.GetTimestamp();
            total.RecordFailed(failed);
            fleet.RecordFailed(failed);
            if (Interlocked.Increment(ref _failuresShown) <= 5)
            {
                // The first few, so that a person sees what went wrong without reading the report.
                log.WriteLine($"  {device.Provisioned.Name}: not acknowledged ({result.Outcome})");
            }
        }

        return result;
    }

    /// <summary>
    /// Applies a fault to its devices and records what the server made of each injection. Malformed and oversized
    /// messages are not counted as telemetry: they are meant to be refused.
    /// </summary>
    private async Task InjectAsync(FaultRun fault, TimeSpan now, CancellationToken cancellationToken)
    {
        var tasks = new List<Task>();
        foreach (var device in fault.Devices)
        {
            tasks.Add(Task.Run(async () =>
            {
                switch (fault.Definition.Kind)
                {
                    case FaultKind.Disconnect:
                        var lostBefore = device.Connection.Reconnects;
                        await device.Connection.DropAsync(reconnect: true);
                        fault.Record("disconnected");
                        fault.TrackReconnect(device, lostBefore);
                        break;
                    case FaultKind.ReconnectStorm:
                        await device.Connection.DropAsync(reconnect: false);
                        break;
                    case FaultKind.Silence:
                        // A device that stops reporting has lost its power or its network: its connection goes too,
                        // and comes back when the silence ends.
                        await device.Connection.DropAsync(reconnect: false);
                        fault.Record("fell silent");
                        if (fault.Definition.For is { } silence && device.Connection is MqttSimDevice or TcpSimDevice)
                        {
                            await Task.Delay(scaling.Real(silence), cancellationToken);
                            var back = device.Connection is MqttSimDevice silent ? await silent.ReconnectNowAsync(cancellationToken) : await ((TcpSimDevice)device.Connection).ReconnectNowAsync(cancellationToken);
                            fault.Record(back ? "back after the silence" : "refused after the silence, reconnecting with back-off");
                        }

                        break;
                    case FaultKind.ClockSkew:
                        break;
                    case FaultKind.Pause:
                        if (_proxy?.Find(device.ClientId ?? "") is not { } held)
                        {
                            fault.Record("not connected");
                            break;
                        }

                        held.Hold();
                        await Task.Delay(scaling.Real(fault.Definition.For!.Value), cancellationToken);
                        held.Resume();

                        // What the server made of it shows within a keep-alive period of the network coming back.
                        await Task.Delay(MqttSimDevice.KeepAlive(device.Provisioned.Fleet, scaling), cancellationToken);
                        fault.Record(held.ServerClosed ? "server closed the connection during the pause" : "connection survived the pause");
                        break;
                    case FaultKind.HalfOpen:
                        if (_proxy?.Find(device.ClientId ?? "") is not { } dropped)
                        {
                            fault.Record("not connected");
                            break;
                        }

                        fault.TrackReconnect(device, device.Connection.Reconnects);
                        dropped.Kill();
                        fault.AddLink(dropped);
                        break;
                    case FaultKind.Malformed:
                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            fault.Record((await device.Connection.SendTelemetryAsync(Utf8.Bytes("{\"temperature\": 21.5, oops"), cancellationToken)).Outcome);
                        }

                        break;
                    case FaultKind.Oversized:
                        var big = Utf8.Bytes("{\"blob\":\"" + new string('x', 2 * 1024 * 1024) + "\"}");
                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            fault.Record((await device.Connection.SendTelemetryAsync(big, cancellationToken)).Outcome);
                        }

                        break;
                    case FaultKind.Duplicate:
                        var (payload, ts) = device.Payload(now, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                        var first = await SendCountedAsync(device, payload, _total!, cancellationToken);
                        if (first.Acknowledged)
                        {
                            device.CountStoredTs(ts);
                        }

                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            // The same point again: acknowledged, and stored once (it is keyed by its timestamp).
                            var again = await device.Connection.SendTelemetryAsync(payload, cancellationToken);
                            fault.Record(again.Acknowledged ? "acknowledged again" : again.Outcome);
                        }

                        break;
                    case FaultKind.Burst:
                        var burst = new List<Task<SendResult>>();
                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            var (p, t) = device.Payload(now, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                            burst.Add(SendAndKeepAsync(device, p, t, cancellationToken));
                        }

                        foreach (var result in await Task.WhenAll(burst))
                        {
                            fault.Record(result.Outcome);
                        }

                        break;
                }
            }, cancellationToken));
        }

        await Task.WhenAll(tasks);
        if (fault.Definition.Kind == FaultKind.ReconnectStorm)
        {
            // Everyone at once, no back-off: the storm.
            var reconnects = fault.Devices.Select(d => d.Connection is MqttSimDevice mqtt ? mqtt.ReconnectNowAsync(cancellationToken) : Task.FromResult(true)).ToList();
            foreach (var ok in await Task.WhenAll(reconnects))
            {
                fault.Record(ok ? "reconnected at once" : "refused at once, reconnecting with back-off");
            }
        }
    }

    private async Task<SendResult> SendAndKeepAsync(RunningDevice device, byte[] payload, long ts, CancellationToken cancellationToken)
    {
        var result = await SendCountedAsync(device, payload, _total!, cancellationToken);
        if (result.Acknowledged)
        {
            device.CountStoredTs(ts);
        }

        return result;
    }

    /// <summary>A two-way RPC call through the REST API, as an operator's system makes it.</summary>
    private async Task CallAsync(RunningDevice device, RpcCallRun call, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var timeoutMs = (long)call.Definition.Timeout.TotalMilliseconds;
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/rpc/twoway/{device.Provisioned.Id}")
        {
            Content = new StringContent($"{{\"method\":{JsonSerializer.Serialize(call.Definition.Method)},\"params\":{call.Definition.ParamsJson},\"timeout\":{timeoutMs}}}",
                System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-Authorization", "Bearer " + _provisioner!.TenantToken);
        try
        {
            using var response = await _http!.SendAsync(request, cancellationToken);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            call.Record((int)response.StatusCode, body, Stopwatch.GetElapsedTime(started));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            call.Record(0, e.Message, Stopwatch.GetElapsedTime(started));
        }
    }

    /// <summary>
    /// Points stored per device (by the fleet's first key), read until they reach what was acknowledged or stop changing.
    /// The window reaches a day ahead (the server's default future-skew limit), for clocks skewed on purpose.
    /// </summary>
    private static async Task<Dictionary<string, long>> ReadBackAsync(Provisioner provisioner, List<RunningDevice> devices, DateTimeOffset startWall, CancellationToken cancellationToken)
    {
        var stored = new Dictionary<string, long>(StringComparer.Ordinal);
        var from = startWall.AddMinutes(-1).ToUnixTimeMilliseconds();
        var deadline = Stopwatch.GetTimestamp() + (Stopwatch.Frequency * 30);
        foreach (var device in devices)
        {
            if (device.Keys.Length == 0)
            {
                stored[device.Provisioned.Id] = 0;
                continue;
            }

            long count;
            while (true)
            {
                count = await provisioner.CountPointsAsync(device.Provisioned.Id, device.Keys[0], Math.Min(from, device.MinTs - 1),
                    Math.Max(DateTimeOffset.UtcNow.AddDays(1).ToUnixTimeMilliseconds(), device.MaxTs + 1), cancellationToken);
                if (count >= device.StoredTsCount || Stopwatch.GetTimestamp() > deadline)
                {
                    break;
                }

                // The last batch may still be on its way to the store (acknowledged before commit on some servers).
                await Task.Delay(200, cancellationToken);
            }

            stored[device.Provisioned.Id] = count;
        }

        return stored;
    }
}

/// <summary>A device during the run: its values' sources, its random numbers, and its counts.</summary>
public sealed class RunningDevice
{
    private readonly IValueSource[] _sources;
    private readonly (EventDefinition Event, Dictionary<int, IValueSource> Sources)[] _events;

    public RunningDevice(ProvisionedDevice provisioned, int seed, int fleetSize)
    {
        Provisioned = provisioned;
        Random = new Random(HashCode.Combine(seed, provisioned.FleetIndex, provisioned.Number));
        var fleet = provisioned.Fleet;
        Keys = [.. fleet.Telemetry.Keys];
        _sources = [.. fleet.Telemetry.Values.Select(m => m.Start(Random))];
        var events = new List<(EventDefinition, Dictionary<int, IValueSource>)>();
        foreach (var e in fleet.Events)
        {
            // The first devices of the fleet (by number) are the event's share, at least one when the share is above zero.
            var affected = SimRunner.Affected(e.Share, fleetSize);
            if (provisioned.Number <= affected)
            {
                var sources = new Dictionary<int, IValueSource>();
                foreach (var (key, model) in e.Telemetry)
                {
                    sources[Array.IndexOf(Keys, key)] = model.Start(Random);
                }

                events.Add((e, sources));
            }
        }

        _events = [.. events];
        if (fleet.Route is { } route)
        {
            Vehicle = new VehicleMotion(route, fleet, provisioned.Number, fleetSize, Random);
        }
    }

    /// <summary>A vehicle's place on its route, when its fleet drives one.</summary>
    public VehicleMotion? Vehicle { get; }

    public ProvisionedDevice Provisioned { get; }

    public ISimDevice Connection { get; set; } = null!;

    /// <summary>The MQTT client id of a device with its own connection.</summary>
    public string? ClientId { get; set; }

    /// <summary>The faults that touch this device.</summary>
    public IReadOnlyList<FaultDefinition> Faults { get; set; } = [];

    public Random Random { get; }

    public string[] Keys { get; }

    private long _sent;
    private long _acknowledged;

    public long Sent => Volatile.Read(ref _sent);

    public long Acknowledged => Volatile.Read(ref _acknowledged);

    public void CountSent() => Interlocked.Increment(ref _sent);

    public void CountAcknowledged() => Interlocked.Increment(ref _acknowledged);

    private long _missedOffline;
    private long _storedTs;
    private long _minTs = long.MaxValue;
    private long _maxTs = long.MinValue;

    /// <summary>Reports not sent because the device was offline (after a fault, waiting to reconnect).</summary>
    public long MissedOffline => Volatile.Read(ref _missedOffline);

    public void CountMissedOffline() => Interlocked.Increment(ref _missedOffline);

    /// <summary>Acknowledged points with distinct timestamps: what the server must hold afterwards.</summary>
    public long StoredTsCount => Volatile.Read(ref _storedTs);

    public long MinTs => Volatile.Read(ref _minTs);

    public long MaxTs => Volatile.Read(ref _maxTs);

    // The last stamps counted: a stamp acknowledged twice (two reports of a station or terminal in one second) is one point.
    private readonly long[] _recentTs = new long[8];
    private int _recentAt;

    public void CountStoredTs(long ts)
    {
        lock (Keys)
        {
            if (Array.IndexOf(_recentTs, ts) < 0)
            {
                _recentTs[_recentAt++ % _recentTs.Length] = ts;
                _storedTs++;
            }

            _minTs = Math.Min(_minTs, ts);
            _maxTs = Math.Max(_maxTs, ts);
        }
    }

    private long _lastTs;

    /// <summary>
    /// <c>{"ts":..,"values":{..}}</c> at scenario time <paramref name="t"/>, stamped <paramref name="ts"/> or, when
    /// the device already reported in that millisecond, the next free one: a point is keyed by its timestamp, and
    /// two in one millisecond would be one stored point.
    /// </summary>
    public (byte[] Payload, long Ts) Payload(TimeSpan t, long ts)
    {
        lock (Keys)
        {
            // Two reports within a millisecond (or a clock that stepped back a little) get the next free stamp; a
            // clock set far back on purpose (a skew fault) keeps its stamp.
            if (Provisioned.Fleet.Protocol is DeviceProtocol.Hj212 or DeviceProtocol.Jt808)
            {
                // HJ 212's DataTime and JT/T 808's fix time have whole seconds: reports within one second (faster
                // than one a second after --speed) are one point, the last one's values.
                ts -= ts % 1000;
            }
            else if (ts <= _lastTs && _lastTs - ts < 1_000)
            {
                ts = _lastTs + 1;
            }

            _lastTs = ts;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("ts", ts);
            writer.WritePropertyName("values");
            writer.WriteStartObject();
            double? speed = null;
            for (var k = 0; k < Keys.Length; k++)
            {
                var source = _sources[k];
                foreach (var (e, sources) in _events)
                {
                    if (e.IsActive(t) && sources.TryGetValue(k, out var replacement))
                    {
                        source = replacement;
                    }
                }

                var value = source.Next(t);
                if (value.Text is { } text)
                {
                    writer.WriteString(Keys[k], text);
                }
                else if (value.Flag is { } flag)
                {
                    writer.WriteBoolean(Keys[k], flag);
                }
                else
                {
                    writer.WriteNumber(Keys[k], value.Number);
                    if (Keys[k] == "speed")
                    {
                        speed = value.Number;
                    }
                }
            }

            Vehicle?.Write(writer, t, speed);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return (buffer.WrittenSpan.ToArray(), ts);
    }
}
