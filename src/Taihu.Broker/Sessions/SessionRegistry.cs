using Taihu.Broker.Extensibility;
using System.Collections.Concurrent;
using Taihu.Broker.Routing;

namespace Taihu.Broker.Sessions;

/// <summary>
/// The sessions of the broker, by (namespace, owner, client id): which session a connecting client gets (new,
/// resumed, or taken over from another connection), what happens to it when its connection goes (kept, ended, its
/// will sent or delayed), and its expiry. Which session a key names changes only here, one change at a time; what a
/// session holds changes only in the session itself.
/// </summary>
internal sealed class SessionRegistry(SessionServices services, MessageRouter router, IMqttClusterLink? cluster = null)
{
    // Keyed by owner too (ClientIdentity.SessionOwner, "" for none): a client id is unique per owner, not per namespace.
    private readonly ConcurrentDictionary<(string Namespace, string Owner, string ClientId), MqttSession> _sessions = new();

    // The sessions whose client went away (or that were restored from the store): the only ones that can have a
    // will or an expiry due, so housekeeping looks at these instead of every session each second. An entry whose
    // client came back, or that was replaced or ended, is dropped by housekeeping.
    private readonly ConcurrentDictionary<MqttSession, byte> _away = new(ReferenceEqualityComparer.Instance);

    // Serializes the changes of which session a key names (attach, detach, end, expiry, restore).
    private readonly Lock _gate = new();

    /// <summary>Sessions held, connected or not.</summary>
    public int Count => _sessions.Count;

    /// <summary>Sessions that housekeeping looks at (see _away).</summary>
    public int AwayCount => _away.Count;

    /// <summary>Every session, walked in place (persistence snapshots).</summary>
    public ConcurrentDictionary<(string Namespace, string Owner, string ClientId), MqttSession> All => _sessions;

    public MqttSession? Find(string ns, string clientId, string owner) => _sessions.TryGetValue((ns, owner, clientId), out var s) ? s : null;

    /// <summary>A new, empty session (for a restore, to be filled before <see cref="AddRestored"/>).</summary>
    public MqttSession Create(string ns, string clientId, string owner) => new(ns, clientId, owner, services);

    /// <summary>
    /// Gives <paramref name="output"/>'s connection the session for its client id and owner: a new one, or the
    /// existing one (taken over from its old connection, which is kicked with 0x8E). Returns whether an existing
    /// session was resumed in <paramref name="sessionPresent"/>. A session of another owner with the same client id
    /// is a different session and is left alone.
    /// </summary>
    public MqttSession Attach(ISessionOutput output, string ns, string owner, string clientId, bool cleanStart, uint expiryInterval, out bool sessionPresent, long clusterClaim = 0)
    {
        MqttSession session;
        lock (_gate)
        {
            var key = (ns, owner, clientId);
            var resumable = false;
            if (_sessions.TryGetValue(key, out var existing))
            {
                resumable = existing.TakeOver(cleanStart, out var previous);

                // The old connection is told 0x8E and closed; its will follows the usual rules (see Detach).
                previous?.Kick();
            }

            if (existing is not null && resumable)
            {
                session = existing;
                sessionPresent = true;
            }
            else
            {
                if (existing is not null)
                {
                    End(existing);
                }

                session = new MqttSession(ns, clientId, owner, services);
                _sessions[key] = session;
                sessionPresent = false;
            }

            session.Attach(output, expiryInterval);
            session.ClaimedInCluster(clusterClaim);
        }

        return session;
    }

    /// <summary>A connected client went away: keeps or ends its session, and sends or delays its will.</summary>
    public void Detach(ISessionOutput output, MqttSession session, BrokerMessage? will, uint willDelay)
    {
        List<PendingDelivery>? redispatch;
        lock (_gate)
        {
            var willNow = session.Detach(output, services.Time.GetUtcNow(), will, willDelay, out var end, out redispatch);
            if (willNow is not null)
            {
                router.RouteAndRetain(willNow);
                willNow.Release();
            }

            // The cluster's copy of the will is done with, unless a newer connection holds the session now (a
            // takeover here): the copy is that connection's (it wrote its own, or forgot this one at its CONNECT).
            if (will is not null && cluster is not null && !session.IsWillPending && !session.IsConnected)
            {
                cluster.OnWillDone(session.Namespace, session.Owner, session.ClientId);
            }

            if (end)
            {
                End(session);
                Remove(session);
                cluster?.OnSessionEnded(session.Namespace, session.Owner, session.ClientId, session.ClusterClaim);
            }
            else
            {
                _away.TryAdd(session, 0);
            }
        }

        if (redispatch is not null)
        {
            foreach (var pending in redispatch)
            {
                router.RedeliverToGroup(session, pending);
                pending.Message.Release();
            }
        }
    }

    /// <summary>
    /// Housekeeping: sends the wills whose delay is over, and ends the sessions whose client stayed away past their
    /// expiry.
    /// </summary>
    public void Housekeep(DateTimeOffset now)
    {
        List<MqttSession>? expired = null;
        foreach (var (session, _) in _away)
        {
            if (!_sessions.TryGetValue((session.Namespace, session.Owner, session.ClientId), out var current) || current != session)
            {
                _away.TryRemove(session, out _); // ended or replaced
                continue;
            }

            // A connected session has no will or expiry due; the hint is read without the session's lock only to
            // decide whether to ask. One that detaches after it is dropped here is added again: by Detach if that
            // comes after the removal, or by the second look below if it came before.
            if (session.IsConnected)
            {
                _away.TryRemove(session, out _);
                if (!session.IsConnected)
                {
                    _away.TryAdd(session, 0);
                }

                continue;
            }

            var dueWill = session.CheckAway(now, out var hasExpired);
            if (hasExpired)
            {
                (expired ??= []).Add(session);
            }

            if (dueWill is not null)
            {
                dueWill.Restamp(now);
                router.RouteAndRetain(dueWill);
                dueWill.Release();
                cluster?.OnWillDone(session.Namespace, session.Owner, session.ClientId);
            }
        }

        if (expired is null)
        {
            return;
        }

        lock (_gate)
        {
            foreach (var session in expired)
            {
                // Reconnected since: with the registry's lock held, no connection can attach meanwhile.
                if (!session.IsConnected && Remove(session))
                {
                    End(session);
                    cluster?.OnSessionEnded(session.Namespace, session.Owner, session.ClientId, session.ClusterClaim);
                }
            }
        }
    }

    /// <summary>
    /// The session of the key was taken over on another node of the cluster: its connection is kicked (0x8E) and the
    /// session ends here, as a clean start would end it. False when there is none; else <paramref name="contents"/>
    /// is a copy of what it held (its payloads copied), when it was persistent, for the node that takes it over.
    /// </summary>
    public bool EndTakenOver(string ns, string owner, string clientId, out StoredSession? contents)
    {
        contents = null;
        var held = new List<BrokerMessage>();
        try
        {
            lock (_gate)
            {
                if (!_sessions.TryGetValue((ns, owner, clientId), out var session))
                {
                    return false;
                }

                // Taken before the old connection goes: what it had in flight is owed again, with DUP, on the new node.
                session.TakeOver(cleanStart: false, out var previous);
                previous?.Kick();
                if (session.TrySnapshot(stored: false, held, out var snapshot) && snapshot is not null)
                {
                    contents = CopyPayloads(snapshot);
                }

                Remove(session);
                End(session);
                return true;
            }
        }
        finally
        {
            foreach (var message in held)
            {
                message.Release();
            }
        }
    }

    /// <summary>
    /// Puts a session loaded from a state store in place. One already there with the same key is ended, or, with
    /// <paramref name="replace"/> false, kept: then <paramref name="session"/> is ended instead (its subscriptions
    /// leave the trie) and false comes back.
    /// </summary>
    public bool AddRestored(MqttSession session, bool replace = true)
    {
        lock (_gate)
        {
            var key = (session.Namespace, session.Owner, session.ClientId);
            if (_sessions.TryGetValue(key, out var duplicate))
            {
                if (!replace)
                {
                    End(session);
                    return false;
                }

                End(duplicate);
            }

            _sessions[key] = session;
            _away.TryAdd(session, 0);
            return true;
        }
    }

    /// <summary>The snapshot with payloads of its own, so that it outlives the session's messages.</summary>
    private static StoredSession CopyPayloads(StoredSession snapshot)
    {
        var deliveries = new List<StoredDelivery>(snapshot.Deliveries.Count);
        foreach (var delivery in snapshot.Deliveries)
        {
            var message = delivery.Message;
            deliveries.Add(delivery with
            {
                Message = new StoredMessage
                {
                    Topic = message.Topic,
                    Payload = message.Payload.ToArray(),
                    QoS = message.QoS,
                    Retain = message.Retain,
                    Properties = message.Properties,
                    ReceivedAt = message.ReceivedAt,
                },
            });
        }

        return new StoredSession
        {
            Namespace = snapshot.Namespace,
            ClientId = snapshot.ClientId,
            Owner = snapshot.Owner,
            ExpiryInterval = snapshot.ExpiryInterval,
            Subscriptions = snapshot.Subscriptions,
            Deliveries = deliveries,
            IncomingQoS2 = snapshot.IncomingQoS2,
        };
    }

    private bool Remove(MqttSession session)
    {
        _away.TryRemove(session, out _);
        return _sessions.TryRemove(new KeyValuePair<(string, string, string), MqttSession>((session.Namespace, session.Owner, session.ClientId), session));
    }

    /// <summary>Discards a session: its subscriptions leave the trie, its messages are released, a pending will goes out.</summary>
    private void End(MqttSession session)
    {
        var subscriptions = session.End(out var will);
        var trie = router.GetNamespace(session.Namespace).Trie;
        foreach (var subscription in subscriptions)
        {
            trie.Remove(session, subscription.Filter, subscription.ShareGroup);
        }

        if (will is not null)
        {
            will.Restamp(services.Time.GetUtcNow());
            router.RouteAndRetain(will);
            will.Release();
            cluster?.OnWillDone(session.Namespace, session.Owner, session.ClientId);
        }
    }
}
