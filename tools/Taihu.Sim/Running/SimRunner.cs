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
    private FaultInjector? _injector;
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
        _injector = new FaultInjector(scaling, proxy, SendAndKeepAsync);
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
                if (device.Connection is CoapSimDevice coap)
                {
                    // A CoAP device observes .../rpc only when the run calls its fleet (each observation is server state).
                    coap.AnswersRpc = !target.PlainMqtt && scenario.RpcCalls.Any(c => c.Fleet == p.Fleet.Name);
                }
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

        var stored = await ReadBackAsync(provisioner, devices, startWall, notes, cancellationToken);
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
                inFlight.Add(_injector!.InjectAsync(fault, now, cancellationToken));
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
                log.WriteLine($"  {device.Provisioned.Name}: not acknowledged ({result.Outcome}){(result.Detail is { } detail ? $" [{detail}]" : "")}");
            }
        }

        return result;
    }

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
    private static async Task<Dictionary<string, long>> ReadBackAsync(Provisioner provisioner, List<RunningDevice> devices, DateTimeOffset startWall, List<string> notes, CancellationToken cancellationToken)
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
                try
                {
                    count = await provisioner.CountPointsAsync(device.Provisioned.Id, device.Keys[0], Math.Min(from, device.MinTs - 1),
                        Math.Max(DateTimeOffset.UtcNow.AddDays(1).ToUnixTimeMilliseconds(), device.MaxTs + 1), cancellationToken);
                }
                catch (InvalidOperationException e)
                {
                    // One device the server will not read back (gone, or refused) is that device's finding, not the
                    // end of the run: nothing counts as stored for it, and the report says why.
                    count = 0;
                    notes.Add($"Reading back {device.Provisioned.Name} failed: {e.Message}");
                    break;
                }

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
