using Taihu.Mqtt.Buffers;

namespace Taihu.Mqtt.Packets;

/// <summary>A decoded MQTT control packet.</summary>
public abstract class MqttPacket
{
    public abstract PacketType Type { get; }
}

/// <summary>The will message carried in CONNECT.</summary>
public sealed class WillMessage
{
    public string Topic { get; set; } = "";
    public ReadOnlyMemory<byte> Payload { get; set; }
    public QoS QoS { get; set; }
    public bool Retain { get; set; }
    /// <summary>Will properties (5.0), or null.</summary>
    public MqttProperties? Properties { get; set; }
}

public sealed class ConnectPacket : MqttPacket
{
    public override PacketType Type => PacketType.Connect;
    public ProtocolVersion ProtocolVersion { get; set; } = ProtocolVersion.V311;
    /// <summary>Clean Session in 3.1.1, Clean Start in 5.0.</summary>
    public bool CleanStart { get; set; } = true;
    public ushort KeepAlive { get; set; }
    public string ClientId { get; set; } = "";
    public string? UserName { get; set; }
    public ReadOnlyMemory<byte>? Password { get; set; }
    public WillMessage? Will { get; set; }
    public MqttProperties? Properties { get; set; }
}

public sealed class ConnAckPacket : MqttPacket
{
    public override PacketType Type => PacketType.ConnAck;
    public bool SessionPresent { get; set; }
    /// <summary>The 5.0 reason code; written as the closest 3.1.1 return code to older clients.</summary>
    public ReasonCode ReasonCode { get; set; }
    public MqttProperties? Properties { get; set; }
}

public sealed class PublishPacket : MqttPacket
{
    public override PacketType Type => PacketType.Publish;
    public string Topic { get; set; } = "";
    public ReadOnlyMemory<byte> Payload { get; set; }
    /// <summary>The pooled buffer that owns <see cref="Payload"/> when the packet was decoded, or null.</summary>
    public PooledBuffer? PayloadOwner { get; set; }
    public QoS QoS { get; set; }
    public bool Retain { get; set; }
    public bool Dup { get; set; }
    /// <summary>Packet identifier; 0 for QoS 0.</summary>
    public ushort PacketId { get; set; }
    public MqttProperties? Properties { get; set; }
}

/// <summary>PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.</summary>
public sealed class PublishAckPacket : MqttPacket
{
    private PacketType _type;

    public PublishAckPacket(PacketType type, ushort packetId, ReasonCode reasonCode = ReasonCode.Success)
    {
        Reset(type, packetId, reasonCode);
    }

    /// <summary>Makes this object a fresh acknowledgement (the reader reuses one per connection).</summary>
    internal void Reset(PacketType type, ushort packetId, ReasonCode reasonCode = ReasonCode.Success)
    {
        if (type is not (PacketType.PubAck or PacketType.PubRec or PacketType.PubRel or PacketType.PubComp))
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "Only PUBACK, PUBREC, PUBREL and PUBCOMP have this shape.");
        }

        _type = type;
        PacketId = packetId;
        ReasonCode = reasonCode;
        Properties = null;
    }

    public override PacketType Type => _type;
    public ushort PacketId { get; set; }
    public ReasonCode ReasonCode { get; set; }
    public MqttProperties? Properties { get; set; }
}

/// <summary>Retain Handling subscription option (5.0).</summary>
public enum RetainHandling : byte
{
    /// <summary>Send retained messages at the time of the subscribe.</summary>
    SendAtSubscribe = 0,
    /// <summary>Send retained messages only if the subscription did not exist.</summary>
    SendIfNewSubscription = 1,
    /// <summary>Do not send retained messages.</summary>
    DoNotSend = 2,
}

/// <summary>One topic filter of SUBSCRIBE with its options.</summary>
public sealed class TopicSubscription
{
    public string Filter { get; set; } = "";
    public QoS MaximumQoS { get; set; }
    public bool NoLocal { get; set; }
    public bool RetainAsPublished { get; set; }
    public RetainHandling RetainHandling { get; set; }
}

public sealed class SubscribePacket : MqttPacket
{
    public override PacketType Type => PacketType.Subscribe;
    public ushort PacketId { get; set; }
    public List<TopicSubscription> Subscriptions { get; } = [];
    public MqttProperties? Properties { get; set; }
}

public sealed class SubAckPacket : MqttPacket
{
    public override PacketType Type => PacketType.SubAck;
    public ushort PacketId { get; set; }
    /// <summary>One per filter: the granted QoS (0..2) or a failure code (0x80 in 3.1.1).</summary>
    public List<ReasonCode> ReasonCodes { get; } = [];
    public MqttProperties? Properties { get; set; }
}

public sealed class UnsubscribePacket : MqttPacket
{
    public override PacketType Type => PacketType.Unsubscribe;
    public ushort PacketId { get; set; }
    public List<string> Filters { get; } = [];
    public MqttProperties? Properties { get; set; }
}

public sealed class UnsubAckPacket : MqttPacket
{
    public override PacketType Type => PacketType.UnsubAck;
    public ushort PacketId { get; set; }
    /// <summary>One per filter (5.0 only; 3.1.1 UNSUBACK has no payload).</summary>
    public List<ReasonCode> ReasonCodes { get; } = [];
    public MqttProperties? Properties { get; set; }
}

public sealed class PingReqPacket : MqttPacket
{
    public static readonly PingReqPacket Instance = new();
    public override PacketType Type => PacketType.PingReq;
}

public sealed class PingRespPacket : MqttPacket
{
    public static readonly PingRespPacket Instance = new();
    public override PacketType Type => PacketType.PingResp;
}

public sealed class DisconnectPacket : MqttPacket
{
    public override PacketType Type => PacketType.Disconnect;
    public ReasonCode ReasonCode { get; set; }
    public MqttProperties? Properties { get; set; }
}

public sealed class AuthPacket : MqttPacket
{
    public override PacketType Type => PacketType.Auth;
    public ReasonCode ReasonCode { get; set; }
    public MqttProperties? Properties { get; set; }
}
