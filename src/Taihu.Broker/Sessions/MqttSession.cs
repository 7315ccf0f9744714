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
/// it to completion, one call at a time, in the order the calls arrive, under a lock that nothing outside this
/// file can take. What a call decides for the caller (a delivery's fate, an acknowledgement's meaning, the will to
/// send now) comes back as its result; what it sends goes out through <see cref="ISessionOutput"/>, never through
/// a reference to the connection.
/// </para>
/// <para>
/// A mailbox drained by a consumer loop of its own would serialize the same way, at the price of a thread hop per
/// delivery and per acknowledgement: on this broker's QoS 1 path such hops were most of the cost (see
/// docs/benchmarks.md), so the caller's thread runs the call instead. Because the state can only be reached
/// through these methods, replacing the lock by a mailbox (or the class by a session grain) changes this file
/// only.
/// </para>
/// </remarks>
public sealed class MqttSession
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

    // ------------------------------------------------------------------------------------------------ deliveries

    /// <summary>
    /// Hands one copy of <paramref name="message"/> to the session: straight to its connection when it is connected
    /// and has room in its inflight window, into its queue otherwise (QoS 1 and 2 only; QoS 0 for an absent client
    /// is dropped, as Mosquitto does by default). A full queue drops the message, unless
    /// <paramref name="mayHoldPublisher"/> (a client's publish, which can be held back) and the subscriber is
    /// connected and reading: then it is queued past the limit, up to twice it, and the result says the publisher
    /// must wait for room (<see cref="WaitForRoomAsync"/>) before it is acknowledged and read from again.
    /// </summary>
    internal DeliveryResult Deliver(BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group, bool mayHoldPublisher)
    {
        lock (_gate)
        {
            if (_ended)
            {
                return DeliveryResult.Accepted;
            }

            var output = _output;
            if (qos == QoS.AtMostOnce)
            {
                output?.EnqueuePublish(message, qos, retain, dup: false, packetId: 0, subscriptionIds);
                return DeliveryResult.Accepted;
            }

            if (output is not null && (_queue is null || _queue.Count == 0) && (_inflight is null || _inflight.Count < output.SendQuota))
            {
                SendInflight(output, message, qos, retain, subscriptionIds, group);
                return DeliveryResult.Accepted;
            }

            var result = DeliveryResult.Accepted;
            var size = SizeOf(message);
            if (IsQueueFull(size) && (DropExpired() == 0 || IsQueueFull(size)))
            {
                if (!mayHoldPublisher || output is null || _stalled || Options.FullQueuePublisherWait <= TimeSpan.Zero || IsQueueOverfull(size))
                {
                    _services.Metrics.MessageDropped(Queue.Count >= Options.MaximumQueuedMessages ? DropReasons.QueueFull : DropReasons.QueueBytesFull);
                    return DeliveryResult.Dropped;
                }

                result = DeliveryResult.Congested;
            }

            message.AddReference();
            EnqueuePending(new PendingDelivery(message, qos, retain, subscriptionIds, group));
            _stateChanged = true;
            return result;
        }
    }

    /// <summary>
    /// Waits until the session's queue has room again, for at most <see cref="BrokerOptions.FullQueuePublisherWait"/>
    /// from when it filled. When none comes in that time the session is marked stalled: its subscriber is not
    /// reading, and publishers are no longer held for it.
    /// </summary>
    internal async ValueTask WaitForRoomAsync(CancellationToken cancellationToken)
    {
        Task wait;
        lock (_gate)
        {
            if (_ended || _output is null || _stalled || HasRoomAgain())
            {
                return;
            }

            if (_room is null)
            {
                _room = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _roomDeadline = _services.Time.GetUtcNow() + Options.FullQueuePublisherWait;
                _roomTimer = _services.Time.CreateTimer(s_roomTimeout, this, Options.FullQueuePublisherWait, Timeout.InfiniteTimeSpan);
            }

            wait = _room.Task;
        }

        _services.Metrics.PublisherHeldBack();
        await wait.WaitAsync(cancellationToken);
    }

    /// <summary>The queue stayed full for FullQueuePublisherWait: the subscriber is taken as not reading.</summary>
    private void OnRoomTimeout()
    {
        lock (_gate)
        {
            // A timer of an earlier filling that fired late finds no room, or one whose deadline is still ahead.
            if (_room is null || _services.Time.GetUtcNow() < _roomDeadline)
            {
                return;
            }

            var stalled = !HasRoomAgain();
            ReleaseWaitingPublishers();
            _stalled = stalled;
        }
    }

    /// <summary>
    /// The client acknowledged one of the session's deliveries (PUBACK, PUBREC or PUBCOMP). A completed delivery
    /// leaves the session and the queue moves up into the window; PUBREC with a failure code ends the exchange too
    /// (5.0 section 4.3.3).
    /// </summary>
    internal AckResult Acknowledge(PacketType type, ushort packetId, ReasonCode reasonCode)
    {
        lock (_gate)
        {
            var index = FindInflight(packetId);
            if (index < 0)
            {
                return AckResult.Unknown;
            }

            var inflight = _inflight![index];
            switch (type)
            {
                case PacketType.PubAck when inflight.QoS == QoS.AtLeastOnce:
                case PacketType.PubComp when inflight.QoS == QoS.ExactlyOnce && inflight.Released:
                case PacketType.PubRec when inflight.QoS == QoS.ExactlyOnce && !reasonCode.IsSuccess():
                    _inflight.RemoveAt(index);
                    _stateChanged = true;
                    if (type != PacketType.PubRec)
                    {
                        // A server-published message (an RPC command) is told it arrived; a refused PUBREC is not arrival.
                        inflight.Message.DeliveryListener?.OnDelivered(inflight.QoS);
                    }

                    inflight.Message.Release();
                    Pump();
                    return AckResult.Completed;
                case PacketType.PubRec when inflight.QoS == QoS.ExactlyOnce:
                    inflight.Released = true;
                    _inflight[index] = inflight;
                    _stateChanged = true;
                    return AckResult.Released;
                default:
                    return AckResult.Mismatch;
            }
        }
    }

    /// <summary>A QoS 1/2 delivery that will never be sent (expired, too large for the client): out of flight as if acknowledged.</summary>
    internal void CompleteDropped(ushort packetId, BrokerMessage message)
    {
        lock (_gate)
        {
            var index = FindInflight(packetId);
            if (index >= 0 && ReferenceEquals(_inflight![index].Message, message))
            {
                _inflight[index].Message.Release();
                _inflight.RemoveAt(index);
                _stateChanged = true;
                Pump();
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ incoming QoS 2

    /// <summary>Whether an incoming QoS 2 PUBLISH is new, a resend of one accepted, or over the limit with <paramref name="pendingElsewhere"/> more.</summary>
    internal IncomingQoS2Check CheckIncomingQoS2(ushort packetId, int pendingElsewhere)
    {
        lock (_gate)
        {
            if (_incomingQoS2 is not null && _incomingQoS2.Contains(packetId))
            {
                return IncomingQoS2Check.Duplicate;
            }

            return (_incomingQoS2?.Count ?? 0) + pendingElsewhere >= Options.MaximumInflightMessages ? IncomingQoS2Check.OverLimit : IncomingQoS2Check.New;
        }
    }

    /// <summary>An incoming QoS 2 PUBLISH was accepted (PUBREC sent): its identifier is held until PUBREL.</summary>
    internal void AcceptIncomingQoS2(ushort packetId)
    {
        lock (_gate)
        {
            IncomingQoS2.Add(packetId);
            _stateChanged = true;
        }
    }

    /// <summary>PUBREL: releases the identifier; false when it was not held.</summary>
    internal bool ReleaseIncomingQoS2(ushort packetId)
    {
        lock (_gate)
        {
            var known = _incomingQoS2 is not null && _incomingQoS2.Remove(packetId);
            _stateChanged |= known;
            return known;
        }
    }

    // ------------------------------------------------------------------------------------------------ persistence

    /// <summary>
    /// For a state store: whether the session is one it keeps (persistent, not ended), and, when it changed since
    /// the last snapshot or the store does not know it (<paramref name="stored"/> false), a copy of it. Payloads are
    /// not copied: each message gets a reference, added to <paramref name="held"/>, that the caller releases once
    /// the store is done.
    /// </summary>
    internal bool TrySnapshot(bool stored, List<BrokerMessage> held, out StoredSession? snapshot)
    {
        lock (_gate)
        {
            snapshot = null;
            if (_ended || _expiryInterval == 0)
            {
                return false;
            }

            if (_stateChanged || !stored)
            {
                _stateChanged = false;
                snapshot = ToStored(held);
            }

            return true;
        }
    }

    /// <summary>A snapshot could not be written: the next round writes the session again.</summary>
    internal void MarkChanged()
    {
        lock (_gate)
        {
            _stateChanged = true;
        }
    }

    /// <summary>
    /// Fills a session loaded from a state store, before any connection can reach it: its subscriptions (already
    /// parsed by the broker), its deliveries in flight and queued, its incoming QoS 2 identifiers. Returns whether
    /// everything stored was taken (false when something was left out, so the next snapshot rewrites it).
    /// </summary>
    internal bool Restore(StoredSession stored, List<Subscription> subscriptions, DateTimeOffset now, Func<StoredMessage, BrokerMessage> load)
    {
        lock (_gate)
        {
            _expiryInterval = stored.ExpiryInterval;
            _disconnectedAt = now;
            var complete = subscriptions.Count == stored.Subscriptions.Count;
            foreach (var subscription in subscriptions)
            {
                Subscriptions[subscription.RawFilter] = subscription;
            }

            foreach (var delivery in stored.Deliveries)
            {
                var ids = delivery.SubscriptionIds is { Count: > 0 } list ? new List<uint>(list) : null;
                if (delivery.PacketId != 0)
                {
                    if (FindInflight(delivery.PacketId) >= 0)
                    {
                        complete = false;
                        continue;
                    }

                    // A delivery that was in flight through a shared subscription stays with this session: the group
                    // it came through may not exist any more, and its client is the one that may have it already.
                    Inflight.Add(new InflightMessage
                    {
                        PacketId = delivery.PacketId,
                        Message = load(delivery.Message),
                        QoS = delivery.QoS,
                        Retain = delivery.Retain,
                        SubscriptionIds = ids,
                        Released = delivery.Released,
                    });
                }
                else if (Queue.Count < Options.MaximumQueuedMessages)
                {
                    EnqueuePending(new PendingDelivery(load(delivery.Message), delivery.QoS, delivery.Retain, ids, Group: null));
                }
                else
                {
                    _services.Metrics.MessageDropped(DropReasons.QueueFull);
                    complete = false;
                }
            }

            foreach (var packetId in stored.IncomingQoS2)
            {
                IncomingQoS2.Add(packetId);
            }

            // It is what the store holds, unless something was left out above.
            _stateChanged = !complete;
            return complete;
        }
    }

    // ------------------------------------------------------------------------------------------------ inside the lock

    /// <summary>Gives the message a packet identifier, records it in flight and queues it for the socket.</summary>
    private void SendInflight(ISessionOutput output, BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group)
    {
        var packetId = NextPacketId();
        message.AddReference();
        Inflight.Add(new InflightMessage
        {
            PacketId = packetId,
            Message = message,
            QoS = qos,
            Retain = retain,
            SubscriptionIds = subscriptionIds,
            Group = group,
        });
        _stateChanged = true;
        output.EnqueuePublish(message, qos, retain, dup: false, packetId, subscriptionIds);
    }

    /// <summary>Moves queued messages into the inflight window while the connection has room, then lets held-back publishers go on when there is room.</summary>
    private void Pump()
    {
        if (_output is not { } output || _queue is null)
        {
            return;
        }

        if (_queue.Count > 0)
        {
            var now = _services.Time.GetUtcNow();
            var quota = output.SendQuota;
            while (_queue.Count > 0 && Inflight.Count < quota)
            {
                var pending = DequeuePending();
                _stateChanged = true;
                if (pending.Message.IsExpired(now))
                {
                    _services.Metrics.MessageDropped(DropReasons.Expired);
                }
                else
                {
                    SendInflight(output, pending.Message, pending.QoS, pending.Retain, pending.SubscriptionIds, pending.Group);
                }

                pending.Message.Release();
            }
        }

        if ((_room is not null || _stalled) && HasRoomAgain())
        {
            ReleaseWaitingPublishers();
        }
    }

    private void EnqueuePending(PendingDelivery pending)
    {
        Queue.Enqueue(pending);
        _queuedBytes += SizeOf(pending.Message);
        if (pending.Message.ExpiresAt is { } at && at < _queuedExpiryNotBefore)
        {
            _queuedExpiryNotBefore = at;
        }
    }

    private PendingDelivery DequeuePending()
    {
        var pending = Queue.Dequeue();
        _queuedBytes -= SizeOf(pending.Message);
        return pending;
    }

    /// <summary>Whether one more message of <paramref name="size"/> bytes would exceed the queue's limits.</summary>
    private bool IsQueueFull(long size) =>
        Queue.Count >= Options.MaximumQueuedMessages
        || (Options.MaximumQueuedBytes > 0 && _queuedBytes + size > Options.MaximumQueuedBytes);

    /// <summary>Whether the queue is past what held-back publishers may add beyond the limits (twice them).</summary>
    private bool IsQueueOverfull(long size) =>
        Queue.Count >= 2L * Options.MaximumQueuedMessages
        || (Options.MaximumQueuedBytes > 0 && _queuedBytes + size > 2 * Options.MaximumQueuedBytes);

    /// <summary>
    /// Whether a full queue has room again for publishers held back by it: below seven eighths of each limit, so
    /// that they resume together once a batch has drained rather than one by one.
    /// </summary>
    private bool HasRoomAgain() =>
        (_queue?.Count ?? 0) <= Options.MaximumQueuedMessages - (Options.MaximumQueuedMessages / 8)
        && (Options.MaximumQueuedBytes <= 0 || _queuedBytes <= Options.MaximumQueuedBytes - (Options.MaximumQueuedBytes / 8));

    /// <summary>Lets every publisher waiting for room go on.</summary>
    private void ReleaseWaitingPublishers()
    {
        _stalled = false;
        _roomTimer?.Dispose();
        _roomTimer = null;
        if (_room is { } room)
        {
            _room = null;
            room.TrySetResult();
        }
    }

    /// <summary>
    /// Removes the expired messages from a full queue (they would only be dropped when pumped), so that they do not
    /// keep fresh ones out of an offline session. Returns how many were removed. The queue is walked only once its
    /// earliest expiry has passed, so a queue that stays full costs O(1) per refused message, not O(queue).
    /// </summary>
    private int DropExpired()
    {
        var now = _services.Time.GetUtcNow();
        if (now < _queuedExpiryNotBefore)
        {
            return 0;
        }

        var count = Queue.Count;
        var removed = 0;
        var earliest = DateTimeOffset.MaxValue;
        for (var i = 0; i < count; i++)
        {
            var pending = DequeuePending();
            if (pending.Message.IsExpired(now))
            {
                _services.Metrics.MessageDropped(DropReasons.Expired);
                pending.Message.Release();
                removed++;
            }
            else
            {
                EnqueuePending(pending);
                if (pending.Message.ExpiresAt is { } at && at < earliest)
                {
                    earliest = at;
                }
            }
        }

        _queuedExpiryNotBefore = earliest;
        return removed;
    }

    /// <summary>
    /// Takes the messages that reached the session through a shared subscription and were not acknowledged, so that
    /// another member of the group gets them.
    /// </summary>
    private List<PendingDelivery>? TakeSharedDeliveries()
    {
        List<PendingDelivery>? taken = null;
        if (_inflight is not null)
        {
            for (var i = _inflight.Count - 1; i >= 0; i--)
            {
                var inflight = _inflight[i];
                if (inflight.Group is not null && !inflight.Released)
                {
                    (taken ??= []).Insert(0, new PendingDelivery(inflight.Message, inflight.QoS, inflight.Retain, inflight.SubscriptionIds, inflight.Group));
                    _inflight.RemoveAt(i);
                }
            }
        }

        if (_queue is { Count: > 0 })
        {
            var count = _queue.Count;
            for (var i = 0; i < count; i++)
            {
                var pending = DequeuePending();
                if (pending.Group is not null)
                {
                    (taken ??= []).Add(pending);
                }
                else
                {
                    EnqueuePending(pending);
                }
            }
        }

        return taken;
    }

    /// <summary>The next packet identifier not in flight.</summary>
    private ushort NextPacketId()
    {
        for (var attempt = 0; attempt < 65_536; attempt++)
        {
            _lastPacketId = (ushort)(_lastPacketId == ushort.MaxValue ? 1 : _lastPacketId + 1);
            if (FindInflight(_lastPacketId) < 0)
            {
                return _lastPacketId;
            }
        }

        throw new InvalidOperationException("No packet identifier is free.");
    }

    /// <summary>The index of the inflight message with <paramref name="packetId"/>, or -1.</summary>
    private int FindInflight(ushort packetId)
    {
        if (_inflight is not { } inflight)
        {
            return -1;
        }

        for (var i = 0; i < inflight.Count; i++)
        {
            if (inflight[i].PacketId == packetId)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>Copies the session for a state store (see <see cref="TrySnapshot"/>).</summary>
    private StoredSession ToStored(List<BrokerMessage> held)
    {
        var subscriptions = new StoredSubscription[_subscriptions?.Count ?? 0];
        if (_subscriptions is not null)
        {
            var i = 0;
            foreach (var subscription in _subscriptions.Values)
            {
                subscriptions[i++] = new StoredSubscription(subscription.RawFilter, subscription.QoS, subscription.NoLocal, subscription.RetainAsPublished, subscription.RetainHandling, subscription.SubscriptionId);
            }
        }

        var deliveries = new List<StoredDelivery>((_inflight?.Count ?? 0) + (_queue?.Count ?? 0));
        if (_inflight is not null)
        {
            foreach (var inflight in _inflight)
            {
                inflight.Message.AddReference();
                held.Add(inflight.Message);
                deliveries.Add(new StoredDelivery(BrokerPersistence.ToStored(inflight.Message), inflight.QoS, inflight.Retain, inflight.SubscriptionIds, inflight.PacketId, inflight.Released));
            }
        }

        if (_queue is not null)
        {
            foreach (var pending in _queue)
            {
                pending.Message.AddReference();
                held.Add(pending.Message);
                deliveries.Add(new StoredDelivery(BrokerPersistence.ToStored(pending.Message), pending.QoS, pending.Retain, pending.SubscriptionIds, PacketId: 0, Released: false));
            }
        }

        return new StoredSession
        {
            Namespace = Namespace,
            ClientId = ClientId,
            Owner = Owner,
            ExpiryInterval = _expiryInterval,
            Subscriptions = subscriptions,
            Deliveries = deliveries,
            IncomingQoS2 = _incomingQoS2 is { Count: > 0 } incoming ? [.. incoming] : [],
        };
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
