using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Platform.Events;

namespace Taihu.Platform.Integrations;

/// <summary>
/// Delivers integrations' outboxes. Each enabled integration has one owner (<see cref="RunAsync"/>), a loop that
/// alone reads, sends, deletes, retries and dead-letters its rows; no lock is shared between integrations.
/// </summary>
/// <remarks>
/// Order per device, devices in parallel: the owner reads the first waiting row of each device (the outbox's head per
/// device) and sends those that are due, at most one per device and <see cref="IntegrationOptions.MaxInFlight"/> in
/// all. A device's later rows are not read until its head is delivered or dead-lettered, so a device waiting for a
/// retry holds back only itself. A failed attempt is retried after <see cref="Backoff"/> (1 s doubling to 5 min, on
/// the injected clock) until the retry limit since the first attempt is over; then the row is dead-lettered. A row's
/// outcome is written before the owner reads again: a crash at any point sends a row again (at least once), never
/// loses it.
/// </remarks>
public sealed partial class IntegrationDelivery : BackgroundService
{
    private static readonly TimeSpan StorageRetry = TimeSpan.FromSeconds(1);
    private readonly SqlIntegrationStore _store;
    private readonly IntegrationRegistry _registry;
    private readonly IMqttServerPublisher? _publisher;
    private readonly Rpc.ClientRpcRequests? _rpc;
    private readonly TimeProvider _time;
    private readonly ILogger<IntegrationDelivery> _logger;
    private readonly Events.IEventWorkLease? _lease;
    private readonly int _maxInFlight;
    // Rows read at a time, oldest first: enough to find work for every delivery slot in the common case.
    private readonly int _window;
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, Owner> _owners = [];
    private CancellationToken _stopping;
    private bool _started;

    public IntegrationDelivery(SqlIntegrationStore store, IntegrationRegistry registry, IOptions<IntegrationOptions> options, TimeProvider time,
        ILogger<IntegrationDelivery> logger, IMqttServerPublisher? publisher = null, Rpc.ClientRpcRequests? rpc = null, Events.IEventWorkLease? lease = null)
    {
        _lease = lease;
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _registry = registry;
        _publisher = publisher;
        _rpc = rpc;
        _time = time;
        _logger = logger;
        _maxInFlight = Math.Max(1, options.Value.MaxInFlight);
        _window = Math.Max(512, _maxInFlight * 32);
        registry.Changed += Reconcile;
    }

    /// <summary>The wait before attempt <paramref name="attempts"/> + 1: 1 s, 2 s, 4 s, ... at most 5 min.</summary>
    public static TimeSpan Backoff(int attempts) => TimeSpan.FromSeconds(Math.Min(300, 1L << Math.Clamp(attempts - 1, 0, 9)));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_lease is null)
        {
            await DeliverAsync(stoppingToken);
            return;
        }

        // A cluster node delivers while it holds the event log lease: one node sends each outbox, as one fills it.
        await _lease.RunWhileHeldAsync(DeliverAsync, afterLoss: null, stoppingToken);
    }

    /// <summary>Runs an owner per enabled integration until <paramref name="stoppingToken"/> is cancelled, then waits for them.</summary>
    private async Task DeliverAsync(CancellationToken stoppingToken)
    {
        lock (_gate)
        {
            _stopping = stoppingToken;
            _started = true;
        }

        try
        {
            await _registry.ReloadAsync(stoppingToken);
            await Task.Delay(Timeout.Infinite, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        Task[] running;
        lock (_gate)
        {
            _started = false;
            running = [.. _owners.Values.Select(o => o.Task)];
            _owners.Clear();
        }

        await Task.WhenAll(running);
    }

    /// <summary>Starts an owner for each enabled integration without one; stops those deleted, disabled or changed.</summary>
    private void Reconcile()
    {
        lock (_gate)
        {
            if (!_started || _stopping.IsCancellationRequested)
            {
                return;
            }

            if (_registry.Current is not { } snapshot)
            {
                return;
            }

            foreach (var (id, owner) in _owners.ToArray())
            {
                if (!snapshot.ById.TryGetValue(id, out var state) || !state.Integration.Enabled || owner.Version != Version(state.Integration))
                {
                    owner.Stop.Cancel();
                    _owners.Remove(id);
                }
            }

            foreach (var state in snapshot.ById.Values)
            {
                var integration = state.Integration;
                if (integration.Enabled && !_owners.ContainsKey(integration.Id))
                {
                    var stop = CancellationTokenSource.CreateLinkedTokenSource(_stopping);
                    _owners[integration.Id] = new Owner(Version(integration), stop, Task.Run(() => RunAsync(integration, stop.Token), CancellationToken.None));
                }
                else
                {
                    // A reload made new states: wake the owner so that it looks again.
                    state.Signal();
                }
            }
        }
    }

    private static string Version(Integration integration) => integration.Name + "\n" + Integration.TypeName(integration.Type) + "\n" + integration.Configuration.ToJson();

    private IIntegrationSender CreateSender(Integration integration) => integration.Type switch
    {
        IntegrationType.Http => new WebhookSender(integration.Configuration, _time, _maxInFlight),
        _ when integration.Configuration.Host is null => new OwnBrokerSender(integration, _publisher ?? throw new InvalidOperationException("No broker to publish on.")),
        _ => new ExternalBrokerSender(integration),
    };

    /// <summary>The owner of one integration's outbox.</summary>
    private async Task RunAsync(Integration integration, CancellationToken stoppingToken)
    {
        var id = integration.Id;
        await using var sender = CreateSender(integration);
        var inFlight = new Dictionary<string, Task>();
        var waits = new List<Task>();
        var done = new List<string>();
        var delivered = new DeliveredRows();
        // The rows of the last read whose devices were not started (not in flight then, and not due or beyond MaxInFlight).
        var unstarted = new List<OutboxRow>();
        var mustRead = true;
        var flusher = FlushLoopAsync(id, delivered, stoppingToken);
        try
        {
            if (_registry.Find(id) is { } first)
            {
                // The events already waiting for a retry; the owner counts them from here on.
                try
                {
                    first.SetRetrying((await _store.StatsAsync(id, stoppingToken)).Retrying);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogStorageFailed(_logger, e, id);
                }
            }

            while (!stoppingToken.IsCancellationRequested)
            {
                if (_registry.Find(id) is not { } state)
                {
                    break;
                }

                var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                var nextDue = long.MaxValue;
                if (!mustRead && unstarted.Count > 0)
                {
                    // Half the deliveries are done and nothing new came: the devices of the last read that were not
                    // started yet go first, without a read. (Reading a window of rows each time half the
                    // deliveries finished read about 16 rows per event delivered with 500 devices and 64 in flight.)
                    var leftover = unstarted.ToArray();
                    if (Start(leftover, inFlight, sender, state, delivered, now, ref nextDue, unstarted, stoppingToken) > 0)
                    {
                        mustRead = await WaitAsync(state, inFlight, waits, done, nextDue, now, flushed: null, stoppingToken);
                        continue;
                    }
                }

                // Taken before the read: a row deleted after it is not read, one deleted before it is excluded.
                var pending = delivered.Snapshot();
                IReadOnlyList<OutboxRow> read;
                var limit = _window + pending.Count;
                try
                {
                    read = await _store.ReadOldestAsync(id, limit, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogStorageFailed(_logger, e, id);
                    await Task.Delay(StorageRetry, _time, stoppingToken);
                    continue;
                }

                // Rows delivered but not yet deleted are not sent again.
                var rows = Without(read, pending);
                state.SetOldestWaiting(rows.Count > 0 ? rows[0].CreatedTime : 0);
                nextDue = long.MaxValue;
                var started = Start(rows, inFlight, sender, state, delivered, now, ref nextDue, unstarted, stoppingToken);
                if (started == 0 && read.Count == limit && inFlight.Count < _maxInFlight)
                {
                    // The oldest rows all belong to devices in flight or waiting for a retry: every device's head, so
                    // that the others go on (slower: it reads the whole outbox's index).
                    try
                    {
                        rows = Without(await _store.ReadHeadsAsync(id, _maxInFlight * 2, stoppingToken), pending);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        LogStorageFailed(_logger, e, id);
                        await Task.Delay(StorageRetry, _time, stoppingToken);
                        continue;
                    }

                    Start(rows, inFlight, sender, state, delivered, now, ref nextDue, unstarted, stoppingToken);
                }

                // Rows wait only for their deletion: look again once the flusher deleted some.
                var flushed = started == 0 && read.Count > rows.Count ? delivered : null;
                mustRead = await WaitAsync(state, inFlight, waits, done, nextDue, now, flushed, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        await Task.WhenAll(inFlight.Values);
        await flusher;
        // Stopping: what the target took is still deleted, so that it is not sent again after the restart.
        await FlushAsync(id, delivered, CancellationToken.None);
    }

    /// <summary>
    /// Waits until something new came (rows, a retry due, a flush: true, read the outbox again) or half the
    /// deliveries in flight are done (false: the devices not started yet may go first); forgets finished deliveries.
    /// </summary>
    private async Task<bool> WaitAsync(IntegrationState state, Dictionary<string, Task> inFlight, List<Task> waits, List<string> done, long nextDue, long now,
        DeliveredRows? flushed, CancellationToken stoppingToken)
    {
        var signalled = false;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        waits.Clear();
        var wake = state.Wake.WaitAsync(wait.Token);
        waits.Add(wake);
        if (nextDue != long.MaxValue)
        {
            waits.Add(Task.Delay(TimeSpan.FromMilliseconds(Math.Max(1, nextDue - now)), _time, wait.Token));
        }

        if (flushed is not null)
        {
            waits.Add(flushed.Flushed.WaitAsync(wait.Token));
        }

        var signals = waits.Count;
        if (inFlight.Count == 0 && nextDue != long.MaxValue)
        {
            state.SetIdleUntil(nextDue);
        }

        waits.AddRange(inFlight.Values);
        // Read again when something new came (rows, a retry due, a flush), or once half the deliveries in flight
        // are done: not after each one, since a read costs a window of rows.
        while (true)
        {
            var completed = await Task.WhenAny(waits);
            if (waits.IndexOf(completed) < signals)
            {
                signalled = true;
                break;
            }

            done.Clear();
            foreach (var (device, task) in inFlight)
            {
                if (task.IsCompleted)
                {
                    done.Add(device);
                }
            }

            foreach (var device in done)
            {
                waits.Remove(inFlight[device]);
                inFlight.Remove(device);
            }

            if (inFlight.Count <= _maxInFlight / 2)
            {
                break;
            }
        }

        state.SetIdleUntil(0);
        await wait.CancelAsync();
        done.Clear();
        foreach (var (device, task) in inFlight)
        {
            if (task.IsCompleted)
            {
                done.Add(device);
            }
        }

        foreach (var device in done)
        {
            inFlight.Remove(device);
        }

        return signalled;
    }

    /// <summary>
    /// Deletes delivered rows in the background, as many as have come together in one transaction. Under SQLite's
    /// one write lock, shared with ingest's commits, each write transaction may wait: a transaction per device run
    /// held delivery to a few hundred events a second while devices published, and several thousand once they stopped.
    /// </summary>
    private async Task FlushLoopAsync(Guid id, DeliveredRows delivered, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await delivered.Ready.WaitAsync(stoppingToken);
                await FlushAsync(id, delivered, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
        }
    }

    private async Task FlushAsync(Guid id, DeliveredRows delivered, CancellationToken cancellationToken)
    {
        while (delivered.Take(MaxDeletesPerStatement) is { Count: > 0 } batch)
        {
            while (true)
            {
                try
                {
                    await _store.DeleteOutboxAsync(id, batch, cancellationToken);
                    break;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogStorageFailed(_logger, e, id);
                    if (cancellationToken == CancellationToken.None)
                    {
                        // Stopping: the rows stay and are sent again after the restart (at least once).
                        return;
                    }

                    await Task.Delay(StorageRetry, _time, cancellationToken);
                }
            }

            delivered.Deleted(batch);
            if (_registry.Find(id) is { } state)
            {
                state.AddOutbox(-batch.Count);
                state.CountSent(batch.Count);
            }
        }
    }

    private const int MaxDeletesPerStatement = 2000;

    /// <summary>Rows the target took, waiting for their deletion (the owner's device runs add, the flusher deletes).</summary>
    private sealed class DeliveredRows
    {
        private readonly Lock _gate = new();
        private readonly HashSet<long> _pending = [];
        private readonly List<long> _queue = [];

        /// <summary>Released when rows were added.</summary>
        public SemaphoreSlim Ready { get; } = new(0, 1);

        public int Count
        {
            get
            {
                lock (_gate)
                {
                    return _pending.Count;
                }
            }
        }

        public void Add(long seq)
        {
            lock (_gate)
            {
                _pending.Add(seq);
                _queue.Add(seq);
            }

            if (Ready.CurrentCount == 0)
            {
                try
                {
                    Ready.Release();
                }
                catch (SemaphoreFullException)
                {
                }
            }
        }

        public List<long> Take(int max)
        {
            lock (_gate)
            {
                var count = Math.Min(max, _queue.Count);
                var batch = _queue.GetRange(0, count);
                _queue.RemoveRange(0, count);
                return batch;
            }
        }

        /// <summary>Released after a deletion (the owner may wait for rows to go before it reads further).</summary>
        public SemaphoreSlim Flushed { get; } = new(0, 1);

        public void Deleted(List<long> batch)
        {
            lock (_gate)
            {
                foreach (var seq in batch)
                {
                    _pending.Remove(seq);
                }
            }

            if (Flushed.CurrentCount == 0)
            {
                try
                {
                    Flushed.Release();
                }
                catch (SemaphoreFullException)
                {
                }
            }
        }

        private int _recovered;

        /// <summary>A retried row was delivered: the target is back.</summary>
        public void Recovered() => Interlocked.Exchange(ref _recovered, 1);

        public bool TakeRecovered() => Interlocked.Exchange(ref _recovered, 0) == 1;

        /// <summary>The rows delivered and not yet deleted, now.</summary>
        public HashSet<long> Snapshot()
        {
            lock (_gate)
            {
                return [.. _pending];
            }
        }
    }

    private static IReadOnlyList<OutboxRow> Without(IReadOnlyList<OutboxRow> rows, HashSet<long> pending)
    {
        if (pending.Count == 0)
        {
            return rows;
        }

        var kept = new List<OutboxRow>(rows.Count);
        foreach (var row in rows)
        {
            if (!pending.Contains(row.Seq))
            {
                kept.Add(row);
            }
        }

        return kept;
    }

    /// <summary>
    /// Starts a delivery for each device of <paramref name="rows"/> (in seq order) that is not in flight and whose
    /// first row is due, with the device's rows among them, up to <see cref="IntegrationOptions.MaxInFlight"/>.
    /// </summary>
    /// <param name="unstarted">Set to the rows of the devices not started (not due, or beyond MaxInFlight).</param>
    private int Start(IReadOnlyList<OutboxRow> rows, Dictionary<string, Task> inFlight, IIntegrationSender sender, IntegrationState state, DeliveredRows delivered, long now,
        ref long nextDue, List<OutboxRow> unstarted, CancellationToken stoppingToken)
    {
        unstarted.Clear();
        var byDevice = new Dictionary<string, List<OutboxRow>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var row in rows)
        {
            if (inFlight.ContainsKey(row.DeviceId))
            {
                continue;
            }

            if (!byDevice.TryGetValue(row.DeviceId, out var list))
            {
                byDevice[row.DeviceId] = list = [];
                order.Add(row.DeviceId);
            }

            list.Add(row);
        }

        // A retried event went through: the target is back, so every event waiting for a retry goes now rather than
        // after its back-off (which grows to minutes over a long outage). One that fails again backs off longer.
        var recovered = delivered.TakeRecovered();
        var started = 0;
        foreach (var device in order)
        {
            var head = byDevice[device][0];
            if (head.NextAttempt > now && !(recovered && head.Attempts > 0))
            {
                nextDue = Math.Min(nextDue, head.NextAttempt);
                unstarted.AddRange(byDevice[device]);
                continue;
            }

            if (inFlight.Count >= _maxInFlight)
            {
                unstarted.AddRange(byDevice[device]);
                continue;
            }

            inFlight[device] = DeliverAsync(sender, state, byDevice[device], delivered, stoppingToken);
            started++;
        }

        return started;
    }

    /// <summary>
    /// Sends a device's rows one after another (its order), until one fails and waits for its retry. The rows the
    /// target took go to the flusher, which deletes them (a crash before that sends them again: at least once).
    /// </summary>
    private async Task DeliverAsync(IIntegrationSender sender, IntegrationState state, List<OutboxRow> rows, DeliveredRows delivered, CancellationToken stoppingToken)
    {
        try
        {
            foreach (var row in rows)
            {
                var result = await sender.SendAsync(row, stoppingToken);
                var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                var attempts = row.Attempts + 1;
                if (result.Outcome == DeliveryOutcome.Delivered)
                {
                    // The device hears an RPC answer before the row is deleted: it waits, and a crash in between
                    // only sends the request again (its answer then finds nobody waiting).
                    AnswerRpc(state, row, result.Reply);
                    delivered.Add(row.Seq);
                    if (row.Attempts > 0)
                    {
                        state.CountRetrying(-1);
                        delivered.Recovered();
                    }

                    continue;
                }

                if (result.Outcome == DeliveryOutcome.Dead)
                {
                    AnswerRpc(state, row, null);
                    await _store.DeadLetterAsync(row, result.Reason!, attempts, result.Status, now, cancellationToken: stoppingToken);
                    state.CountDead();
                    state.CountRetrying(row.Attempts > 0 ? -1 : 0);
                    state.AddOutbox(-1);
                    LogDead(_logger, state.Integration.Id, row.DeviceName, result.Reason!);
                    continue;
                }

                state.CountFailed();
                var first = row.Attempts == 0 ? now : row.FirstAttempt;
                if (now - first >= state.Integration.Configuration.RetryLimitMs)
                {
                    AnswerRpc(state, row, null);
                    var reason = string.Create(CultureInfo.InvariantCulture, $"Retried for {(now - first) / 1000.0:0.###} s without success; the last error: {result.Reason}");
                    await _store.DeadLetterAsync(row, reason, attempts, result.Status, now, failedAttempt: true, stoppingToken);
                    state.CountDead();
                    state.CountRetrying(row.Attempts > 0 ? -1 : 0);
                    state.AddOutbox(-1);
                    LogDead(_logger, state.Integration.Id, row.DeviceName, reason);
                    continue;
                }

                await _store.RetryLaterAsync(row.IntegrationId, row.Seq, attempts, first, now + (long)Backoff(attempts).TotalMilliseconds, result.Status, result.Reason, stoppingToken);
                state.CountRetrying(row.Attempts == 0 ? 1 : 0);
                break;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            // Storage failed: the row is as it was and is tried again after a pause.
            LogStorageFailed(_logger, e, state.Integration.Id);
            try
            {
                await Task.Delay(StorageRetry, _time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>Hands a webhook's answer (or, null, that it gave none) to the device's client-side RPC request.</summary>
    private void AnswerRpc(IntegrationState state, OutboxRow row, byte[]? reply)
    {
        if (_rpc is not null && state.Integration.Configuration.AnswerRpc == true && row.EventType == "RPC_REQUEST" && EventIdOf(row.Body) is { } id)
        {
            _rpc.TryAnswer(id, reply);
        }
    }

    /// <summary>The <c>id</c> of a stored event body (its first member).</summary>
    private static Guid? EventIdOf(byte[] body)
    {
        var reader = new System.Text.Json.Utf8JsonReader(body);
        return reader.Read() && reader.Read() && reader.ValueTextEquals("id"u8) && reader.Read() && reader.TryGetGuid(out var id) ? id : null;
    }

    private sealed record Owner(string Version, CancellationTokenSource Stop, Task Task);

    [LoggerMessage(EventId = 2901, Level = LogLevel.Warning, Message = "Integration {Integration}: reading or writing its outbox failed; it is tried again")]
    private static partial void LogStorageFailed(ILogger logger, Exception exception, Guid integration);

    [LoggerMessage(EventId = 2902, Level = LogLevel.Warning, Message = "Integration {Integration}: an event of device {Device} was dead-lettered: {Reason}")]
    private static partial void LogDead(ILogger logger, Guid integration, string device, string reason);
}
