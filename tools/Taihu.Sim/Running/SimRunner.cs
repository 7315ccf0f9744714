using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Taihu.Sim.Scenarios;
using Taihu.Sim.Values;

namespace Taihu.Sim.Running;

/// <summary>Where the server is and how to sign in to it.</summary>
public sealed record SimTarget(Uri Http, string MqttHost, int MqttPort, string SysAdmin, string SysPassword);

/// <summary>
/// Runs a scenario: provisions the fleet, connects every device, reports on schedule for the scenario's duration
/// (divided by <c>--speed</c>), reads back what the server stored and which alarms it raised, and checks the
/// expectations.
/// </summary>
public sealed class SimRunner(Scenario scenario, ScenarioScaling scaling, SimTarget target, TextWriter log)
{
    private readonly Dictionary<string, Recorder> _fleetRecorders = new(StringComparer.Ordinal);

    public async Task<SimReport> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = target.Http, Timeout = TimeSpan.FromSeconds(60) };
        var provisioner = new Provisioner(http, scaling);
        var progress = new Progress<string>(line => log.WriteLine("  " + line));
        log.WriteLine(SimCommands.Summary(scenario, scaling));
        await provisioner.CreateTenantAsync(scenario, target.SysAdmin, target.SysPassword, cancellationToken);
        var profiles = await provisioner.CreateProfilesAsync(scenario, cancellationToken);
        var provisioned = await provisioner.CreateDevicesAsync(scenario, profiles, progress, cancellationToken);
        log.WriteLine($"  tenant 'sim {scenario.Name} {provisioner.RunId}' with {provisioned.Count} device(s); sign in to the console as {provisioner.TenantAdmin} / {provisioner.TenantPassword}");

        var devices = new List<RunningDevice>(provisioned.Count);
        foreach (var p in provisioned)
        {
            ISimDevice connection = p.Fleet.Protocol == DeviceProtocol.Http
                ? new HttpSimDevice(http, p.Token)
                : new MqttSimDevice(target.MqttHost, target.MqttPort, $"sim-{provisioner.RunId}-{p.FleetIndex}-{p.Number}", p.Token);
            devices.Add(new RunningDevice(p, connection, scenario.Seed, scaling.Count(p.Fleet.Count)));
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
        await RunScheduleAsync(devices, total, startTimestamp, cancellationToken);
        var endWall = DateTimeOffset.UtcNow;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  sent {total.Sent}, acknowledged {total.Acknowledged}, failed {total.Failed}; p50 {total.Percentile(50).TotalMilliseconds:0.#} ms, p99 {total.Percentile(99).TotalMilliseconds:0.#} ms"));

        foreach (var device in devices)
        {
            await device.Connection.DisposeAsync();
        }

        var stored = await ReadBackAsync(provisioner, devices, startWall, cancellationToken);
        var alarms = await provisioner.AlarmsAsync(cancellationToken);
        return SimReport.Build(scenario, scaling, provisioner, devices, stored, alarms, total, _fleetRecorders, startWall, endWall);
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

            while (due.TryPeek(out var device, out var when) && when <= elapsed)
            {
                due.Dequeue();
                inFlight.Add(ReportAsync(device, scaling.ScenarioTime(elapsed), total, cancellationToken));
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
        var payload = device.Payload(scenarioTime, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        var fleet = _fleetRecorders[device.Provisioned.Fleet.Name];
        var sent = Stopwatch.GetTimestamp();
        total.RecordSent(sent);
        fleet.RecordSent(sent);
        device.CountSent();
        if (await device.Connection.SendTelemetryAsync(payload, cancellationToken))
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
        }
    }

    /// <summary>Points stored per device (by the fleet's first key), read until they reach what was acknowledged or stop changing.</summary>
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
                count = await provisioner.CountPointsAsync(device.Provisioned.Id, device.Keys[0], from, DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds(), cancellationToken);
                if (count >= device.Acknowledged || Stopwatch.GetTimestamp() > deadline)
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

    public RunningDevice(ProvisionedDevice provisioned, ISimDevice connection, int seed, int fleetSize)
    {
        Provisioned = provisioned;
        Connection = connection;
        Random = new Random(HashCode.Combine(seed, provisioned.FleetIndex, provisioned.Number));
        var fleet = provisioned.Fleet;
        Keys = [.. fleet.Telemetry.Keys];
        _sources = [.. fleet.Telemetry.Values.Select(m => m.Start(Random))];
        var events = new List<(EventDefinition, Dictionary<int, IValueSource>)>();
        foreach (var e in fleet.Events)
        {
            // The first devices of the fleet (by number) are the event's share, at least one when the share is above zero.
            var affected = e.Share <= 0 ? 0 : Math.Max(1, (int)Math.Round(e.Share * fleetSize, MidpointRounding.AwayFromZero));
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
    }

    public ProvisionedDevice Provisioned { get; }

    public ISimDevice Connection { get; }

    public Random Random { get; }

    public string[] Keys { get; }

    private long _sent;
    private long _acknowledged;

    public long Sent => Volatile.Read(ref _sent);

    public long Acknowledged => Volatile.Read(ref _acknowledged);

    public void CountSent() => Interlocked.Increment(ref _sent);

    public void CountAcknowledged() => Interlocked.Increment(ref _acknowledged);

    private long _lastTs;

    /// <summary>
    /// <c>{"ts":..,"values":{..}}</c> at scenario time <paramref name="t"/>, stamped <paramref name="ts"/> or, when
    /// the device already reported in that millisecond, the next free one: a point is keyed by its timestamp, and
    /// two in one millisecond would be one stored point.
    /// </summary>
    public byte[] Payload(TimeSpan t, long ts)
    {
        lock (Keys)
        {
            ts = Math.Max(ts, _lastTs + 1);
            _lastTs = ts;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("ts", ts);
            writer.WritePropertyName("values");
            writer.WriteStartObject();
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
                }
            }

            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}
