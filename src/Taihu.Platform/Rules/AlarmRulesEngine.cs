using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Rules;

/// <summary>
/// Runs device profiles' alarm rules over what committed: a consumer of the event log, so rules never stand in front
/// of a device's acknowledgement, and nothing acknowledged escapes them (a crash replays the log from the last
/// snapshot). Each device with rules gets a <see cref="DeviceAlarmRulesOwner"/>; what the owners decide goes to the
/// <see cref="AlarmService"/>, in order per device.
/// </summary>
/// <remarks>
/// Durability: the owners' states are written to <c>rule_states</c> together with the log position they reflect, in
/// one transaction, every <see cref="SnapshotInterval"/> of events and when the server stops. Before that write,
/// every decision taken so far has reached the alarm service, so a snapshot never holds an alarm "raised" that the
/// alarm table does not. After a crash the log is read again from that position: the states come back exactly as
/// they were, and the decisions taken again are repeats, which the alarm service folds into the existing alarm.
/// The write goes on beside the events that come after it: each owner takes its snapshot in turn with its other
/// work, after everything handed to it up to that position, so later events change nothing in it, and the rules
/// loop does not wait for the write lock or for alarms being written (it did, and every alarm raised in those
/// moments waited too). One write at a time; one that fails leaves its states to the next.
/// The owner map is touched only by the dispatcher's loop for this consumer (and by stopping, after that loop).
/// </remarks>
public sealed partial class AlarmRulesEngine : IStatefulEventConsumer, IHostedService, IAsyncDisposable
{
    public const string ConsumerName = "rules";
    private static readonly double[] s_delayBuckets = [1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 500, 1000, 2000, 5000];
    private static readonly AttributeScope[] s_seedScopes = [AttributeScope.Client, AttributeScope.Shared, AttributeScope.Server];
    private readonly PlatformDatabase _database;
    private readonly IDeviceStore _devices;
    private readonly IAttributeStore _attributes;
    private readonly ITelemetryStore _telemetry;
    private readonly AlarmService _alarms;
    private readonly TimeProvider _time;
    private readonly ILogger<AlarmRulesEngine> _logger;
    private readonly AlarmRuleEvaluator _evaluator;
    private readonly Dictionary<Guid, Entry> _owners = [];
    private readonly Dictionary<Guid, (long Version, CompiledAlarmRules? Rules)> _profiles = [];
    private readonly ConcurrentQueue<Guid> _changedProfiles = new();
    private readonly ConcurrentQueue<long> _changedDevices = new();
    private readonly ConcurrentDictionary<Guid, Task> _alarmWork = new();
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Dictionary<Guid, byte[]>? _stored;
    private long _position;
    private long _savedPosition;
    private Task _saving = Task.CompletedTask;
    private long _lastSnapshot;
    private long _profileVersion;
    private readonly Histogram<double> _alarmDelay;
    private readonly Counter<long> _alarmChanges;
    private int _deviceCount;

    public AlarmRulesEngine(PlatformDatabase database, IDeviceStore devices, IAttributeStore attributes, ITelemetryStore telemetry, AlarmService alarms,
        TimeProvider time, ILogger<AlarmRulesEngine> logger, EventSignal? signal = null, IMeterFactory? meters = null)
    {
        var meter = meters?.Create(PlatformMetrics.MeterName) ?? new Meter(PlatformMetrics.MeterName);
        // Buckets fine enough below 100 ms to tell the p99 target (the exporter's default has 75 and 100 only).
        _alarmDelay = meter.CreateHistogram("taihu.rules.alarm.delay", "ms",
            "From the commit of the data that raised an alarm to the alarm written.", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = s_delayBuckets });
        _alarmChanges = meter.CreateCounter<long>("taihu.rules.alarm.changes", "{change}", "Alarm raises, updates and clears decided by the rules.");
        meter.CreateObservableGauge("taihu.rules.devices", () => Volatile.Read(ref _deviceCount), "{device}", "Devices with alarm rule state in memory.");
        if (signal is not null)
        {
            signal.ProfileChanged += ProfileChanged;
            signal.DeviceChanged += _changedDevices.Enqueue;
        }

        _database = database;
        _devices = devices;
        _attributes = attributes;
        _telemetry = telemetry;
        _alarms = alarms;
        _time = time;
        _logger = logger;
        _evaluator = new AlarmRuleEvaluator(time);
        _lastSnapshot = time.GetTimestamp();
    }

    public string Name => ConsumerName;

    /// <summary>How often DURATION rules are re-checked on server time without a new point.</summary>
    public TimeSpan RecheckPeriod { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How often, at most, the states are written (while events come; always when the server stops).</summary>
    public TimeSpan SnapshotInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How many devices have rule state in memory.</summary>
    public int DeviceCount => _owners.Count;

    /// <summary>A profile's rules changed (or it was deleted): its devices take the new rules at the next event.</summary>
    public void ProfileChanged(Guid profileId) => _changedProfiles.Enqueue(profileId);

    public async Task ConsumeAsync(IReadOnlyList<PlatformEvent> events, long position, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        var consumeStart = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            _stored ??= await LoadStatesAsync(cancellationToken);
            while (_changedProfiles.TryDequeue(out var changed))
            {
                _profiles.Remove(changed);
            }

            await ForgetDeletedDevicesAsync(cancellationToken);

            foreach (var e in events)
            {
                var entry = await OwnerOfAsync(e.Device, cancellationToken);
                if (entry is null)
                {
                    continue;
                }

                switch (e.Type)
                {
                    case PlatformEventType.Telemetry:
                        // The dispatcher makes each telemetry event's array for this consumer alone: the owner can keep it.
                        entry.Owner.PostTelemetry(e.Points as TelemetryPoint[] ?? [.. e.Points], e.Committed);
                        break;
                    case PlatformEventType.Attributes:
                        entry.Owner.PostAttributes([.. e.Attributes], e.Committed);
                        break;
                    case PlatformEventType.AlarmCleared when AlarmTypeOf(e.DataJson) is { } type:
                        entry.Owner.PostAlarmCleared(type);
                        break;
                    default:
                        continue;
                }

                entry.Dirty = true;
            }

            _position = position;
            consumeStart = StageTimings.Since("rules.consume", consumeStart);
            if (_time.GetElapsedTime(_lastSnapshot) >= SnapshotInterval && _saving.IsCompleted)
            {
                // The write goes on beside the next events (see the remarks); one at a time.
                _saving = SaveInBackgroundAsync(TakeSnapshots());
                StageTimings.Since("rules.save", consumeStart);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Writes every changed device's state and the position it reflects, after every event handed over so far has
    /// been evaluated and its decisions have reached the alarms (tests use it as that signal).
    /// </summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            _stored ??= await LoadStatesAsync(cancellationToken);
            await SaveAsync(cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Waits for a write in progress, then snapshots and writes; under the gate.</summary>
    private async Task SaveAsync(CancellationToken cancellationToken)
    {
        await _saving;
        await WriteAsync(TakeSnapshots(), cancellationToken);
    }

    /// <summary>
    /// Asks every owner changed since the last write for its snapshot, in turn with its other work, at the position
    /// handed over so far; under the gate. Only states with progress are written (see DeviceRuleState.HasProgress),
    /// and a kept one whose progress ended is deleted: the rest is what a device starts from anyway.
    /// </summary>
    private Snapshots TakeSnapshots()
    {
        _lastSnapshot = _time.GetTimestamp();
        var pending = new List<(Entry Entry, Task<(bool Changed, byte[]? State)> Snapshot)>();
        foreach (var entry in _owners.Values)
        {
            if (entry.Dirty)
            {
                entry.Dirty = false;
                pending.Add((entry, entry.Owner.SnapshotToKeepAsync()));
            }
        }

        return new Snapshots(pending, _position);
    }

    private async Task SaveInBackgroundAsync(Snapshots taken)
    {
        try
        {
            await WriteAsync(taken, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Nothing was recorded: the states go in the next write, and the log is read from the last position recorded.
            foreach (var (entry, _) in taken.Pending)
            {
                entry.Dirty = true;
            }

            LogBackgroundSaveFailed(_logger, e);
        }
    }

    /// <summary>Writes the snapshots and the position they reflect once every decision taken before them has reached the alarms.</summary>
    private async Task WriteAsync(Snapshots taken, CancellationToken cancellationToken)
    {
        var (pending, position) = taken;
        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        var snapshots = new List<(Entry Entry, byte[]? State)>();
        foreach (var (entry, snapshot) in pending)
        {
            var (changed, kept) = await snapshot;
            if (changed)
            {
                snapshots.Add((entry, kept));
            }
        }

        stage = StageTimings.Since("rules.save.snapshots", stage);
        // Every decision taken before the snapshots has reached the alarms (see the remarks).
        foreach (var work in _alarmWork.Values)
        {
            await work;
        }

        stage = StageTimings.Since("rules.save.alarms", stage);

        if (snapshots.Count == 0 && position == _savedPosition)
        {
            return;
        }

        await using var connection = await _database.OpenAsync(cancellationToken);
        stage = System.Diagnostics.Stopwatch.GetTimestamp();
        using var turn = await _database.TakeWriteTurnAsync(cancellationToken);
        stage = StageTimings.Since("rules.save.turn", stage);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO rule_states (device_id, state, updated_time) VALUES (@d, @s, @t)
            ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, updated_time = excluded.updated_time
            """;
        var device = command.AddParameter("d", "");
        var state = command.AddParameter("s", Array.Empty<byte>());
        command.AddParameter("t", _time.GetUtcNow().ToUnixTimeMilliseconds());
        using var delete = connection.CreateCommand();
        delete.Transaction = transaction;
        delete.CommandText = "DELETE FROM rule_states WHERE device_id = @d";
        var deleted = delete.AddParameter("d", "");
        foreach (var (entry, snapshot) in snapshots)
        {
            device.Value = entry.Device.Id.ToString();
            deleted.Value = device.Value;
            state.Value = snapshot ?? [];
            try
            {
                await (snapshot is null ? delete : command).ExecuteNonQueryAsync(cancellationToken);
            }
            catch (System.Data.Common.DbException e) when (Sql.IsForeignKeyViolation(e))
            {
                // The device was deleted meanwhile; its state goes with it.
            }
        }

        await EventLog.SaveCursorAsync(connection, transaction, ConsumerName, position, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        StageTimings.Since("rules.save.write", stage);
        StageTimings.Record("rules.save.rows", snapshots.Count);
        _savedPosition = position;
    }

    private readonly record struct Snapshots(List<(Entry Entry, Task<(bool Changed, byte[]? State)> Snapshot)> Pending, long Position);

    private void OnDecisions(Entry entry, IReadOnlyList<AlarmDecision> decisions)
    {
        // Called on the device's owner, one call at a time per device: chaining keeps the alarm changes in order.
        entry.Dirty = true;
        var deviceId = entry.Device.Id;
        var copy = decisions.ToArray();
        var previous = _alarmWork.TryGetValue(deviceId, out var before) ? before : Task.CompletedTask;
        var committed = entry.Owner.CurrentCommitted;
        if (committed > 0)
        {
            StageTimings.Record("rules.decided", (DateTime.UtcNow - DateTime.UnixEpoch).TotalMilliseconds - committed);
        }

        _alarmWork[deviceId] = ApplyAsync(previous, entry.Device.TenantId, deviceId, copy, committed);
    }

    private async Task ApplyAsync(Task previous, Guid tenant, Guid deviceId, AlarmDecision[] decisions, long committed)
    {
        var chain = System.Diagnostics.Stopwatch.GetTimestamp();
        await previous;
        chain = StageTimings.Since("rules.chain", chain);
        foreach (var decision in decisions)
        {
            try
            {
                var details = DetailsJson(decision.Details);
                if (decision.Kind == AlarmDecisionKind.Clear)
                {
                    await _alarms.ClearAsync(tenant, deviceId, decision.AlarmType, decision.Ts, details);
                    chain = StageTimings.Since("rules.service.clear", chain);
                }
                else
                {
                    await _alarms.RaiseAsync(tenant, deviceId, decision.AlarmType, decision.Severity, details, decision.Ts);
                    chain = StageTimings.Since(decision.Kind == AlarmDecisionKind.Create ? "rules.service.create" : "rules.service.update", chain);
                    if (decision.Kind == AlarmDecisionKind.Create && committed > 0)
                    {
                        _alarmDelay.Record(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - committed);
                    }
                }

                _alarmChanges.Add(1);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogAlarmFailed(_logger, e, decision.Kind, decision.AlarmType, deviceId);
            }
        }
    }

    private async ValueTask<Entry?> OwnerOfAsync(Device device, CancellationToken cancellationToken)
    {
        var rules = await RulesOfAsync(device, cancellationToken);
        if (_owners.TryGetValue(device.Id, out var entry))
        {
            if (entry.ProfileVersion == rules.Version)
            {
                return entry;
            }

            if (rules.Rules is null)
            {
                _owners.Remove(device.Id);
                _deviceCount = _owners.Count;
                await entry.Owner.DisposeAsync();
                return null;
            }

            entry.Owner.PostRules(rules.Rules);
            entry.ProfileVersion = rules.Version;
            entry.Dirty = true;
            return entry;
        }

        if (rules.Rules is null)
        {
            return null;
        }

        DeviceRuleState state;
        if (_stored!.Remove(device.Id, out var snapshot))
        {
            state = DeviceRuleState.Restore(rules.Rules, snapshot);
        }
        else
        {
            state = new DeviceRuleState(rules.Rules);
            await SeedAsync(device, state, cancellationToken);
        }

        entry = new Entry(this, device, rules.Version);
        entry.Owner = new DeviceAlarmRulesOwner(device.Id, state, _evaluator, _time, RecheckPeriod, entry, stored: snapshot is not null);
        _owners[device.Id] = entry;
        _deviceCount = _owners.Count;
        return entry;
    }

    /// <summary>A deleted device's owner goes (its stored state went with the device's row).</summary>
    private async Task ForgetDeletedDevicesAsync(CancellationToken cancellationToken)
    {
        while (_changedDevices.TryDequeue(out var seq))
        {
            if (await _devices.GetDeviceBySeqAsync(seq, cancellationToken) is not null)
            {
                continue;
            }

            foreach (var (id, entry) in _owners)
            {
                if (entry.Device.Seq == seq)
                {
                    _owners.Remove(id);
                    _alarmWork.TryRemove(id, out _);
                    _deviceCount = _owners.Count;
                    await entry.Owner.DisposeAsync();
                    break;
                }
            }
        }
    }

    /// <summary>A device seen for the first time starts from its stored attributes and latest values, as in ThingsBoard.</summary>
    private async Task SeedAsync(Device device, DeviceRuleState state, CancellationToken cancellationToken)
    {
        var timeSeries = new List<string>();
        var anyAttribute = false;
        for (var slot = 0; slot < state.Rules.SlotCount; slot++)
        {
            var (type, key) = state.Rules.Slot(slot);
            if (type == RuleKeyType.TimeSeries)
            {
                timeSeries.Add(key);
            }
            else if (type == RuleKeyType.Attribute)
            {
                anyAttribute = true;
            }
        }

        if (anyAttribute)
        {
            // Client first, then shared, then server: a key in several scopes takes the server's, the most trusted.
            foreach (var scope in s_seedScopes)
            {
                foreach (var entry in await _attributes.GetAsync(device.Seq, scope, null, cancellationToken))
                {
                    state.Seed(RuleKeyType.Attribute, entry.Key, entry.Value);
                }
            }
        }

        if (timeSeries.Count > 0)
        {
            foreach (var point in await _telemetry.GetLatestAsync(device.Seq, timeSeries, cancellationToken))
            {
                state.Seed(RuleKeyType.TimeSeries, point.Key, point.Value);
            }
        }
    }

    private async ValueTask<(long Version, CompiledAlarmRules? Rules)> RulesOfAsync(Device device, CancellationToken cancellationToken)
    {
        if (_profiles.TryGetValue(device.ProfileId, out var known))
        {
            return known;
        }

        CompiledAlarmRules? rules = null;
        var profile = await _devices.GetProfileAsync(device.TenantId, device.ProfileId, cancellationToken);
        if (profile?.AlarmsJson is { } json)
        {
            try
            {
                using var document = JsonDocument.Parse(json);
                var alarms = AlarmRuleParser.Parse(document.RootElement);
                rules = alarms.Count == 0 ? null : new CompiledAlarmRules(alarms);
            }
            catch (Exception e) when (e is JsonException or AlarmRuleException)
            {
                // Checked when saved; a rule stored by an older version that no longer parses is skipped, and said.
                LogRulesUnusable(_logger, e, device.ProfileId);
            }
        }

        var result = (++_profileVersion, rules);
        _profiles[device.ProfileId] = result;
        return result;
    }

    private async Task<Dictionary<Guid, byte[]>> LoadStatesAsync(CancellationToken cancellationToken)
    {
        var states = new Dictionary<Guid, byte[]>();
        await using var connection = await _database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT device_id, state FROM rule_states";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            states[Guid.Parse(reader.GetString(0))] = (byte[])reader.GetValue(1);
        }

        return states;
    }

    /// <summary>The rule's alarmDetails text as the alarm's details, <c>{"data": "..."}</c>, as ThingsBoard stores it.</summary>
    private static string? DetailsJson(string? text)
    {
        if (text is null)
        {
            return null;
        }

        var buffer = new System.Buffers.ArrayBufferWriter<byte>(text.Length + 16);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("data", text);
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static string? AlarmTypeOf(string? json)
    {
        if (json is null)
        {
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("type", out var type)
                && type.ValueKind == JsonValueKind.String ? type.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// This node stopped running the rules (a cluster node that lost the event log lease): the owners go, unsaved,
    /// once the alarm changes they decided are written; the node that runs the rules now starts from the states
    /// and the position last written, as after a crash.
    /// </summary>
    public async Task ForgetAsync()
    {
        await _gate.WaitAsync();
        try
        {
            try
            {
                await _saving;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogBackgroundSaveFailed(_logger, e);
            }

            foreach (var work in _alarmWork.Values)
            {
                await work;
            }

            foreach (var entry in _owners.Values)
            {
                await entry.Owner.DisposeAsync();
            }

            _owners.Clear();
            _alarmWork.Clear();
            _profiles.Clear();
            _changedProfiles.Clear();
            _changedDevices.Clear();
            _stored = null;
            _position = 0;
            _savedPosition = 0;
            _deviceCount = 0;
        }
        finally
        {
            _gate.Release();
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The states are written when the server stops (after the dispatcher, which stops first).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_stored is not null)
            {
                await SaveAsync(cancellationToken);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogSaveFailed(_logger, e);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _saving;
        foreach (var entry in _owners.Values)
        {
            await entry.Owner.DisposeAsync();
        }

        _owners.Clear();
        _gate.Dispose();
    }

    /// <summary>A device's owner and what the engine knows of it; also the sink of the owner's decisions.</summary>
    private sealed class Entry(AlarmRulesEngine engine, Device device, long profileVersion) : IAlarmDecisionSink
    {
        private volatile bool _dirty;

        public Device Device { get; } = device;

        public DeviceAlarmRulesOwner Owner { get; set; } = null!;

        public long ProfileVersion { get; set; } = profileVersion;

        /// <summary>Changed since the last snapshot (set by events and by the owner's own decisions).</summary>
        public bool Dirty
        {
            get => _dirty;
            set => _dirty = value;
        }

        public void OnDecisions(Guid deviceId, IReadOnlyList<AlarmDecision> decisions) => engine.OnDecisions(this, decisions);
    }

    [LoggerMessage(EventId = 2901, Level = LogLevel.Warning, Message = "{Kind} of alarm '{Type}' on device {Device} failed")]
    private static partial void LogAlarmFailed(ILogger logger, Exception exception, AlarmDecisionKind kind, string type, Guid device);

    [LoggerMessage(EventId = 2902, Level = LogLevel.Error, Message = "The alarm rules of profile {Profile} no longer parse and are not run")]
    private static partial void LogRulesUnusable(ILogger logger, Exception exception, Guid profile);

    [LoggerMessage(EventId = 2904, Level = LogLevel.Warning, Message = "Writing the alarm rules' state failed; it is written again with the next")]
    private static partial void LogBackgroundSaveFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2903, Level = LogLevel.Error, Message = "Writing the alarm rules' state on stop failed; the event log is read again from the last write")]
    private static partial void LogSaveFailed(ILogger logger, Exception exception);
}
