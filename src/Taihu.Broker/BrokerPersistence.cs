using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt.Topics;

namespace Taihu.Broker;

/// <summary>
/// Persistence through an <see cref="IBrokerStateStore"/>, when one is registered.
/// <para>
/// Design: nothing on the path of a message touches the store. A retained change is recorded by the namespace's
/// <see cref="RetainedStore"/> under the lock it already holds (latest change per topic, with a message
/// reference); a session change marks the session changed, inside the session. One background loop
/// writes, at most once every <see cref="BrokerOptions.StateFlushInterval"/>: it hands the retained changes to the
/// store, and every <see cref="BrokerOptions.SessionSnapshotInterval"/> (or at the next round after a subscription
/// changed) it copies the persistent sessions marked changed and hands them over, with the sessions that ended since.
/// The loop has no timer of its own: the broker's housekeeping tick, which runs anyway, wakes it only when there is
/// something to write (<see cref="Tick"/>), so an idle broker with nothing to save wakes no thread for it. A
/// graceful stop does both once more after the connections have closed. What a failed write carried is marked
/// again and retried at the next round. Payloads are never copied: the messages are held by reference until the
/// store's call completes.
/// </para>
/// <para>
/// At start the saved state is loaded before any listener opens: retained messages keep the time they were
/// published, so their Message Expiry Interval runs on across the restart; a restored session is disconnected,
/// counts its expiry from the restart, and gives its client what it owed (unacknowledged messages again with DUP,
/// then the queue) when the client comes back with Clean Start 0.
/// </para>
/// <para>
/// On a cluster node (<paramref name="restoresSessions"/> false) every node shares one store. The retained messages
/// are the cluster's: each node loads them all, and writes the changes accepted on it (the other nodes' changes
/// reach it through the cluster and are written by their node). A session is its holder's alone: none is loaded at
/// start (each belongs to the node its client was on, or is taken over when its client comes back, see
/// <see cref="MqttBroker.ClaimSessionAsync"/>); a node writes and deletes only the sessions it holds, hands a
/// session over without deleting it (<see cref="HandOver"/>), and takes on the row of one it takes over
/// (<see cref="Adopt"/>).
/// </para>
/// </summary>
internal sealed partial class BrokerPersistence(IBrokerStateStore store, BrokerOptions options, TimeProvider time, BrokerMetrics metrics, ILogger logger,
    SessionRegistry sessions, MessageRouter router, bool restoresSessions = true) : IDisposable
{
    // The sessions the store holds now, as far as the broker knows; touched only with _persistGate held.
    private readonly HashSet<SessionKey> _storedSessions = [];

    // Sessions handed to another node (false) or taken over from one (true) since the last write: applied to
    // _storedSessions at the start of the next session write, under _persistGate.
    private readonly ConcurrentQueue<(SessionKey Key, bool Held)> _ownership = new();
    private readonly SemaphoreSlim _persistGate = new(1, 1);
    private readonly SemaphoreSlim _due = new(0, 1);
    private CancellationTokenSource? _persistStop;
    private Task? _persistLoop;
    private int _subscriptionsChanged;
    private int _signalled;
    // Read and written only by Tick (the housekeeping timer, whose ticks do not overlap).
    private DateTimeOffset _nextFlush;
    private DateTimeOffset _nextSnapshot;

    private BrokerOptions Options => options;
    private TimeProvider Time => time;
    private BrokerMetrics Metrics => metrics;
    private IBrokerStateStore StateStore => store;

    /// <summary>Loads the saved state, then starts the write-behind loop.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_persistLoop is null)
        {
            var state = await store.LoadAsync(cancellationToken);
            await _persistGate.WaitAsync(cancellationToken);
            try
            {
                Restore(state);
            }
            finally
            {
                _persistGate.Release();
            }

            LogStateLoaded(logger, state.Retained.Count, state.Sessions.Count);
            var now = Time.GetUtcNow();
            _nextFlush = now + Options.StateFlushInterval;
            _nextSnapshot = now + Options.SessionSnapshotInterval;
            var stop = _persistStop = new CancellationTokenSource();
            _persistLoop = Task.Run(() => RunPersistenceAsync(stop.Token), CancellationToken.None);
        }
    }

    /// <summary>
    /// Stops the write-behind loop without writing. The gate and the token source are left to the collector: the loop
    /// may still be finishing a write that holds them.
    /// </summary>
    public void Dispose() => _persistStop?.Cancel();

    /// <summary>
    /// Stops the write-behind loop and writes what is left: the retained changes and the sessions as they are now.
    /// Called at a graceful stop, once the connections have closed (see <see cref="MqttBroker.Shutdown"/>). The last write
    /// is not cancelled with the host's stop token: that token may have run out while the web server waited for
    /// connections, and this write is what the next start restores (the store's own command timeouts bound it).
    /// A failure is logged, not thrown, so that the rest of the host still stops in order.
    /// </summary>
    public async Task StopAsync()
    {
        if (_persistLoop is not { } loop)
        {
            return;
        }

        _persistLoop = null;
        await _persistStop!.CancelAsync();
        await loop;
        try
        {
            await FlushStateAsync(CancellationToken.None);
            LogStateSaved(logger, _storedSessions.Count);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogFinalStateWriteFailed(logger, ex);
        }
    }

    /// <summary>Writes the buffered retained changes and the sessions that changed now (the stop, and tests).</summary>
    public async Task FlushStateAsync(CancellationToken cancellationToken)
    {
        await _persistGate.WaitAsync(cancellationToken);
        try
        {
            Interlocked.Exchange(ref _subscriptionsChanged, 0);
            await SaveRetainedAsync(cancellationToken);
            await SaveSessionsAsync(cancellationToken);
        }
        finally
        {
            _persistGate.Release();
        }
    }

    /// <summary>
    /// The session went to another node of the cluster, which writes it from now on: this node forgets it without
    /// deleting it. Called before the session leaves the registry, so that no write in between deletes it.
    /// </summary>
    public void HandOver(SessionKey key) => _ownership.Enqueue((key, false));

    /// <summary>The session was taken over from another node (or from the store): its row is this node's to rewrite or delete.</summary>
    public void Adopt(SessionKey key) => _ownership.Enqueue((key, true));

    /// <summary>The last snapshot of one session in the store, or null (a cluster node taking over a session of a node gone).</summary>
    public Task<StoredSession?> LoadSessionAsync(SessionKey key, CancellationToken cancellationToken) => StateStore.LoadSessionAsync(key, cancellationToken);

    /// <summary>A session's subscriptions changed: the next tick writes the sessions, not only at the snapshot interval.</summary>
    public void OnSubscriptionsChanged() => Volatile.Write(ref _subscriptionsChanged, 1);

    /// <summary>
    /// Called on every housekeeping tick: once <see cref="BrokerOptions.StateFlushInterval"/> has passed since the last
    /// round, wakes the loop when a retained message or a subscription changed, or the session snapshot is due.
    /// </summary>
    public void Tick(DateTimeOffset now)
    {
        if (_persistLoop is null || now < _nextFlush)
        {
            return;
        }

        var snapshot = now >= _nextSnapshot;
        if (!snapshot && Volatile.Read(ref _subscriptionsChanged) == 0 && !HasRetainedChanges())
        {
            return;
        }

        _nextFlush = now + Options.StateFlushInterval;
        if (snapshot)
        {
            _nextSnapshot = now + Options.SessionSnapshotInterval;
            Volatile.Write(ref _subscriptionsChanged, 1); // the loop writes the sessions on this round
        }

        if (Interlocked.Exchange(ref _signalled, 1) == 0)
        {
            _due.Release();
        }
    }

    private bool HasRetainedChanges()
    {
        foreach (var (_, state) in router.Namespaces)
        {
            if (state.Retained.HasChanges)
            {
                return true;
            }
        }

        return false;
    }

    private async Task RunPersistenceAsync(CancellationToken stop)
    {
        try
        {
            while (true)
            {
                await _due.WaitAsync(stop);
                Volatile.Write(ref _signalled, 0);
                await _persistGate.WaitAsync(stop);
                try
                {
                    // Writes run to completion even when the stop comes meanwhile: StopAsync waits for them.
                    await SaveRetainedAsync(CancellationToken.None);
                    if (Interlocked.Exchange(ref _subscriptionsChanged, 0) != 0)
                    {
                        await SaveSessionsAsync(CancellationToken.None);
                    }
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    LogStateWriteFailed(logger, ex);
                }
                finally
                {
                    _persistGate.Release();
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Hands the retained changes of every namespace to the store. Caller holds _persistGate.</summary>
    private async Task SaveRetainedAsync(CancellationToken cancellationToken)
    {
        List<(RetainedStore Store, Dictionary<string, BrokerMessage?> Taken)>? taken = null;
        var changes = new List<RetainedChange>();
        foreach (var (ns, state) in router.Namespaces)
        {
            if (state.Retained.TakeChanges() is { } recorded)
            {
                (taken ??= []).Add((state.Retained, recorded));
                foreach (var (topic, message) in recorded)
                {
                    changes.Add(new RetainedChange(ns, topic, message is null ? null : ToStored(message)));
                }
            }
        }

        if (taken is null)
        {
            return;
        }

        var saved = false;
        try
        {
            await StateStore.SaveRetainedAsync(changes, cancellationToken);
            saved = true;
        }
        finally
        {
            foreach (var (store, recorded) in taken)
            {
                store.CompleteChanges(recorded, saved);
            }
        }
    }

    /// <summary>
    /// Hands the persistent sessions marked changed (and those new to the store) to it, with the stored ones that
    /// are gone or no longer persistent. Caller holds _persistGate.
    /// </summary>
    private async Task SaveSessionsAsync(CancellationToken cancellationToken)
    {
        while (_ownership.TryDequeue(out var change))
        {
            _ = change.Held ? _storedSessions.Add(change.Key) : _storedSessions.Remove(change.Key);
        }

        var changed = new List<StoredSession>();
        var copied = new List<MqttSession>();
        var held = new List<BrokerMessage>();
        var present = new HashSet<SessionKey>();
        foreach (var (_, session) in sessions.All)
        {
            var key = new SessionKey(session.Namespace, session.ClientId, session.Owner);
            if (!session.TrySnapshot(_storedSessions.Contains(key), held, out var snapshot))
            {
                continue;
            }

            present.Add(key);
            if (snapshot is not null)
            {
                changed.Add(snapshot);
                copied.Add(session);
            }
        }

        var removed = new List<SessionKey>();
        foreach (var key in _storedSessions)
        {
            if (!present.Contains(key))
            {
                removed.Add(key);
            }
        }

        try
        {
            if (changed.Count == 0 && removed.Count == 0)
            {
                return;
            }

            await StateStore.SaveSessionsAsync(changed, removed, cancellationToken);
            foreach (var key in removed)
            {
                _storedSessions.Remove(key);
            }

            foreach (var session in changed)
            {
                _storedSessions.Add(session.Key);
            }
        }
        catch
        {
            foreach (var session in copied)
            {
                session.MarkChanged();
            }

            throw;
        }
        finally
        {
            foreach (var message in held)
            {
                message.Release();
            }
        }
    }

    /// <summary>What the store sees of a message; the payload stays the broker's (the caller holds a reference).</summary>
    internal static StoredMessage ToStored(BrokerMessage message) => new()
    {
        Topic = message.Topic,
        Payload = message.Payload,
        QoS = message.QoS,
        Retain = message.Retain,
        Properties = message.Properties,
        ReceivedAt = message.ReceivedAt,
    };

    private static BrokerMessage FromStored(string ns, StoredMessage stored) =>
        BrokerMessage.Create(ns, stored.Topic, stored.Payload, owner: null, stored.QoS, stored.Retain, stored.Properties, stored.ReceivedAt, originClientId: null);

    /// <summary>Puts the loaded state in place. Runs before any connection is accepted.</summary>
    private void Restore(StoredBrokerState state)
    {
        var now = Time.GetUtcNow();
        foreach (var change in state.Retained)
        {
            if (change.Message is not { } stored)
            {
                continue;
            }

            var retained = router.GetNamespace(change.Namespace).Retained;
            var message = FromStored(change.Namespace, stored);
            if (message.IsExpired(now) || message.Payload.IsEmpty)
            {
                // Expired while the broker was down: the next flush deletes it from the store too.
                retained.RecordDeletion(stored.Topic);
            }
            else if (!retained.Restore(message, Options.MaximumRetainedMessages, Options.MaximumRetainedMessageSize, Options.MaximumRetainedBytesPerNamespace))
            {
                Metrics.MessageDropped(DropReasons.RetainedLimit);
            }

            message.Release();
        }

        if (!restoresSessions)
        {
            return;
        }

        foreach (var stored in state.Sessions)
        {
            // Kept as stored, so that the next snapshot deletes what should not be there (a clean session).
            _storedSessions.Add(stored.Key);
            if (stored.ExpiryInterval != 0)
            {
                RestoreSession(stored, Options, now, sessions, router);
            }
        }
    }

    /// <summary>
    /// Puts a stored session in place, disconnected, its expiry counted from <paramref name="now"/>, its
    /// subscriptions in the trie (at start, and on a cluster node when a session is taken over). Returns it, or
    /// null when <paramref name="replace"/> is false and a session of the key is there already (which stays).
    /// </summary>
    internal static MqttSession? RestoreSession(StoredSession stored, BrokerOptions options, DateTimeOffset now, SessionRegistry sessions, MessageRouter router, bool replace = true)
    {
        var session = sessions.Create(stored.Namespace, stored.ClientId, stored.Owner);
        var subscriptions = RestoreSubscriptions(session, stored, options);
        session.Restore(stored, subscriptions, now, saved => FromStored(stored.Namespace, saved));
        var trie = router.GetNamespace(session.Namespace).Trie;
        foreach (var subscription in subscriptions)
        {
            trie.Add(subscription);
        }

        return sessions.AddRestored(session, replace) ? session : null;
    }

    /// <summary>The stored subscriptions that are still valid here, for the session (those left out make its restore incomplete).</summary>
    private static List<Subscription> RestoreSubscriptions(MqttSession session, StoredSession stored, BrokerOptions options)
    {
        var subscriptions = new List<Subscription>(stored.Subscriptions.Count);
        foreach (var saved in stored.Subscriptions)
        {
            var filter = saved.Filter;
            string? group = null;
            if (TopicValidator.TryParseShared(saved.Filter, out var shareGroup, out var sharedFilter, out var validShared))
            {
                if (!validShared || !options.SharedSubscriptionsEnabled)
                {
                    continue;
                }

                group = shareGroup;
                filter = sharedFilter;
            }

            if (!TopicValidator.IsValidTopicFilter(filter))
            {
                continue;
            }

            subscriptions.Add(new Subscription
            {
                Session = session,
                Filter = filter,
                RawFilter = saved.Filter,
                ShareGroup = group,
                QoS = saved.QoS,
                NoLocal = saved.NoLocal,
                RetainAsPublished = saved.RetainAsPublished,
                RetainHandling = saved.RetainHandling,
                SubscriptionId = saved.SubscriptionId,
            });
        }

        return subscriptions;
    }

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Broker state loaded: {Retained} retained message(s), {Sessions} persistent session(s)")]
    private static partial void LogStateLoaded(ILogger logger, int retained, int sessions);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Broker state saved: {Sessions} persistent session(s) stored")]
    private static partial void LogStateSaved(ILogger logger, int sessions);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Writing the broker state failed; the changes are written again at the next round")]
    private static partial void LogStateWriteFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Writing the broker state at stop failed; changes since the last successful write are lost")]
    private static partial void LogFinalStateWriteFailed(ILogger logger, Exception exception);
}
