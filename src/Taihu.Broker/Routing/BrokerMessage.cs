using System.Collections.Concurrent;
using Taihu.Mqtt;
using Taihu.Mqtt.Buffers;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Routing;

/// <summary>
/// An application message inside the broker: what was published, once, shared by every delivery, the retained
/// store and session queues.
/// <para>
/// Reference counted: <see cref="Create"/> returns a message with one reference, its creator's; every holder (a
/// queued delivery, an inflight entry, the retained store, a pending will) takes one with
/// <see cref="AddReference"/> and gives it back with <see cref="Release"/>. When the last goes, the payload
/// buffer is released and the object returns to a pool, so steady traffic allocates no messages.
/// </para>
/// </summary>
public sealed class BrokerMessage
{
    private static readonly BoundedPool<BrokerMessage> s_pool = new(16_384);

    private PooledBuffer? _owner;
    private int _refCount;

    private BrokerMessage()
    {
    }

    /// <summary>
    /// A message with one reference (the caller's). When <paramref name="owner"/> is given, the message takes its
    /// own reference to it; the caller keeps and releases its own.
    /// </summary>
    /// <param name="originOwner">The session owner of the publishing client (<see cref="Extensibility.ClientIdentity.SessionOwner"/>, "" for none): with the client id, it says which session No Local skips.</param>
    public static BrokerMessage Create(string ns, string topic, ReadOnlyMemory<byte> payload, PooledBuffer? owner, QoS qos, bool retain, MqttProperties? properties, DateTimeOffset receivedAt, string? originClientId, string originOwner = "")
    {
        var message = s_pool.TryTake(out var pooled) ? pooled! : new BrokerMessage();
        owner?.Retain();
        message._owner = owner;
        message._refCount = 1;
        message.Namespace = ns;
        message.Topic = topic;
        message.Payload = payload;
        message.QoS = qos;
        message.Retain = retain;
        message.Properties = properties;
        message.OriginClientId = originClientId;
        message.OriginOwner = originOwner;
        message.DeliveryListener = null;
        message.Restamp(receivedAt);
        return message;
    }

    public string Namespace { get; private set; } = "";
    public string Topic { get; private set; } = "";
    public ReadOnlyMemory<byte> Payload { get; private set; }
    public QoS QoS { get; private set; }
    public bool Retain { get; private set; }
    /// <summary>The publisher's properties with the Topic Alias removed (it belongs to the inbound connection).</summary>
    public MqttProperties? Properties { get; private set; }
    public DateTimeOffset ReceivedAt { get; private set; }
    public DateTimeOffset? ExpiresAt { get; private set; }
    /// <summary>The client that published it (for No Local), or null for messages from the server.</summary>
    public string? OriginClientId { get; private set; }
    /// <summary>The session owner of the client that published it ("" for none), for No Local.</summary>
    public string OriginOwner { get; private set; } = "";

    /// <summary>Told of each delivery that reaches a subscriber (server-published messages only), or null.</summary>
    public Extensibility.IDeliveryListener? DeliveryListener { get; internal set; }

    /// <summary>References held now (tests and diagnostics).</summary>
    public int ReferenceCount => Volatile.Read(ref _refCount);

    /// <summary>Takes a reference.</summary>
    public void AddReference()
    {
        if (Interlocked.Increment(ref _refCount) <= 1)
        {
            throw new InvalidOperationException("The message was already released.");
        }
    }

    /// <summary>Gives back a reference; the last one frees the payload and pools the message.</summary>
    public void Release()
    {
        var count = Interlocked.Decrement(ref _refCount);
        if (count > 0)
        {
            return;
        }

        if (count < 0)
        {
            throw new InvalidOperationException("The message was released more often than it was referenced.");
        }

        var owner = _owner;
        _owner = null;
        Payload = default;
        Properties = null;
        Topic = "";
        Namespace = "";
        OriginClientId = null;
        OriginOwner = "";
        DeliveryListener = null;
        owner?.Release();
        s_pool.Return(this);
    }

    /// <summary>
    /// Counts the message as received at <paramref name="at"/>. A delayed will's Message Expiry Interval runs from
    /// when it is published (5.0 section 3.1.3.2.4), not from the disconnect; only its sole holder may do this.
    /// </summary>
    internal void Restamp(DateTimeOffset at)
    {
        ReceivedAt = at;
        ExpiresAt = Properties?.MessageExpiryInterval is { } expiry ? at.AddSeconds(expiry) : null;
    }

    public bool IsExpired(DateTimeOffset now) => ExpiresAt is { } at && now >= at;

    /// <summary>Seconds left of the Message Expiry Interval, rounded up, for the copy sent now.</summary>
    public uint? RemainingExpiry(DateTimeOffset now)
    {
        if (ExpiresAt is not { } at)
        {
            return null;
        }

        var left = (at - now).TotalSeconds;
        return left <= 0 ? 0u : (uint)Math.Ceiling(left);
    }
}
