using System.Diagnostics.Metrics;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Integrations;

/// <summary>Settings of integrations (section <c>Integrations</c>).</summary>
public sealed class IntegrationOptions
{
    /// <summary>
    /// Events an integration's outbox holds at most (default 1,000,000: a day of one event every 0.1 s, a few
    /// hundred MB on disk). An event beyond it is dead-lettered with reason "outbox full", never dropped silently.
    /// </summary>
    public long MaxOutboxEvents { get; set; } = 1_000_000;

    /// <summary>
    /// Requests (or publishes) in flight per integration, at most one per device (default 64: with 16, a webhook on
    /// this 2-core machine took ~200-800 events/s while 500 devices published and ~2,000/s catching up; with 64 it
    /// kept up with ingest and caught up at 4,500-6,200 events/s, bench/integrations.sh in docs/benchmarks.md).
    /// </summary>
    public int MaxInFlight { get; set; } = 64;

    /// <summary>
    /// How long a device's client-side RPC request waits for a webhook's answer (<c>answerRpc</c>) before the
    /// server answers it as it would without integrations (default 60 s, ThingsBoard's client-side RPC timeout).
    /// </summary>
    public long ClientRpcTimeoutMs { get; set; } = 60_000;

    /// <summary>Client-side RPC requests waiting for an answer at most; beyond it a request is answered at once (default 10,000).</summary>
    public int MaxPendingClientRpc { get; set; } = 10_000;
}

/// <summary>One integration as the consumer and its delivery owner see it, with its counters.</summary>
public sealed class IntegrationState(Integration integration, SemaphoreSlim wake)
{
    private long _outbox;
    private long _sent;
    private long _failed;
    private long _dead;
    private long _retrying;
    private long _oldestWaiting;
    private long _idleUntil;

    public Integration Integration { get; } = integration;

    public IntegrationFilter Filter { get; } = new(integration.Configuration);

    /// <summary>Released when the outbox got rows (or a dead letter was replayed); the same across reloads.</summary>
    public SemaphoreSlim Wake { get; } = wake;

    public long OutboxCount => Interlocked.Read(ref _outbox);

    public long Sent => Interlocked.Read(ref _sent);

    public long Failed => Interlocked.Read(ref _failed);

    public long Dead => Interlocked.Read(ref _dead);

    /// <summary>Events that failed at least once and wait for their retry (as the delivery owner knows them).</summary>
    public long Retrying => Math.Max(0, Interlocked.Read(ref _retrying));

    /// <summary>When the oldest waiting event was written to the outbox (ms), as the owner read it last; 0: none waits.</summary>
    public long OldestWaiting => Interlocked.Read(ref _oldestWaiting);

    /// <summary>The age of the oldest waiting event at <paramref name="now"/> (ms), 0 when none waits.</summary>
    public long LagMs(long now) => OldestWaiting is var oldest && oldest == 0 ? 0 : Math.Max(0, now - oldest);

    internal void SetOutbox(long count) => Interlocked.Exchange(ref _outbox, count);

    internal void AddOutbox(long count) => Interlocked.Add(ref _outbox, count);

    internal void CountSent(long count = 1) => Interlocked.Add(ref _sent, count);

    internal void CountRetrying(long delta) => Interlocked.Add(ref _retrying, delta);

    internal void SetRetrying(long count) => Interlocked.Exchange(ref _retrying, count);

    internal void SetOldestWaiting(long createdTime) => Interlocked.Exchange(ref _oldestWaiting, createdTime);

    /// <summary>
    /// While the delivery owner waits with nothing in flight for a retry's time (or new rows): that time (ms); else 0.
    /// A test with a fake clock moves the clock only then, so that it never passes a retry the owner has not sent.
    /// </summary>
    internal long IdleUntil => Interlocked.Read(ref _idleUntil);

    internal void SetIdleUntil(long until) => Interlocked.Exchange(ref _idleUntil, until);

    /// <summary>The counters as stored (they survive a restart).</summary>
    internal void Load((long Sent, long Failed, long Dead) stored)
    {
        _sent = stored.Sent;
        _failed = stored.Failed;
        _dead = stored.Dead;
    }

    internal void CountFailed() => Interlocked.Increment(ref _failed);

    internal void CountDead() => Interlocked.Increment(ref _dead);

    internal void Carry(IntegrationState previous)
    {
        _sent = previous.Sent;
        _failed = previous.Failed;
        _dead = previous.Dead;
        _retrying = previous.Retrying;
        _oldestWaiting = previous.OldestWaiting;
    }

    public void Signal()
    {
        if (Wake.CurrentCount == 0)
        {
            try
            {
                Wake.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }
    }
}

/// <summary>
/// The integrations of all tenants, loaded from the store and reloaded on every change through the API, as an
/// immutable snapshot the consumer reads without locks. Counters on <c>/metrics</c> are tagged by integration id.
/// </summary>
public sealed class IntegrationRegistry : IDisposable
{
    private readonly SqlIntegrationStore _store;
    private readonly SemaphoreSlim _loadGate = new(1, 1);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, SemaphoreSlim> _wakes = new();
    private volatile Snapshot? _snapshot;

    public IntegrationRegistry(SqlIntegrationStore store, IMeterFactory? meters = null, TimeProvider? time = null)
    {
        _store = store;
        var clock = time ?? TimeProvider.System;
        var meter = meters?.Create(PlatformMetrics.MeterName) ?? new Meter(PlatformMetrics.MeterName);
        meter.CreateObservableCounter("taihu.integration.sent", () => Observe(s => s.Sent), "{event}", "Events an integration delivered (since it was created).");
        meter.CreateObservableCounter("taihu.integration.failed", () => Observe(s => s.Failed), "{attempt}", "Delivery attempts that failed (since the integration was created).");
        meter.CreateObservableCounter("taihu.integration.dead", () => Observe(s => s.Dead), "{event}", "Events an integration dead-lettered (since it was created).");
        meter.CreateObservableGauge("taihu.integration.outbox", () => Observe(s => s.OutboxCount), "{event}", "Events waiting in an integration's outbox.");
        meter.CreateObservableGauge("taihu.integration.retrying", () => Observe(s => s.Retrying), "{event}", "Events that failed at least once and wait for their retry.");
        meter.CreateObservableGauge("taihu.integration.lag", () => Observe(s => s.LagMs(clock.GetUtcNow().ToUnixTimeMilliseconds())), "ms",
            "The age of an integration's oldest waiting event.");
    }

    /// <summary>Told after each reload, so that the delivery owners follow.</summary>
    public event Action? Changed;

    /// <summary>
    /// Set on a cluster node: tells the other nodes to reload after a change made through this node's API (the
    /// node holding the event log lease fills and delivers the outboxes by its own registry). The API call waits
    /// for it, so that the events after it are matched against the change on whichever node takes them.
    /// </summary>
    public Func<Task>? TellOthers { get; set; }

    public async ValueTask<Snapshot> GetAsync(CancellationToken cancellationToken)
    {
        return _snapshot ?? await ReloadAsync(cancellationToken);
    }

    /// <summary>The snapshot loaded last, or null before the first load.</summary>
    public Snapshot? Current => _snapshot;

    /// <summary>
    /// The enabled webhooks with <c>answerRpc</c> that take the device's client-side RPC requests (0 before the first
    /// load): a request waits for their answers.
    /// </summary>
    public int CountRpcAnswerers(Devices.Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (_snapshot is not { } snapshot || !snapshot.ByTenant.TryGetValue(device.TenantId, out var targets))
        {
            return 0;
        }

        var count = 0;
        foreach (var target in targets)
        {
            if (target.Integration.Configuration.AnswerRpc == true && target.Filter.Matches(Events.PlatformEventType.RpcRequest, device.ProfileId))
            {
                count++;
            }
        }

        return count;
    }

    public IntegrationState? Find(Guid id) => _snapshot is { } s && s.ById.TryGetValue(id, out var state) ? state : null;

    /// <summary>Reloads after a change through the API, and has the other nodes reload (<see cref="TellOthers"/>).</summary>
    public async Task<Snapshot> ReloadAfterEditAsync(CancellationToken cancellationToken)
    {
        var snapshot = await ReloadAsync(cancellationToken);
        if (TellOthers is { } tell)
        {
            await tell();
        }

        return snapshot;
    }

    public async Task<Snapshot> ReloadAsync(CancellationToken cancellationToken)
    {
        await _loadGate.WaitAsync(cancellationToken);
        try
        {
            var all = await _store.ListAllAsync(cancellationToken);
            var counts = await _store.CountOutboxesAsync(cancellationToken);
            var previous = _snapshot;
            var stored = previous is null ? await _store.LoadCountersAsync(cancellationToken) : null;
            var byId = new Dictionary<Guid, IntegrationState>();
            var byTenant = new Dictionary<Guid, List<IntegrationState>>();
            foreach (var integration in all)
            {
                var state = new IntegrationState(integration, _wakes.GetOrAdd(integration.Id, _ => new SemaphoreSlim(0, 1)));
                if (previous is not null && previous.ById.TryGetValue(integration.Id, out var old))
                {
                    state.Carry(old);
                }
                else if (stored is not null && stored.TryGetValue(integration.Id, out var counters))
                {
                    state.Load(counters);
                }

                state.SetOutbox(counts.GetValueOrDefault(integration.Id));
                byId[integration.Id] = state;
                if (integration.Enabled)
                {
                    if (!byTenant.TryGetValue(integration.TenantId, out var list))
                    {
                        byTenant[integration.TenantId] = list = [];
                    }

                    list.Add(state);
                }
            }

            var snapshot = new Snapshot(byId, byTenant.ToDictionary(p => p.Key, p => p.Value.ToArray()));
            _snapshot = snapshot;
            Changed?.Invoke();
            return snapshot;
        }
        finally
        {
            _loadGate.Release();
        }
    }

    private IEnumerable<Measurement<long>> Observe(Func<IntegrationState, long> value)
    {
        if (_snapshot is not { } snapshot)
        {
            yield break;
        }

        foreach (var state in snapshot.ById.Values)
        {
            yield return new Measurement<long>(value(state), new KeyValuePair<string, object?>("integration", state.Integration.Id.ToString()));
        }
    }

    public void Dispose()
    {
        _loadGate.Dispose();
        foreach (var wake in _wakes.Values)
        {
            wake.Dispose();
        }
    }

    public sealed record Snapshot(IReadOnlyDictionary<Guid, IntegrationState> ById, IReadOnlyDictionary<Guid, IntegrationState[]> ByTenant);
}
