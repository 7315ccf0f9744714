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
/// The state the broker keeps for one client id in one namespace: subscriptions, messages in flight and
/// queued, QoS 2 packet ids received and not yet released, the will, and expiry. It outlives connections when the
/// session is persistent. All mutable state is guarded by <see cref="Gate"/>; deliveries arrive from other
/// connections' threads.
/// </summary>
public sealed class MqttSession
{
    internal readonly Lock Gate = new();

    // The collections are created on first use: most device sessions never subscribe, never receive QoS 2 and
    // never queue, and an idle connection should cost as little as possible.
    private Dictionary<string, Subscription>? _subscriptions;
    private List<InflightMessage>? _inflight;
    private Queue<PendingDelivery>? _queue;
    private HashSet<ushort>? _incomingQoS2;
    private ushort _lastPacketId;

    internal Dictionary<string, Subscription> Subscriptions => _subscriptions ??= new(StringComparer.Ordinal);
    internal List<InflightMessage> Inflight => _inflight ??= [];
    internal Queue<PendingDelivery> Queue => _queue ??= new();

    /// <summary>
    /// No queued message expires before this time (a lower bound, kept by <see cref="EnqueuePending"/> and the
    /// broker's scan of a full queue). A full queue is scanned for expired messages only once this has passed:
    /// scanning on every message that finds it full cost a whole core at 10k msg/s with a lagging subscriber.
    /// </summary>
    internal DateTimeOffset QueuedExpiryNotBefore { get; set; } = DateTimeOffset.MinValue;

    /// <summary>Bytes (topic and payload) of the messages in <see cref="Queue"/>. Caller holds <see cref="Gate"/>.</summary>
    internal long QueuedBytes { get; private set; }

    /// <summary>
    /// True once a publisher waited the whole <c>FullQueuePublisherWait</c> for room in this session's full queue
    /// and none came: the subscriber is not reading. Publishers are no longer held for it, and what overflows is
    /// dropped, until its queue has room again.
    /// </summary>
    internal bool Stalled { get; set; }

    /// <summary>Completed when the full queue has room again; publishers held back by it wait on this. Caller holds <see cref="Gate"/>.</summary>
    internal TaskCompletionSource? Room { get; set; }

    /// <summary>What a queued message counts against a byte limit: its topic and payload.</summary>
    internal static long SizeOf(BrokerMessage message) => message.Topic.Length + message.Payload.Length;

    /// <summary>Queues a delivery for later. Caller holds <see cref="Gate"/>.</summary>
    internal void EnqueuePending(PendingDelivery pending)
    {
        Queue.Enqueue(pending);
        QueuedBytes += SizeOf(pending.Message);
        if (pending.Message.ExpiresAt is { } at && at < QueuedExpiryNotBefore)
        {
            QueuedExpiryNotBefore = at;
        }
    }

    /// <summary>Takes the oldest queued delivery. Caller holds <see cref="Gate"/> and knows the queue is not empty.</summary>
    internal PendingDelivery DequeuePending()
    {
        var pending = Queue.Dequeue();
        QueuedBytes -= SizeOf(pending.Message);
        return pending;
    }

    /// <summary>Lets every publisher waiting for room go on. Caller holds <see cref="Gate"/>.</summary>
    internal void ReleaseWaitingPublishers()
    {
        Stalled = false;
        if (Room is { } room)
        {
            Room = null;
            room.TrySetResult();
        }
    }
    internal HashSet<ushort> IncomingQoS2 => _incomingQoS2 ??= [];

    public MqttSession(string ns, string clientId, string owner = "")
    {
        Namespace = ns;
        ClientId = clientId;
        Owner = owner;
    }

    public string Namespace { get; }
    public string ClientId { get; }

    /// <summary>The identity that owns the session (<see cref="ClientIdentity.SessionOwner"/>), or "" for none.</summary>
    public string Owner { get; }

    /// <summary>The connection that owns the session now, or null while the client is away.</summary>
    internal MqttChannel? Channel { get; set; }

    /// <summary>Seconds the session lives after its connection closes; uint.MaxValue is never.</summary>
    internal uint ExpiryInterval { get; set; }

    internal DateTimeOffset? DisconnectedAt { get; set; }

    /// <summary>A will waiting for its Will Delay Interval, or null.</summary>
    internal BrokerMessage? PendingWill { get; set; }

    internal DateTimeOffset? WillDueAt { get; set; }

    /// <summary>True once the session was discarded; late deliveries to it are dropped.</summary>
    internal bool Ended { get; set; }

    /// <summary>
    /// Whether anything a state store keeps (subscriptions, queued and unacknowledged messages, expiry) changed
    /// since the last snapshot took it. A plain flag under the gate the change already holds, so that the hot
    /// path pays one store for it; the snapshot clears it when it copies the session. New sessions start changed.
    /// </summary>
    internal bool StateChanged { get; set; } = true;

    public int SubscriptionCount
    {
        get
        {
            lock (Gate)
            {
                return Subscriptions.Count;
            }
        }
    }

    public int QueuedCount
    {
        get
        {
            lock (Gate)
            {
                return Queue.Count;
            }
        }
    }

    public int InflightCount
    {
        get
        {
            lock (Gate)
            {
                return Inflight.Count;
            }
        }
    }

    /// <summary>The next packet identifier not in flight. Caller holds the gate.</summary>
    internal ushort NextPacketId()
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

    /// <summary>The index of the inflight message with <paramref name="packetId"/>, or -1. Caller holds the gate.</summary>
    internal int FindInflight(ushort packetId)
    {
        var inflight = Inflight;
        for (var i = 0; i < inflight.Count; i++)
        {
            if (inflight[i].PacketId == packetId)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>
    /// Copies the session for a state store: subscriptions, unacknowledged then queued deliveries, and incoming
    /// QoS 2 packet ids. Payloads are not copied: each message gets a reference, added to <paramref name="held"/>,
    /// that the caller releases once the store is done. Caller holds the gate.
    /// </summary>
    internal StoredSession ToStored(List<BrokerMessage> held)
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
                deliveries.Add(new StoredDelivery(MqttBroker.ToStored(inflight.Message), inflight.QoS, inflight.Retain, inflight.SubscriptionIds, inflight.PacketId, inflight.Released));
            }
        }

        if (_queue is not null)
        {
            foreach (var pending in _queue)
            {
                pending.Message.AddReference();
                held.Add(pending.Message);
                deliveries.Add(new StoredDelivery(MqttBroker.ToStored(pending.Message), pending.QoS, pending.Retain, pending.SubscriptionIds, PacketId: 0, Released: false));
            }
        }

        return new StoredSession
        {
            Namespace = Namespace,
            ClientId = ClientId,
            Owner = Owner,
            ExpiryInterval = ExpiryInterval,
            Subscriptions = subscriptions,
            Deliveries = deliveries,
            IncomingQoS2 = _incomingQoS2 is { Count: > 0 } incoming ? [.. incoming] : [],
        };
    }

    /// <summary>Releases every message the session holds. Caller holds the gate.</summary>
    internal void ReleaseAll()
    {
        foreach (var inflight in Inflight)
        {
            inflight.Message.Release();
        }

        Inflight.Clear();
        while (Queue.TryDequeue(out var pending))
        {
            pending.Message.Release();
        }

        QueuedBytes = 0;
        ReleaseWaitingPublishers();

        IncomingQoS2.Clear();
        PendingWill?.Release();
        PendingWill = null;
        WillDueAt = null;
    }
}
