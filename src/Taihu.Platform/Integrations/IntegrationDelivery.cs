using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;

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
    private readonly int _maxInFlight;
    // Rows read at a time, oldest first: enough to find work for every delivery slot in the common case.
    private readonly int _window;
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, Owner> _owners = [];
    private CancellationToken _stopping;
    private bool _started;

    public IntegrationDelivery(SqlIntegrationStore store, IntegrationRegistry registry, IOptions<IntegrationOptions> options, TimeProvider time,
        ILogger<IntegrationDelivery> logger, IMqttServerPublisher? publisher = null, Rpc.ClientRpcRequests? rpc = null)
    {
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

                IReadOnlyList<OutboxRow> rows;
                try
                {
                    rows = await _store.ReadOldestAsync(id, _window, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogStorageFailed(_logger, e, id);
                    await Task.Delay(StorageRetry, _time, stoppingToken);
                    continue;
                }

                state.SetOldestWaiting(rows.Count > 0 ? rows[0].CreatedTime : 0);
                var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                var nextDue = long.MaxValue;
                var started = Start(rows, inFlight, sender, state, now, ref nextDue, stoppingToken);
                if (started == 0 && rows.Count == _window && inFlight.Count < _maxInFlight)
                {
                    // The oldest rows all belong to devices in flight or waiting for a retry: every device's head, so
                    // that the others go on (slower: it reads the whole outbox's index).
                    try
                    {
                        rows = await _store.ReadHeadsAsync(id, _maxInFlight * 2, stoppingToken);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        LogStorageFailed(_logger, e, id);
                        await Task.Delay(StorageRetry, _time, stoppingToken);
                        continue;
                    }

                    Start(rows, inFlight, sender, state, now, ref nextDue, stoppingToken);
                }

                using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                waits.Clear();
                waits.AddRange(inFlight.Values);
                waits.Add(state.Wake.WaitAsync(wait.Token));
                if (nextDue != long.MaxValue)
                {
                    waits.Add(Task.Delay(TimeSpan.FromMilliseconds(Math.Max(1, nextDue - now)), _time, wait.Token));
                }

                await Task.WhenAny(waits);
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
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        await Task.WhenAll(inFlight.Values);
    }

    /// <summary>
    /// Starts a delivery for each device of <paramref name="rows"/> (in seq order) that is not in flight and whose
    /// first row is due, with the device's rows among them, up to <see cref="IntegrationOptions.MaxInFlight"/>.
    /// </summary>
    private int Start(IReadOnlyList<OutboxRow> rows, Dictionary<string, Task> inFlight, IIntegrationSender sender, IntegrationState state, long now, ref long nextDue,
        CancellationToken stoppingToken)
    {
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

        var started = 0;
        foreach (var device in order)
        {
            var head = byDevice[device][0];
            if (head.NextAttempt > now)
            {
                nextDue = Math.Min(nextDue, head.NextAttempt);
                continue;
            }

            if (inFlight.Count >= _maxInFlight)
            {
                break;
            }

            inFlight[device] = DeliverAsync(sender, state, byDevice[device], stoppingToken);
            started++;
        }

        return started;
    }

    /// <summary>
    /// Sends a device's rows one after another (its order), until one fails and waits for its retry. The rows the
    /// target took are deleted together at the end (a crash before that sends them again: at least once).
    /// </summary>
    private async Task DeliverAsync(IIntegrationSender sender, IntegrationState state, List<OutboxRow> rows, CancellationToken stoppingToken)
    {
        var delivered = new List<long>(rows.Count);
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
                    state.CountRetrying(row.Attempts > 0 ? -1 : 0);
                    continue;
                }

                await DeleteAsync(state, delivered, stoppingToken);
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

            await DeleteAsync(state, delivered, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: what the target took is still deleted, so that it is not sent again after the restart.
            await DeleteAsync(state, delivered, CancellationToken.None);
        }
        catch (Exception e)
        {
            // Storage failed: the rows are as they were and are tried again after a pause.
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

    private async Task DeleteAsync(IntegrationState state, List<long> delivered, CancellationToken cancellationToken)
    {
        if (delivered.Count == 0)
        {
            return;
        }

        await _store.DeleteOutboxAsync(state.Integration.Id, delivered, cancellationToken);
        state.AddOutbox(-delivered.Count);
        state.CountSent(delivered.Count);
        delivered.Clear();
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
