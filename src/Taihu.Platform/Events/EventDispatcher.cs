using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Events;

/// <summary>
/// Takes what the event log holds, in order, at least once. Nothing reaches a consumer before it has committed,
/// and a consumer that crashes or fails reads again from its durable position.
/// </summary>
public interface IEventConsumer
{
    /// <summary>The consumer's name in <c>event_cursors</c>.</summary>
    string Name { get; }

    /// <summary>
    /// Takes the events of the log's rows up to <paramref name="position"/>, in order. Returning means they are
    /// taken: the consumer records the position durably itself, with whatever it did with them (an outbox insert,
    /// a state snapshot), through <see cref="EventLog.SaveCursorAsync"/>. After a restart, rows after the durable
    /// position come again. Throwing means not taken: the same rows come again after a pause.
    /// </summary>
    Task ConsumeAsync(IReadOnlyList<PlatformEvent> events, long position, CancellationToken cancellationToken);
}

/// <summary>
/// Devices by sequence number (the event consumers) and by id (the hot REST paths: a thousand lightweight RPC
/// calls a second name their devices by id), cached: a change is seen at once (<see cref="Forget"/>, on
/// <see cref="EventSignal.DeviceChanged"/>, which every device change raises on this node and, on a cluster, on
/// every other node). <see cref="Lifetime"/> is the safety net for a change whose signal was lost (a node that was
/// not reachable when it was told); it was 30 s before changes reached the other nodes, and at 15,000 devices the
/// event consumers then read 500 devices a second from the database to find them unchanged.
/// </summary>
public sealed class DeviceDirectory
{
    internal static readonly TimeSpan Lifetime = TimeSpan.FromMinutes(5);
    private readonly ConcurrentDictionary<long, Cached<Device?>> _cache = new();
    private readonly ConcurrentDictionary<Guid, Cached<Device>> _byId = new();
    private readonly IDeviceStore _store;
    private readonly TimeProvider _time;
    private long _forgets;

    public DeviceDirectory(IDeviceStore store, TimeProvider time, EventSignal? signal = null)
    {
        _store = store;
        _time = time;
        if (signal is not null)
        {
            signal.DeviceChanged += Forget;
        }
    }

    /// <summary>The device of row <paramref name="seq"/>, or null when there is none (deleted).</summary>
    /// <remarks>As by id below: an unchanged device read again keeps its instance, and only its lifetime moves.</remarks>
    public async ValueTask<Device?> GetAsync(long seq, CancellationToken cancellationToken)
    {
        var now = _time.GetTimestamp();
        var found = _cache.TryGetValue(seq, out var cached);
        if (found && Volatile.Read(ref cached!.Until) > now)
        {
            return cached.Device;
        }

        var forgets = Volatile.Read(ref _forgets);
        var device = await _store.GetDeviceBySeqAsync(seq, cancellationToken);
        return Keep(_cache, seq, cached, device, now, forgets);
    }

    /// <summary>The device <paramref name="id"/> of tenant <paramref name="tenantId"/>, or null when it has none of that id.</summary>
    /// <remarks>
    /// An entry past its lifetime is read again; when the device is unchanged (the usual case: changes made through
    /// any node are forgotten at once) the entry keeps its instance and only its lifetime moves, so a hot path that
    /// names thousands of devices does not replace them all every <see cref="Lifetime"/> with copies that the
    /// collector then carries into its oldest generation.
    /// </remarks>
    public async ValueTask<Device?> GetAsync(Guid tenantId, Guid id, CancellationToken cancellationToken)
    {
        var now = _time.GetTimestamp();
        var found = _byId.TryGetValue(id, out var cached);
        if (found && Volatile.Read(ref cached!.Until) > now)
        {
            return cached.Device.TenantId == tenantId ? cached.Device : null;
        }

        var forgets = Volatile.Read(ref _forgets);
        var device = await _store.GetDeviceAsync(tenantId, id, cancellationToken);
        return device is null ? null : Keep(_byId, id, cached, device, now, forgets);
    }

    /// <summary>
    /// Keeps what was read for <see cref="Lifetime"/>, unless a device was forgotten since the read began (a change
    /// that raced with it may concern this one). An unchanged device keeps its cached instance; only its time moves.
    /// </summary>
    private T Keep<TKey, T>(ConcurrentDictionary<TKey, Cached<T>> cache, TKey key, Cached<T>? cached, T device, long now, long forgets)
        where TKey : notnull
    {
        if (Volatile.Read(ref _forgets) != forgets)
        {
            return device;
        }

        var until = now + (long)(Lifetime.TotalSeconds * _time.TimestampFrequency);
        if (cached is not null && EqualityComparer<T>.Default.Equals(cached.Device, device))
        {
            Volatile.Write(ref cached.Until, until);
            return cached.Device;
        }

        cache[key] = new Cached<T>(device, until);
        return device;
    }

    /// <summary>A device as read (null: none of that row), and until when it is taken without reading again.</summary>
    private sealed class Cached<T>(T device, long until)
    {
        public readonly T Device = device;
        public long Until = until;
    }

    /// <summary>Forgets a device (it changed or was deleted).</summary>
    public void Forget(long seq)
    {
        Interlocked.Increment(ref _forgets);
        _cache.TryRemove(seq, out _);
        foreach (var (id, entry) in _byId)
        {
            if (entry.Device.Seq == seq)
            {
                _byId.TryRemove(id, out _);
            }
        }
    }
}

/// <summary>
/// Runs each <see cref="IEventConsumer"/> over the event log in a loop of its own, so that a slow one (an
/// integration whose target is down) holds back no other. Writers call <see cref="Notify"/> after a commit; a loop
/// also looks every <see cref="PollInterval"/> (rows written by another process sharing the database; every
/// <see cref="SinglePollInterval"/> on SQLite). Rows every consumer has recorded are pruned every
/// <see cref="PruneInterval"/> while consumers move.
/// </summary>
public sealed partial class EventDispatcher : BackgroundService
{
    private const int RowsPerRead = 64;
    private readonly PlatformDatabase _database;
    private readonly DeviceDirectory _devices;
    private readonly IReadOnlyList<IEventConsumer> _consumers;
    private readonly ILogger<EventDispatcher> _logger;
    private readonly IEventWorkLease? _lease;
    private readonly EventSignal? _signal;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, long> _positions = new();
    private readonly SemaphoreSlim[] _signals;
    private readonly Counter<long> _undecodable;
    private readonly ConcurrentDictionary<string, List<(long Position, TaskCompletionSource Done)>> _waiters = new();

    public EventDispatcher(PlatformDatabase database, DeviceDirectory devices, IEnumerable<IEventConsumer> consumers, TimeProvider time,
        ILogger<EventDispatcher> logger, EventSignal? signal = null, IMeterFactory? meters = null, IEventWorkLease? lease = null)
    {
        _database = database;
        _lease = lease;
        _devices = devices;
        _consumers = [.. consumers];
        _time = time;
        _logger = logger;
        _signals = new SemaphoreSlim[_consumers.Count];
        for (var i = 0; i < _signals.Length; i++)
        {
            _signals[i] = new SemaphoreSlim(0, 1);
        }

        _signal = signal;
        if (signal is not null)
        {
            signal.Committed += Notify;
        }

        var meter = meters?.Create(Telemetry.PlatformMetrics.MeterName) ?? new Meter(Telemetry.PlatformMetrics.MeterName);
        _undecodable = meter.CreateCounter<long>("taihu.events.undecodable", "{row}", "Event log rows skipped because they did not decode.");
        meter.CreateObservableGauge("taihu.events.position", ObservePositions, "{row}", "The event log position each consumer has taken.");
    }

    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The same look on SQLite, which only this process writes (a cluster, whose nodes share the log, runs on
    /// PostgreSQL): this process's writers always notify, so the look is a safety net, and a read a second per
    /// consumer was a good part of an idle server's CPU (docs/benchmarks.md, idle CPU).
    /// </summary>
    public TimeSpan SinglePollInterval { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan PruneInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Something committed: wake every consumer.</summary>
    public void Notify()
    {
        foreach (var signal in _signals)
        {
            if (signal.CurrentCount == 0)
            {
                try
                {
                    signal.Release();
                }
                catch (SemaphoreFullException)
                {
                    // Another writer woke it first.
                }
            }
        }
    }

    /// <summary>The position a consumer has taken so far in this process (0 before its first read).</summary>
    public long PositionOf(string consumer) => _positions.TryGetValue(consumer, out var position) ? position : 0;

    /// <summary>Completes when <paramref name="consumer"/> has taken every row up to <paramref name="position"/>.</summary>
    public Task WaitForAsync(string consumer, long position)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var list = _waiters.GetOrAdd(consumer, _ => []);
        lock (list)
        {
            list.Add((position, done));
        }

        Release(consumer, PositionOf(consumer));
        return done.Task;
    }

    /// <summary>Completes when every consumer has taken everything committed so far.</summary>
    public async Task WaitForAllAsync(CancellationToken cancellationToken = default)
    {
        var last = await EventLog.LastPositionAsync(_database, cancellationToken);
        Notify();
        foreach (var consumer in _consumers)
        {
            await WaitForAsync(consumer.Name, last).WaitAsync(cancellationToken);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_consumers.Count == 0)
        {
            return;
        }

        if (_lease is null)
        {
            await RunConsumersAsync(stoppingToken);
            return;
        }

        // A cluster node: the consumers run while this node holds the lease, from their durable positions; a
        // consumer with state in memory drops it when the lease is lost (the next holder starts from what is stored).
        await _lease.RunWhileHeldAsync(RunConsumersAsync, ForgetStateAsync, stoppingToken);
    }

    private async Task ForgetStateAsync()
    {
        foreach (var consumer in _consumers)
        {
            if (consumer is IStatefulEventConsumer stateful)
            {
                await stateful.ForgetAsync();
            }
        }
    }

    private async Task RunConsumersAsync(CancellationToken stoppingToken)
    {
        var loops = new List<Task>(_consumers.Count + 1);
        for (var i = 0; i < _consumers.Count; i++)
        {
            loops.Add(RunAsync(_consumers[i], _signals[i], stoppingToken));
        }

        loops.Add(PruneLoopAsync(stoppingToken));
        await Task.WhenAll(loops);
    }

    private async Task RunAsync(IEventConsumer consumer, SemaphoreSlim signal, CancellationToken stoppingToken)
    {
        try
        {
            var position = await StartPositionAsync(consumer, stoppingToken);
            Release(consumer.Name, position);
            var failures = 0;
            var pollInterval = _database.Provider == StorageProvider.Sqlite ? SinglePollInterval : PollInterval;
            var events = new List<PlatformEvent>();
            var row = new DecodedRow();
            while (!stoppingToken.IsCancellationRequested)
            {
                var last = position;
                try
                {
                    events.Clear();
                    // This process's own rows, while they follow one another, come from memory as they were written.
                    while (last - position < RowsPerRead && _signal is not null && _signal.TryGetRecent(last + 1, out var recent))
                    {
                        last++;
                        if (Decode(recent, row))
                        {
                            await AddEventsAsync(last, recent.CreatedTime, row, events, stoppingToken);
                        }
                    }

                    if (last == position)
                    {
                        foreach (var logRow in await EventLog.ReadAsync(_database, position, RowsPerRead, stoppingToken))
                        {
                            last = logRow.Position;
                            if (Decode(logRow, row))
                            {
                                await AddEventsAsync(logRow.Position, logRow.CreatedTime, row, events, stoppingToken);
                            }
                        }
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogReadFailed(_logger, e, consumer.Name);
                    await Task.Delay(Backoff(++failures), _time, stoppingToken);
                    continue;
                }

                if (last == position)
                {
                    await signal.WaitAsync(pollInterval, stoppingToken);
                    continue;
                }

                try
                {
                    await consumer.ConsumeAsync(events, last, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogConsumeFailed(_logger, e, consumer.Name, position + 1, last);
                    await Task.Delay(Backoff(++failures), _time, stoppingToken);
                    continue;
                }

                failures = 0;
                position = last;
                Release(consumer.Name, position);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task<long> StartPositionAsync(IEventConsumer consumer, CancellationToken cancellationToken)
    {
        if (await EventLog.LoadCursorAsync(_database, consumer.Name, cancellationToken) is { } stored)
        {
            return stored;
        }

        // A new consumer starts at the end: it does not replay what happened before it existed.
        var end = await EventLog.LastPositionAsync(_database, cancellationToken);
        await using var connection = await _database.OpenAsync(cancellationToken);
        await EventLog.SaveCursorAsync(connection, null, consumer.Name, end, cancellationToken);
        return end;
    }

    private bool Decode(EventLogRow logRow, DecodedRow row)
    {
        row.Points.Clear();
        row.Changes.Clear();
        row.Events.Clear();
        try
        {
            EventCodec.Decode(logRow.Kind, logRow.Body, row);
            return true;
        }
        catch (FormatException e)
        {
            _undecodable.Add(1);
            LogUndecodable(_logger, logRow.Position, e.Message);
            return false;
        }
    }

    private async Task AddEventsAsync(long position, long created, DecodedRow row, List<PlatformEvent> events, CancellationToken cancellationToken)
    {

        var index = 0;
        var points = row.Points;
        var i = 0;
        while (i < points.Count)
        {
            // One event per run of a device's points (one message, or several of it in a row).
            var seq = points[i].DeviceSeq;
            var end = i + 1;
            var ts = points[i].Point.Ts;
            while (end < points.Count && points[end].DeviceSeq == seq)
            {
                ts = Math.Max(ts, points[end].Point.Ts);
                end++;
            }

            var slice = new TelemetryPoint[end - i];
            for (var j = i; j < end; j++)
            {
                slice[j - i] = points[j].Point;
            }

            if (await _devices.GetAsync(seq, cancellationToken) is { } device)
            {
                events.Add(new PlatformEvent { Position = position, Committed = created, Index = index, Type = PlatformEventType.Telemetry, Device = device, Ts = ts, Points = slice });
            }

            index++;
            i = end;
        }

        foreach (var change in row.Changes)
        {
            var ts = 0L;
            foreach (var entry in change.Entries)
            {
                ts = Math.Max(ts, entry.LastUpdateTs);
            }

            if (await _devices.GetAsync(change.DeviceSeq, cancellationToken) is { } device)
            {
                events.Add(new PlatformEvent
                {
                    Position = position, Committed = created, Index = index, Type = PlatformEventType.Attributes, Device = device, Ts = ts,
                    Scope = change.Scope, Attributes = change.Entries,
                });
            }

            index++;
        }

        foreach (var record in row.Events)
        {
            if (await _devices.GetAsync(record.DeviceSeq, cancellationToken) is { } device)
            {
                events.Add(new PlatformEvent
                {
                    Position = position, Committed = created, Index = index, Type = record.Type, Device = device, Ts = record.Ts, DataJson = record.DataJson,
                });
            }

            index++;
        }
    }

    private async Task PruneLoopAsync(CancellationToken stoppingToken)
    {
        var names = new List<string>(_consumers.Count);
        foreach (var consumer in _consumers)
        {
            names.Add(consumer.Name);
        }

        using var timer = new PeriodicTimer(PruneInterval, _time);
        // An idle server prunes nothing: once a prune deleted no row and no consumer has moved since, the next
        // prune waits until one does (each prune is a write transaction; two a second cost an idle server more CPU
        // than its 10,000 idle MQTT connections, docs/benchmarks.md). Rows a consumer recorded later than it
        // moved are pruned at the next movement.
        var positionsAtLastPrune = -1L;
        var lastPruneDeleted = true;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var positions = SumOfPositions();
                if (!lastPruneDeleted && positions == positionsAtLastPrune)
                {
                    continue;
                }

                try
                {
                    positionsAtLastPrune = positions;
                    lastPruneDeleted = await EventLog.PruneAsync(_database, names, stoppingToken) > 0;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    lastPruneDeleted = true; // tried again at the next tick
                    LogPruneFailed(_logger, e);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private void Release(string consumer, long position)
    {
        _positions[consumer] = position;
        if (!_waiters.TryGetValue(consumer, out var list))
        {
            return;
        }

        lock (list)
        {
            for (var i = list.Count - 1; i >= 0; i--)
            {
                if (list[i].Position <= position)
                {
                    list[i].Done.TrySetResult();
                    list.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>Changes whenever a consumer moves (positions only grow).</summary>
    private long SumOfPositions()
    {
        var sum = 0L;
        foreach (var (_, position) in _positions)
        {
            sum += position;
        }

        return sum;
    }

    private IEnumerable<Measurement<long>> ObservePositions()
    {
        foreach (var (name, position) in _positions)
        {
            yield return new Measurement<long>(position, new KeyValuePair<string, object?>("consumer", name));
        }
    }

    private static TimeSpan Backoff(int failures) => TimeSpan.FromMilliseconds(Math.Min(30_000, 100 * (1 << Math.Min(failures, 9))));

    [LoggerMessage(EventId = 2801, Level = LogLevel.Warning, Message = "Reading the event log for {Consumer} failed; it is tried again")]
    private static partial void LogReadFailed(ILogger logger, Exception exception, string consumer);

    [LoggerMessage(EventId = 2802, Level = LogLevel.Warning, Message = "{Consumer} failed to take event log rows {From} to {To}; they come again after a pause")]
    private static partial void LogConsumeFailed(ILogger logger, Exception exception, string consumer, long from, long to);

    [LoggerMessage(EventId = 2803, Level = LogLevel.Error, Message = "Event log row {Position} does not decode and is skipped: {Reason}")]
    private static partial void LogUndecodable(ILogger logger, long position, string reason);

    [LoggerMessage(EventId = 2804, Level = LogLevel.Warning, Message = "Pruning the event log failed; it is tried again later")]
    private static partial void LogPruneFailed(ILogger logger, Exception exception);
}
