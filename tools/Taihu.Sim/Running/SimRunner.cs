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

    /// <summary>
    /// A plain MQTT server (Mosquitto, EMQX, ...) with no Taihu or ThingsBoard API: nothing is provisioned, devices
    /// connect without credentials, and what needs the API (read-back, alarms, RPC calls, HTTP fleets) is skipped
    /// and said so in the report.
    /// </summary>
    public bool PlainMqtt { get; init; }

    /// <summary>An existing tenant's administrator and password: the run uses that tenant and its devices of the scenario's names instead of making a tenant.</summary>
    public (string User, string Password)? Tenant { get; init; }

    /// <summary>The part of the fleet this process runs (<c>--slice</c>).</summary>
    public FleetSlice Slice { get; init; } = FleetSlice.Whole;

    /// <summary>Where HJ 212 stations, JT/T 808 terminals and CoAP devices connect (the host is <see cref="MqttHost"/>).</summary>
    public int Hj212Port { get; init; } = 9212;

    public int Jt808Port { get; init; } = 6808;

    public int CoapPort { get; init; } = 5683;

    /// <summary>Set when the run is the scenario's first part only (<c>--for</c>): the scenario's whole duration.</summary>
    public TimeSpan? WholeDuration { get; init; }
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
    private (double CpuPercent, double MemoryMb) _simulator;
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
        var notes = new List<string>();
        if (target.WholeDuration is { } whole)
        {
            notes.Add($"The first {Durations.Format(scenario.Duration)} of the scenario's {Durations.Format(whole)} (--for): its expectations, written for the whole run, were not checked.");
        }

        if (!target.Slice.IsWhole)
        {
            notes.Add($"Slice {target.Slice} of the fleet: device n of each fleet (a gateway's devices with their gateway) where (n - 1) mod {target.Slice.Count} = {target.Slice.Index - 1}; expectations are checked on this slice.");
        }

        List<ProvisionedDevice> provisioned;
        if (target.PlainMqtt)
        {
            provisioned = [];
            foreach (var p in provisioner.Unprovisioned(scenario, target.Slice))
            {
                if (p.Fleet.Protocol == DeviceProtocol.Mqtt)
                {
                    provisioned.Add(p);
                }
            }

            notes.Add($"Plain MQTT server at {target.MqttHost}:{target.MqttPort}: nothing was provisioned, devices connected without credentials, and what needs the platform's API was skipped (points stored, alarms, RPC calls).");
            foreach (var fleet in scenario.Fleets.Where(f => f.Protocol != DeviceProtocol.Mqtt))
            {
                notes.Add($"Fleet {fleet.Name} was skipped: it speaks {fleet.Protocol.ToString().ToUpperInvariant()}, and a plain MQTT server only MQTT.");
            }

            log.WriteLine($"  plain MQTT server: {provisioned.Count} device(s), no provisioning and no read-back");
        }
        else
        {
            if (target.Tenant is { } tenant)
            {
                await provisioner.UseTenantAsync(tenant.User, tenant.Password, cancellationToken);
                notes.Add($"The existing tenant of {tenant.User}: its devices and profiles of the scenario's names were used as they are, the others created.");
            }
            else
            {
                await provisioner.CreateTenantAsync(scenario, target.SysAdmin, target.SysPassword, cancellationToken);
            }

            var profiles = await provisioner.CreateProfilesAsync(scenario, cancellationToken);
            provisioned = await provisioner.CreateDevicesAsync(scenario, profiles, target.Slice, progress, cancellationToken);
            log.WriteLine(provisioner.ExistingTenant
                ? $"  the tenant of {provisioner.TenantAdmin}, {provisioned.Count} device(s)"
                : $"  tenant 'sim {scenario.Name} {provisioner.RunId}' with {provisioned.Count} device(s); sign in to the console as {provisioner.TenantAdmin} / {provisioner.TenantPassword}");
        }

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
            else if (p.Fleet.Real is { } real)
            {
                var watch = new MqttWatch();
                var realProxy = new FaultProxy(target.MqttHost, target.MqttPort, real.Port, watch);
                device.Connection = new RealDeviceConnection(p.Fleet, realProxy, watch);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  waiting for real device '{p.Name}': connect it to MQTT at 127.0.0.1:{realProxy.Port} with access token {real.Token} (within {Durations.Format(real.ConnectWithin)})"));
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
        _calls = target.PlainMqtt ? [] : [.. scenario.RpcCalls.Select(c => new RpcCallRun(c))];
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
        var simulatorCpu = Process.GetCurrentProcess().TotalProcessorTime;
        var sampler = new ServerSampler(http, target.ServerPid, points: !target.PlainMqtt);
        using var sampling = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var samplerTask = sampler.RunAsync(startTimestamp, sampling.Token);
        var attributeTasks = target.PlainMqtt ? [] : devices.Where(d => d.Provisioned.Fleet.Real?.SharedAttributes is not null).Select(d => SetSharedAttributesAsync(d, cancellationToken)).ToList();
        await RunScheduleAsync(devices, total, startTimestamp, cancellationToken);
        await Task.WhenAll(attributeTasks);
        await sampling.CancelAsync();
        await samplerTask;
        var endWall = DateTimeOffset.UtcNow;
        using (var self = Process.GetCurrentProcess())
        {
            // The simulator's own cost over the run: what tells whether it, not the server, was the limit.
            _simulator = ((self.TotalProcessorTime - simulatorCpu).TotalSeconds / Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds * 100, self.PeakWorkingSet64 / 1048576.0);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  the simulator used {_simulator.CpuPercent:0.#}% of a core and at most {_simulator.MemoryMb:0} MB"));
        }

        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  sent {total.Sent}, acknowledged {total.Acknowledged}, failed {total.Failed}; p50 {total.Percentile(50).TotalMilliseconds:0.#} ms, p99 {total.Percentile(99).TotalMilliseconds:0.#} ms"));

        foreach (var device in devices)
        {
            if (device.Connection is RealDeviceConnection real)
            {
                device.SetCounts(real.Watch.TelemetrySent, real.Watch.TelemetryAcknowledged);
            }

            await device.Connection.DisposeAsync();
        }

        foreach (var (connection, gate) in gateways.Values)
        {
            await connection.DisposeAsync();
            gate.Dispose();
        }

        if (target.PlainMqtt)
        {
            var report = SimReport.Build(scenario, scaling, target, provisioner, devices, null, null, total, _fleetRecorders, startWall, endWall, _faults, _calls, sampler, notes);
            report.Simulator = _simulator;
            return report;
        }

        var stored = await ReadBackAsync(provisioner, devices, startWall, cancellationToken);
        var alarms = await provisioner.AlarmsAsync(cancellationToken);
        var result = SimReport.Build(scenario, scaling, target, provisioner, devices, stored, alarms, total, _fleetRecorders, startWall, endWall, _faults, _calls, sampler, notes);
        result.Simulator = _simulator;
        return result;
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
            if (device.Provisioned.Fleet.Real is not null)
            {
                // A real device reports by itself.
                continue;
            }

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
                if (call.Device.Connection is RealDeviceConnection { HeldOffline: true })
                {
                    // The run dropped the device and is refusing its attempts: a call now would only time out.
                    call.Call.RecordOffline();
                }
                else
                {
                    inFlight.Add(CallAsync(call.Device, call.Call, cancellationToken));
                }

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
                    case FaultKind.Disconnect when device.Connection is RealDeviceConnection real:
                        fault.Record(await real.DropAndWatchAsync(cancellationToken));
                        break;
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
                        if (LinkOf(device) is not { } held)
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
                        if (LinkOf(device) is not { } dropped)
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
                    case FaultKind.Flood:
                        await FloodAsync(fault, device, now, cancellationToken);
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

    /// <summary>
    /// A device sends at the flood's rate (times <c>--speed</c>) for its length, without waiting for answers. What
    /// the server made of it is counted by answer: acknowledged, refused with a reason code, or the connection
    /// closed (with the server's reason where MQTT 5 gives one), and whether the device came back afterwards.
    /// </summary>
    private async Task FloodAsync(FaultRun fault, RunningDevice device, TimeSpan now, CancellationToken cancellationToken)
    {
        var perSecond = fault.Definition.Rate * scaling.Speed;
        var length = scaling.Real(fault.Definition.For!.Value);
        var reconnectsBefore = device.Connection.Reconnects;
        var lostBefore = device.Connection.ConnectionsLost;
        var sends = new List<Task<SendResult>>();
        var skipped = 0;
        var started = Stopwatch.GetTimestamp();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        for (var made = 0L; ;)
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            var due = (long)(Math.Min(elapsed.TotalSeconds, length.TotalSeconds) * perSecond);
            for (; made < due; made++)
            {
                if (device.Connection.IsConnected)
                {
                    var (payload, ts) = device.Payload(now + scaling.ScenarioTime(elapsed), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                    sends.Add(SendAndKeepAsync(device, payload, ts, cancellationToken));
                }
                else
                {
                    skipped++;
                }
            }

            if (elapsed >= length)
            {
                break;
            }

            await timer.WaitForNextTickAsync(cancellationToken);
        }

        var reason = (device.Connection as MqttSimDevice)?.LastServerDisconnect;
        foreach (var result in await Task.WhenAll(sends))
        {
            fault.Record(result.Outcome == "connection closed by the server" && reason is not null ? $"connection closed by the server: {reason}" : result.Outcome);
        }

        if (skipped > 0)
        {
            fault.Record("not sent: the connection was closed", skipped);
        }

        if (device.Connection.ConnectionsLost > lostBefore)
        {
            // Closed for flooding: the device must come back by its back-off and report as before.
            fault.TrackReconnect(device, reconnectsBefore);
        }
    }

    /// <summary>The device's connection through a proxy: a real device's own, or the shared one for simulated devices.</summary>
    private FaultProxy.Link? LinkOf(RunningDevice device) =>
        device.Connection is RealDeviceConnection real ? real.Proxy.Current : _proxy?.Find(device.ClientId ?? "");

    /// <summary>Sets a real device's shared attributes through the REST API at their time; the proxy sees whether they reach it.</summary>
    private async Task SetSharedAttributesAsync(RunningDevice device, CancellationToken cancellationToken)
    {
        var real = device.Provisioned.Fleet.Real!;
        await Task.Delay(scaling.Real(real.SharedAttributesAt), cancellationToken);
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{device.Provisioned.Id}/SHARED_SCOPE")
        {
            Content = new StringContent(real.SharedAttributes!.ToJsonString(), System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-Authorization", "Bearer " + _provisioner!.TenantToken);
        using var response = await _http!.SendAsync(request, cancellationToken);
        log.WriteLine($"  shared attributes set for real device '{device.Provisioned.Name}': HTTP {(int)response.StatusCode}");
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

    /// <summary>A real device's counts, as its proxy saw them.</summary>
    public void SetCounts(long sent, long acknowledged)
    {
        Volatile.Write(ref _sent, sent);
        Volatile.Write(ref _acknowledged, acknowledged);
    }

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
