using Taihu.Mqtt;
using Taihu.Mqtt.Buffers;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Routing;

/// <summary>
/// An application message inside the broker: what was published, once, shared by every delivery, the retained
/// store and session queues. The payload lives in a reference-counted <see cref="PooledBuffer"/>; each holder
/// (a queued delivery, an inflight entry, the retained store) takes a reference and gives it back when done.
/// </summary>
public sealed class BrokerMessage
{
    private readonly PooledBuffer? _owner;

    public BrokerMessage(string ns, string topic, ReadOnlyMemory<byte> payload, PooledBuffer? owner, QoS qos, bool retain, MqttProperties? properties, DateTimeOffset receivedAt, string? originClientId)
    {
        Namespace = ns;
        Topic = topic;
        Payload = payload;
        _owner = owner;
        QoS = qos;
        Retain = retain;
        Properties = properties;
        ReceivedAt = receivedAt;
        OriginClientId = originClientId;
        if (properties?.MessageExpiryInterval is { } expiry)
        {
            ExpiresAt = receivedAt.AddSeconds(expiry);
        }
    }

    public string Namespace { get; }
    public string Topic { get; }
    public ReadOnlyMemory<byte> Payload { get; }
    public QoS QoS { get; }
    public bool Retain { get; }
    /// <summary>The publisher's properties with the Topic Alias removed (it belongs to the inbound connection).</summary>
    public MqttProperties? Properties { get; }
    public DateTimeOffset ReceivedAt { get; }
    public DateTimeOffset? ExpiresAt { get; }
    /// <summary>The client that published it (for No Local), or null for messages from the server.</summary>
    public string? OriginClientId { get; }

    /// <summary>Takes a reference to the payload buffer.</summary>
    public void AddReference() => _owner?.Retain();

    /// <summary>Gives back a reference to the payload buffer.</summary>
    public void Release() => _owner?.Release();

    /// <summary>
    /// The same message as if received at <paramref name="at"/>, taking over this one's payload reference: a delayed
    /// will's Message Expiry Interval runs from when it is published (5.0 section 3.1.3.2.4), not from the disconnect.
    /// </summary>
    public BrokerMessage ReceivedAgainAt(DateTimeOffset at) => new(Namespace, Topic, Payload, _owner, QoS, Retain, Properties, at, OriginClientId);

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
