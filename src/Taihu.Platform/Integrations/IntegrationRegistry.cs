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

    /// <summary>Requests (or publishes) in flight per integration, at most one per device (default 16).</summary>
    public int MaxInFlight { get; set; } = 16;

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

    public Integration Integration { get; } = integration;

    public IntegrationFilter Filter { get; } = new(integration.Configuration);

    /// <summary>Released when the outbox got rows (or a dead letter was replayed); the same across reloads.</summary>
    public SemaphoreSlim Wake { get; } = wake;

    public long OutboxCount => Interlocked.Read(ref _outbox);

    public long Sent => Interlocked.Read(ref _sent);

    public long Failed => Interlocked.Read(ref _failed);

    public long Dead => Interlocked.Read(ref _dead);

    internal void SetOutbox(long count) => Interlocked.Exchange(ref _outbox, count);

    internal void AddOutbox(long count) => Interlocked.Add(ref _outbox, count);

    internal void CountSent() => Interlocked.Increment(ref _sent);

    internal void CountFailed() => Interlocked.Increment(ref _failed);

    internal void CountDead() => Interlocked.Increment(ref _dead);

    internal void Carry(IntegrationState previous)
    {
        _sent = previous.Sent;
        _failed = previous.Failed;
        _dead = previous.Dead;
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

    public IntegrationRegistry(SqlIntegrationStore store, IMeterFactory? meters = null)
    {
        _store = store;
        var meter = meters?.Create(PlatformMetrics.MeterName) ?? new Meter(PlatformMetrics.MeterName);
        meter.CreateObservableCounter("taihu.integration.sent", () => Observe(s => s.Sent), "{event}", "Events an integration delivered.");
        meter.CreateObservableCounter("taihu.integration.failed", () => Observe(s => s.Failed), "{attempt}", "Delivery attempts that failed and are retried.");
        meter.CreateObservableCounter("taihu.integration.dead", () => Observe(s => s.Dead), "{event}", "Events an integration dead-lettered.");
        meter.CreateObservableGauge("taihu.integration.outbox", () => Observe(s => s.OutboxCount), "{event}", "Events waiting in an integration's outbox.");
    }

    /// <summary>Told after each reload, so that the delivery owners follow.</summary>
    public event Action? Changed;

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

    public async Task<Snapshot> ReloadAsync(CancellationToken cancellationToken)
    {
        await _loadGate.WaitAsync(cancellationToken);
        try
        {
            var all = await _store.ListAllAsync(cancellationToken);
            var counts = await _store.CountOutboxesAsync(cancellationToken);
            var previous = _snapshot;
            var byId = new Dictionary<Guid, IntegrationState>();
            var byTenant = new Dictionary<Guid, List<IntegrationState>>();
            foreach (var integration in all)
            {
                var state = new IntegrationState(integration, _wakes.GetOrAdd(integration.Id, _ => new SemaphoreSlim(0, 1)));
                if (previous is not null && previous.ById.TryGetValue(integration.Id, out var old))
                {
                    state.Carry(old);
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
