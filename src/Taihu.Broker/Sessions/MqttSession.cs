using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Sessions;

/// <summary>A message waiting in a session's queue, not yet given a packet identifier.</summary>
internal readonly record struct PendingDelivery(BrokerMessage Message, QoS QoS, bool Retain, List<uint>? SubscriptionIds, SharedGroup? Group);

/// <summary>
/// A QoS 1 or 2 message sent (or about to be) and not yet fully acknowledged. A struct in the session's list,
/// so that a delivery in flight costs no allocation of its own.
/// </summary>
internal struct InflightMessage
{
    public ushort PacketId;
    public BrokerMessage Message;
    public QoS QoS;
    public bool Retain;
    public List<uint>? SubscriptionIds;
    public SharedGroup? Group;
    /// <summary>QoS 2: PUBREC arrived and PUBREL was sent; waiting for PUBCOMP.</summary>
    public bool Released;
}

/// <summary>
/// The state the broker keeps for one client id in one namespace: subscriptions, messages in flight and queued,
/// QoS 2 packet ids received and not yet released, the will, and expiry. It outlives connections when the session
/// is persistent.
/// </summary>
/// <remarks>
/// <para>
/// <b>The session is the only owner of its state.</b> Every field below is private, and the methods of this class
/// are the only code that changes them: the connection's receive loop (acknowledgements, subscriptions, QoS 2
/// packet ids), other connections' receive loops (deliveries), the broker's registry (attach, detach, end) and its
/// timers (wills, expiry, snapshots) all hand the session their work by calling one of these methods, which runs
/// it to completion, one call at a time, in the order the calls arrive, under a lock that nothing outside the
/// class's files (MqttSession*.cs) can take. What a call decides for the caller (a delivery's fate, an
/// acknowledgement's meaning, the will to send now) comes back as its result; what it sends goes out through
/// <see cref="ISessionOutput"/>, never through a reference to the connection.
/// </para>
/// <para>
/// A mailbox drained by a consumer loop of its own would serialize the same way, at the price of a thread hop per
/// delivery and per acknowledgement: on this broker's QoS 1 path such hops were most of the cost (see
/// docs/benchmarks.md), so the caller's thread runs the call instead. Because the state can only be reached
/// through these methods, replacing the lock by a mailbox (or the class by a session grain) changes these files
/// only.
/// </para>
/// </remarks>
public sealed partial class MqttSession
{
    private readonly Lock _gate = new();
    private readonly SessionServices _services;

    // The collections are created on first use: most device sessions never subscribe, never receive QoS 2 and
    // never queue, and an idle connection should cost as little as possible.
    private Dictionary<string, Subscription>? _subscriptions;
    private List<InflightMessage>? _inflight;
    private Queue<PendingDelivery>? _queue;
    private HashSet<ushort>? _incomingQoS2;
    private ushort _lastPacketId;

    // The connection that owns the session now, or null while the client is away.
    private ISessionOutput? _output;
    private uint _expiryInterval;
    private DateTimeOffset? _disconnectedAt;
    private BrokerMessage? _pendingWill;
    private DateTimeOffset? _willDueAt;
    private bool _ended;

    private long _clusterClaim;

    /// <summary>
    /// On a cluster node, the number of the claim that gave this node the session (<see cref="Extensibility.ClaimedSession.Claim"/>);
    /// 0 on a single server.
    /// </summary>
    internal long ClusterClaim => Volatile.Read(ref _clusterClaim);

    /// <summary>The cluster gave this node the session under claim <paramref name="claim"/> (see <see cref="ClusterClaim"/>).</summary>
    internal void ClaimedInCluster(long claim) => Volatile.Write(ref _clusterClaim, claim);

    // Whether anything a state store keeps (subscriptions, queued and unacknowledged messages, expiry) changed
    // since the last snapshot took it. New sessions start changed.
    private bool _stateChanged = true;

    // No queued message expires before this time (a lower bound, kept by EnqueuePending and DropExpired). A full
    // queue is scanned for expired messages only once this has passed: scanning on every message that finds it
    // full cost a whole core at 10k msg/s with a lagging subscriber.
    private DateTimeOffset _queuedExpiryNotBefore = DateTimeOffset.MinValue;

    // Bytes (topic and payload) of the messages in the queue.
    private long _queuedBytes;

    // True once a publisher waited the whole FullQueuePublisherWait for room in this session's full queue and
    // none came: the subscriber is not reading. Publishers are no longer held for it, and what overflows is
    // dropped, until its queue has room again.
    private bool _stalled;

    // Completed when the full queue has room again, or when FullQueuePublisherWait has passed since it filled
    // (then the session is stalled); publishers held back by it wait on this. One timer per filling, not per waiter.
    private TaskCompletionSource? _room;
    private ITimer? _roomTimer;
    private DateTimeOffset _roomDeadline;

    private static readonly TimerCallback s_roomTimeout = static state => ((MqttSession)state!).OnRoomTimeout();

    internal MqttSession(string ns, string clientId, string owner, SessionServices services)
    {
        Namespace = ns;
        ClientId = clientId;
        Owner = owner;
        _services = services;
    }

    public string Namespace { get; }
    public string ClientId { get; }

    /// <summary>The identity that owns the session (<see cref="ClientIdentity.SessionOwner"/>), or "" for none.</summary>
    public string Owner { get; }

    private BrokerOptions Options => _services.Options;

    private Dictionary<string, Subscription> Subscriptions => _subscriptions ??= new(StringComparer.Ordinal);
    private List<InflightMessage> Inflight => _inflight ??= [];
    private Queue<PendingDelivery> Queue => _queue ??= new();
    private HashSet<ushort> IncomingQoS2 => _incomingQoS2 ??= [];

    // ------------------------------------------------------------------------------------------------ reading

    public int SubscriptionCount
    {
        get
        {
            lock (_gate)
            {
                return _subscriptions?.Count ?? 0;
            }
        }
    }

    /// <summary>The session's subscription filters (as the client sent them, shared ones with their $share prefix), sorted.</summary>
    public string[] SubscriptionFilters()
    {
        lock (_gate)
        {
            if (_subscriptions is not { Count: > 0 } subscriptions)
            {
                return [];
            }

            var filters = new string[subscriptions.Count];
            subscriptions.Keys.CopyTo(filters, 0);
            Array.Sort(filters, StringComparer.Ordinal);
            return filters;
        }
    }

    public int QueuedCount
    {
        get
        {
            lock (_gate)
            {
                return _queue?.Count ?? 0;
            }
        }
    }

    public int InflightCount
    {
        get
        {
            lock (_gate)
            {
                return _inflight?.Count ?? 0;
            }
        }
    }

    /// <summary>Whether a connection owns the session now. A hint without the lock (housekeeping uses it to skip).</summary>
    internal bool IsConnected => Volatile.Read(ref _output) is not null;

    /// <summary>Whether <paramref name="output"/>'s connection is the one that holds the session now.</summary>
    internal bool IsAttachedTo(ISessionOutput output) => ReferenceEquals(Volatile.Read(ref _output), output);

    /// <summary>Whether the session's client went away and it waits for a reconnect or its expiry.</summary>
    internal bool IsDetached
    {
        get
        {
            lock (_gate)
            {
                return _output is null && _disconnectedAt is not null;
            }
        }
    }

    /// <summary>Whether a will waits for its Will Delay Interval.</summary>
    internal bool IsWillPending
    {
        get
        {
            lock (_gate)
            {
                return _willDueAt is not null;
            }
        }
    }

    internal uint ExpiryInterval
    {
        get
        {
            lock (_gate)
            {
                return _expiryInterval;
            }
        }
    }

    /// <summary>What a queued message counts against a byte limit: its topic and payload.</summary>
    internal static long SizeOf(BrokerMessage message) => message.Topic.Length + message.Payload.Length;

    // ------------------------------------------------------------------------------------------------ connections

    /// <summary>
    /// A new connection with this session's client id arrived: the old connection (if any) loses the session and is
    /// returned in <paramref name="previous"/> to be kicked. Returns whether the session can be resumed: not when the
    /// new connection asks for a clean start, and not when it was a clean session (expiry 0), which ends with its
    /// connection, so that one taken over while still connected has nothing to resume (as in Mosquitto).
    /// </summary>
    internal bool TakeOver(bool cleanStart, out ISessionOutput? previous)
    {
        lock (_gate)
        {
            previous = _output;
            Volatile.Write(ref _output, null);
            return !cleanStart && !_ended && _expiryInterval != 0;
        }
    }

    /// <summary>
    /// <paramref name="output"/>'s connection owns the session from now on. A will waiting for its delay is
    /// cancelled: the client came back within it (5.0 section 3.1.3.2.2).
    /// </summary>
    internal void Attach(ISessionOutput output, uint expiryInterval)
    {
        lock (_gate)
        {
            Volatile.Write(ref _output, output);
            _expiryInterval = expiryInterval;
            _disconnectedAt = null;
            _stateChanged = true;
            if (_pendingWill is { } will)
            {
                will.Release();
                _pendingWill = null;
                _willDueAt = null;
            }
        }
    }

    /// <summary>
    /// After CONNECT was answered: a resumed session sends its unacknowledged messages again with DUP and PUBREL
    /// for those past PUBREC; then the queue moves into the inflight window.
    /// </summary>
    internal void Resume(ISessionOutput output, bool sessionPresent)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(_output, output))
            {
                return;
            }

            if (sessionPresent && _inflight is not null)
            {
                foreach (var inflight in _inflight)
                {
                    if (inflight.Released)
                    {
                        output.EnqueueAck(PacketType.PubRel, inflight.PacketId, ReasonCode.Success);
                    }
                    else
                    {
                        output.EnqueuePublish(inflight.Message, inflight.QoS, inflight.Retain, dup: true, inflight.PacketId, inflight.SubscriptionIds);
                    }
                }
            }

            Pump();
        }
    }

    /// <summary>
    /// <paramref name="output"/>'s connection went away. Returns the will to send now, if any, and whether the
    /// session ends now (<paramref name="end"/>); a delayed will is kept until its time (the smaller of the Will
    /// Delay Interval and the session's expiry). A connection that had already lost the session to another changes
    /// nothing but its will: one without delay goes out at once, a delayed one is cancelled (the session was
    /// resumed within the delay). Deliveries that came through a shared subscription and were not acknowledged
    /// are returned in <paramref name="redispatch"/> for another member of their group.
    /// </summary>
    internal BrokerMessage? Detach(ISessionOutput output, DateTimeOffset now, BrokerMessage? will, uint willDelay, out bool end, out List<PendingDelivery>? redispatch)
    {
        lock (_gate)
        {
            redispatch = null;
            if (!ReferenceEquals(_output, output))
            {
                end = false;
                if (will is not null && willDelay > 0 && !_ended)
                {
                    will.Release();
                    return null;
                }

                return will;
            }

            Volatile.Write(ref _output, null);
            _disconnectedAt = now;
            _stateChanged = true;

            // Nobody drains the queue now: publishers held back by it go on (and what overflows is dropped).
            ReleaseWaitingPublishers();
            end = _expiryInterval == 0;
            redispatch = TakeSharedDeliveries();
            if (will is null)
            {
                return null;
            }

            var delay = Math.Min(willDelay, end ? 0 : _expiryInterval);
            if (delay == 0 || _ended)
            {
                return will;
            }

            _pendingWill?.Release();
            _pendingWill = will;
            _willDueAt = now.AddSeconds(delay);
            return null;
        }
    }

    /// <summary>
    /// Discards the session: it takes no more deliveries, its messages are released, and its subscriptions (to be
    /// taken out of the trie) and pending will (to be sent now) are returned.
    /// </summary>
    internal List<Subscription> End(out BrokerMessage? will)
    {
        lock (_gate)
        {
            _ended = true;
            List<Subscription> subscriptions = _subscriptions is { Count: > 0 } all ? [.. all.Values] : [];
            _subscriptions?.Clear();
            will = _pendingWill;
            _pendingWill = null;
            _willDueAt = null;
            ReleaseAll();
            return subscriptions;
        }
    }

    /// <summary>
    /// Housekeeping of a session whose client is away: returns its will when the delay is over, and tells whether
    /// the session has expired. Nothing is due while a connection owns it.
    /// </summary>
    internal BrokerMessage? CheckAway(DateTimeOffset now, out bool expired)
    {
        lock (_gate)
        {
            expired = false;
            if (_output is not null || _disconnectedAt is not { } at)
            {
                return null;
            }

            BrokerMessage? dueWill = null;
            if (_willDueAt is { } due && now >= due)
            {
                dueWill = _pendingWill;
                _pendingWill = null;
                _willDueAt = null;
            }

            expired = _expiryInterval != uint.MaxValue && now >= at.AddSeconds(_expiryInterval);
            return dueWill;
        }
    }

    /// <summary>DISCONNECT changed the Session Expiry Interval (5.0).</summary>
    internal void SetExpiryInterval(uint expiryInterval)
    {
        lock (_gate)
        {
            _expiryInterval = expiryInterval;
            _stateChanged = true;
        }
    }

    // ------------------------------------------------------------------------------------------------ subscriptions

    /// <summary>Adds or replaces the subscription with this (raw, as the client named it) filter.</summary>
    internal void Subscribe(string rawFilter, Subscription subscription)
    {
        lock (_gate)
        {
            Subscriptions[rawFilter] = subscription;
            _stateChanged = true;
        }
    }

    /// <summary>Removes the subscription with this raw filter; returns it, or null when there was none.</summary>
    internal Subscription? Unsubscribe(string rawFilter)
    {
        lock (_gate)
        {
            if (_subscriptions is null || !_subscriptions.Remove(rawFilter, out var removed))
            {
                return null;
            }

            _stateChanged = true;
            return removed;
        }
    }

    /// <summary>Releases every message the session holds.</summary>
    private void ReleaseAll()
    {
        if (_inflight is not null)
        {
            foreach (var inflight in _inflight)
            {
                inflight.Message.Release();
            }

            _inflight.Clear();
        }

        if (_queue is not null)
        {
            while (_queue.TryDequeue(out var pending))
            {
                pending.Message.Release();
            }
        }

        _queuedBytes = 0;
        ReleaseWaitingPublishers();
        _incomingQoS2?.Clear();
        _pendingWill?.Release();
        _pendingWill = null;
        _willDueAt = null;
    }
}
