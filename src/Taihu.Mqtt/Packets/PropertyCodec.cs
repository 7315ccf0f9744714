using System.Buffers.Binary;
using System.Text;

namespace Taihu.Mqtt.Packets;

/// <summary>
/// Reads and writes the property block of MQTT 5.0 packets. Each property identifier may appear only in the
/// packet types the spec lists for it (an identifier that is invalid for the packet is a malformed packet), and
/// at most once unless it is a User Property or a Subscription Identifier in PUBLISH (a repeat is a protocol error).
/// </summary>
public static class PropertyCodec
{
    /// <summary>The pseudo packet type used for the will properties of CONNECT.</summary>
    internal const int WillContext = 16;

    private const int Connect = 1 << (int)PacketType.Connect;
    private const int ConnAck = 1 << (int)PacketType.ConnAck;
    private const int Publish = 1 << (int)PacketType.Publish;
    private const int PubAcks = (1 << (int)PacketType.PubAck) | (1 << (int)PacketType.PubRec) | (1 << (int)PacketType.PubRel) | (1 << (int)PacketType.PubComp);
    private const int Subscribe = 1 << (int)PacketType.Subscribe;
    private const int SubAck = 1 << (int)PacketType.SubAck;
    private const int Unsubscribe = 1 << (int)PacketType.Unsubscribe;
    private const int UnsubAck = 1 << (int)PacketType.UnsubAck;
    private const int Disconnect = 1 << (int)PacketType.Disconnect;
    private const int Auth = 1 << (int)PacketType.Auth;
    private const int Will = 1 << WillContext;
    private const int All = Connect | ConnAck | Publish | PubAcks | Subscribe | SubAck | Unsubscribe | UnsubAck | Disconnect | Auth | Will;

    private static int AllowedIn(PropertyId id) => id switch
    {
        PropertyId.PayloadFormatIndicator or PropertyId.MessageExpiryInterval or PropertyId.ContentType
            or PropertyId.ResponseTopic or PropertyId.CorrelationData => Publish | Will,
        PropertyId.SubscriptionIdentifier => Publish | Subscribe,
        PropertyId.SessionExpiryInterval => Connect | ConnAck | Disconnect,
        PropertyId.AssignedClientIdentifier or PropertyId.ServerKeepAlive or PropertyId.ResponseInformation
            or PropertyId.MaximumQoS or PropertyId.RetainAvailable or PropertyId.WildcardSubscriptionAvailable
            or PropertyId.SubscriptionIdentifierAvailable or PropertyId.SharedSubscriptionAvailable => ConnAck,
        PropertyId.AuthenticationMethod or PropertyId.AuthenticationData => Connect | ConnAck | Auth,
        PropertyId.RequestProblemInformation or PropertyId.RequestResponseInformation => Connect,
        PropertyId.WillDelayInterval => Will,
        PropertyId.ServerReference => ConnAck | Disconnect,
        PropertyId.ReasonString => ConnAck | PubAcks | SubAck | UnsubAck | Disconnect | Auth,
        PropertyId.ReceiveMaximum or PropertyId.TopicAliasMaximum or PropertyId.MaximumPacketSize => Connect | ConnAck,
        PropertyId.TopicAlias => Publish,
        PropertyId.UserProperty => All,
        _ => 0,
    };

    /// <summary>
    /// Reads the property length and the properties that follow. Returns null when the block is empty, so that
    /// packets without properties allocate nothing for them.
    /// </summary>
    internal static MqttProperties? Read(ref BodyReader reader, int context)
    {
        var length = reader.ReadVariableByteInteger();
        if (length == 0)
        {
            return null;
        }

        if (length > reader.Remaining)
        {
            ThrowHelper.Malformed("The property length runs past the end of the packet.");
        }

        var block = new BodyReader(reader.ReadSpan((int)length));
        var properties = new MqttProperties();
        while (!block.End)
        {
            var rawId = block.ReadVariableByteInteger();
            var id = (PropertyId)rawId;
            if (rawId > 0x7F || (AllowedIn(id) & (1 << context)) == 0)
            {
                ThrowHelper.Malformed($"Property 0x{rawId:X2} is not valid in this packet.");
            }

            ReadOne(ref block, id, properties, context);
        }

        return properties;
    }

    private static void ReadOne(ref BodyReader block, PropertyId id, MqttProperties p, int context)
    {
        switch (id)
        {
            case PropertyId.PayloadFormatIndicator:
                Once(p.PayloadFormatIndicator.HasValue, id);
                p.PayloadFormatIndicator = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.MessageExpiryInterval:
                Once(p.MessageExpiryInterval.HasValue, id);
                p.MessageExpiryInterval = block.ReadUInt32();
                break;
            case PropertyId.ContentType:
                Once(p.ContentType is not null, id);
                p.ContentType = block.ReadString();
                break;
            case PropertyId.ResponseTopic:
                Once(p.ResponseTopic is not null, id);
                p.ResponseTopic = block.ReadString();
                if (!Topics.TopicValidator.IsValidTopicName(p.ResponseTopic))
                {
                    ThrowHelper.ProtocolError("The Response Topic is not a valid topic name.");
                }

                break;
            case PropertyId.CorrelationData:
                Once(p.CorrelationData.HasValue, id);
                p.CorrelationData = block.ReadBinary();
                break;
            case PropertyId.SubscriptionIdentifier:
                var subscriptionId = block.ReadVariableByteInteger();
                if (subscriptionId == 0)
                {
                    ThrowHelper.ProtocolError("A Subscription Identifier of 0 is not allowed.");
                }

                p.SubscriptionIdentifiers ??= new List<uint>(1);
                if (context == (int)PacketType.Subscribe && p.SubscriptionIdentifiers.Count > 0)
                {
                    ThrowHelper.ProtocolError("SUBSCRIBE carries more than one Subscription Identifier.");
                }

                p.SubscriptionIdentifiers.Add(subscriptionId);
                break;
            case PropertyId.SessionExpiryInterval:
                Once(p.SessionExpiryInterval.HasValue, id);
                p.SessionExpiryInterval = block.ReadUInt32();
                break;
            case PropertyId.AssignedClientIdentifier:
                Once(p.AssignedClientIdentifier is not null, id);
                p.AssignedClientIdentifier = block.ReadString();
                break;
            case PropertyId.ServerKeepAlive:
                Once(p.ServerKeepAlive.HasValue, id);
                p.ServerKeepAlive = block.ReadUInt16();
                break;
            case PropertyId.AuthenticationMethod:
                Once(p.AuthenticationMethod is not null, id);
                p.AuthenticationMethod = block.ReadString();
                break;
            case PropertyId.AuthenticationData:
                Once(p.AuthenticationData.HasValue, id);
                p.AuthenticationData = block.ReadBinary();
                break;
            case PropertyId.RequestProblemInformation:
                Once(p.RequestProblemInformation.HasValue, id);
                p.RequestProblemInformation = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.WillDelayInterval:
                Once(p.WillDelayInterval.HasValue, id);
                p.WillDelayInterval = block.ReadUInt32();
                break;
            case PropertyId.RequestResponseInformation:
                Once(p.RequestResponseInformation.HasValue, id);
                p.RequestResponseInformation = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.ResponseInformation:
                Once(p.ResponseInformation is not null, id);
                p.ResponseInformation = block.ReadString();
                break;
            case PropertyId.ServerReference:
                Once(p.ServerReference is not null, id);
                p.ServerReference = block.ReadString();
                break;
            case PropertyId.ReasonString:
                Once(p.ReasonString is not null, id);
                p.ReasonString = block.ReadString();
                break;
            case PropertyId.ReceiveMaximum:
                Once(p.ReceiveMaximum.HasValue, id);
                p.ReceiveMaximum = block.ReadUInt16();
                if (p.ReceiveMaximum == 0)
                {
                    ThrowHelper.ProtocolError("A Receive Maximum of 0 is not allowed.");
                }

                break;
            case PropertyId.TopicAliasMaximum:
                Once(p.TopicAliasMaximum.HasValue, id);
                p.TopicAliasMaximum = block.ReadUInt16();
                break;
            case PropertyId.TopicAlias:
                Once(p.TopicAlias.HasValue, id);
                p.TopicAlias = block.ReadUInt16();
                break;
            case PropertyId.MaximumQoS:
                Once(p.MaximumQoS.HasValue, id);
                p.MaximumQoS = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.RetainAvailable:
                Once(p.RetainAvailable.HasValue, id);
                p.RetainAvailable = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.UserProperty:
                var name = block.ReadString();
                var value = block.ReadString();
                p.UserProperties ??= new List<UserProperty>(2);
                p.UserProperties.Add(new UserProperty(name, value));
                break;
            case PropertyId.MaximumPacketSize:
                Once(p.MaximumPacketSize.HasValue, id);
                p.MaximumPacketSize = block.ReadUInt32();
                if (p.MaximumPacketSize == 0)
                {
                    ThrowHelper.ProtocolError("A Maximum Packet Size of 0 is not allowed.");
                }

                break;
            case PropertyId.WildcardSubscriptionAvailable:
                Once(p.WildcardSubscriptionAvailable.HasValue, id);
                p.WildcardSubscriptionAvailable = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.SubscriptionIdentifierAvailable:
                Once(p.SubscriptionIdentifierAvailable.HasValue, id);
                p.SubscriptionIdentifierAvailable = ZeroOrOne(block.ReadByte(), id);
                break;
            case PropertyId.SharedSubscriptionAvailable:
                Once(p.SharedSubscriptionAvailable.HasValue, id);
                p.SharedSubscriptionAvailable = ZeroOrOne(block.ReadByte(), id);
                break;
            default:
                ThrowHelper.Malformed($"Unknown property 0x{(byte)id:X2}.");
                break;
        }
    }

    private static void Once(bool alreadySeen, PropertyId id)
    {
        if (alreadySeen)
        {
            ThrowHelper.ProtocolError($"Property {id} appears more than once.");
        }
    }

    private static byte ZeroOrOne(byte value, PropertyId id)
    {
        if (value > 1)
        {
            ThrowHelper.ProtocolError($"Property {id} must be 0 or 1, not {value}.");
        }

        return value;
    }

    /// <summary>
    /// The properties an application message carries to its subscribers (Payload Format Indicator, Message Expiry
    /// Interval, Content Type, Response Topic, Correlation Data, User Properties) as one self-contained block, as a
    /// 5.0 PUBLISH carries them (the length, then the properties): how a store keeps a message's properties outside
    /// the broker. Others (a will's Will Delay Interval, a publisher's Topic Alias) are left out. Null when there
    /// are none. Read back with <see cref="DecodeMessageProperties"/>.
    /// </summary>
    public static byte[]? EncodeMessageProperties(MqttProperties? source)
    {
        if (source is null)
        {
            return null;
        }

        var properties = new MqttProperties
        {
            PayloadFormatIndicator = source.PayloadFormatIndicator,
            MessageExpiryInterval = source.MessageExpiryInterval,
            ContentType = source.ContentType,
            ResponseTopic = source.ResponseTopic,
            CorrelationData = source.CorrelationData,
            UserProperties = source.UserProperties,
        };
        var length = GetLength(properties);
        if (length == 0)
        {
            return null;
        }

        var block = new byte[VariableByteInteger.GetLength((uint)length) + length];
        var writer = new SpanWriter(block);
        writer.WriteVariableByteInteger((uint)length);
        Write(ref writer, properties);
        return block;
    }

    /// <summary>
    /// Reads a block written by <see cref="EncodeMessageProperties"/>; null for an empty block. Only properties a
    /// PUBLISH may carry are accepted; anything else is an <see cref="MqttProtocolException"/>.
    /// </summary>
    public static MqttProperties? DecodeMessageProperties(ReadOnlySpan<byte> block)
    {
        if (block.IsEmpty)
        {
            return null;
        }

        var reader = new BodyReader(block);
        var properties = Read(ref reader, (int)PacketType.Publish);
        if (!reader.End)
        {
            ThrowHelper.Malformed("Bytes follow the property block.");
        }

        return properties;
    }

    /// <summary>The length of the property block, without its own length prefix.</summary>
    public static int GetLength(MqttProperties? p)
    {
        if (p is null)
        {
            return 0;
        }

        var length = 0;
        if (p.PayloadFormatIndicator.HasValue) length += 2;
        if (p.MessageExpiryInterval.HasValue) length += 5;
        if (p.ContentType is not null) length += 3 + Encoding.UTF8.GetByteCount(p.ContentType);
        if (p.ResponseTopic is not null) length += 3 + Encoding.UTF8.GetByteCount(p.ResponseTopic);
        if (p.CorrelationData.HasValue) length += 3 + p.CorrelationData.Value.Length;
        if (p.SubscriptionIdentifiers is { } ids)
        {
            foreach (var id in ids)
            {
                length += 1 + VariableByteInteger.GetLength(id);
            }
        }

        if (p.SessionExpiryInterval.HasValue) length += 5;
        if (p.AssignedClientIdentifier is not null) length += 3 + Encoding.UTF8.GetByteCount(p.AssignedClientIdentifier);
        if (p.ServerKeepAlive.HasValue) length += 3;
        if (p.AuthenticationMethod is not null) length += 3 + Encoding.UTF8.GetByteCount(p.AuthenticationMethod);
        if (p.AuthenticationData.HasValue) length += 3 + p.AuthenticationData.Value.Length;
        if (p.RequestProblemInformation.HasValue) length += 2;
        if (p.WillDelayInterval.HasValue) length += 5;
        if (p.RequestResponseInformation.HasValue) length += 2;
        if (p.ResponseInformation is not null) length += 3 + Encoding.UTF8.GetByteCount(p.ResponseInformation);
        if (p.ServerReference is not null) length += 3 + Encoding.UTF8.GetByteCount(p.ServerReference);
        if (p.ReasonString is not null) length += 3 + Encoding.UTF8.GetByteCount(p.ReasonString);
        if (p.ReceiveMaximum.HasValue) length += 3;
        if (p.TopicAliasMaximum.HasValue) length += 3;
        if (p.TopicAlias.HasValue) length += 3;
        if (p.MaximumQoS.HasValue) length += 2;
        if (p.RetainAvailable.HasValue) length += 2;
        if (p.UserProperties is { } users)
        {
            foreach (var user in users)
            {
                length += 5 + Encoding.UTF8.GetByteCount(user.Name) + Encoding.UTF8.GetByteCount(user.Value);
            }
        }

        if (p.MaximumPacketSize.HasValue) length += 5;
        if (p.WildcardSubscriptionAvailable.HasValue) length += 2;
        if (p.SubscriptionIdentifierAvailable.HasValue) length += 2;
        if (p.SharedSubscriptionAvailable.HasValue) length += 2;
        return length;
    }

    /// <summary>Writes the properties (not the length prefix) and returns the bytes written.</summary>
    internal static void Write(ref SpanWriter w, MqttProperties? p)
    {
        if (p is null)
        {
            return;
        }

        if (p.PayloadFormatIndicator is { } pfi) { w.WriteByte((byte)PropertyId.PayloadFormatIndicator); w.WriteByte(pfi); }
        if (p.MessageExpiryInterval is { } mei) { w.WriteByte((byte)PropertyId.MessageExpiryInterval); w.WriteUInt32(mei); }
        if (p.ContentType is { } ct) { w.WriteByte((byte)PropertyId.ContentType); w.WriteString(ct); }
        if (p.ResponseTopic is { } rt) { w.WriteByte((byte)PropertyId.ResponseTopic); w.WriteString(rt); }
        if (p.CorrelationData is { } cd) { w.WriteByte((byte)PropertyId.CorrelationData); w.WriteBinary(cd.Span); }
        if (p.SubscriptionIdentifiers is { } ids)
        {
            foreach (var id in ids)
            {
                w.WriteByte((byte)PropertyId.SubscriptionIdentifier);
                w.WriteVariableByteInteger(id);
            }
        }

        if (p.SessionExpiryInterval is { } sei) { w.WriteByte((byte)PropertyId.SessionExpiryInterval); w.WriteUInt32(sei); }
        if (p.AssignedClientIdentifier is { } aci) { w.WriteByte((byte)PropertyId.AssignedClientIdentifier); w.WriteString(aci); }
        if (p.ServerKeepAlive is { } ska) { w.WriteByte((byte)PropertyId.ServerKeepAlive); w.WriteUInt16(ska); }
        if (p.AuthenticationMethod is { } am) { w.WriteByte((byte)PropertyId.AuthenticationMethod); w.WriteString(am); }
        if (p.AuthenticationData is { } ad) { w.WriteByte((byte)PropertyId.AuthenticationData); w.WriteBinary(ad.Span); }
        if (p.RequestProblemInformation is { } rpi) { w.WriteByte((byte)PropertyId.RequestProblemInformation); w.WriteByte(rpi); }
        if (p.WillDelayInterval is { } wdi) { w.WriteByte((byte)PropertyId.WillDelayInterval); w.WriteUInt32(wdi); }
        if (p.RequestResponseInformation is { } rri) { w.WriteByte((byte)PropertyId.RequestResponseInformation); w.WriteByte(rri); }
        if (p.ResponseInformation is { } ri) { w.WriteByte((byte)PropertyId.ResponseInformation); w.WriteString(ri); }
        if (p.ServerReference is { } sr) { w.WriteByte((byte)PropertyId.ServerReference); w.WriteString(sr); }
        if (p.ReasonString is { } rs) { w.WriteByte((byte)PropertyId.ReasonString); w.WriteString(rs); }
        if (p.ReceiveMaximum is { } rm) { w.WriteByte((byte)PropertyId.ReceiveMaximum); w.WriteUInt16(rm); }
        if (p.TopicAliasMaximum is { } tam) { w.WriteByte((byte)PropertyId.TopicAliasMaximum); w.WriteUInt16(tam); }
        if (p.TopicAlias is { } ta) { w.WriteByte((byte)PropertyId.TopicAlias); w.WriteUInt16(ta); }
        if (p.MaximumQoS is { } mq) { w.WriteByte((byte)PropertyId.MaximumQoS); w.WriteByte(mq); }
        if (p.RetainAvailable is { } ra) { w.WriteByte((byte)PropertyId.RetainAvailable); w.WriteByte(ra); }
        if (p.UserProperties is { } users)
        {
            foreach (var user in users)
            {
                w.WriteByte((byte)PropertyId.UserProperty);
                w.WriteString(user.Name);
                w.WriteString(user.Value);
            }
        }

        if (p.MaximumPacketSize is { } mps) { w.WriteByte((byte)PropertyId.MaximumPacketSize); w.WriteUInt32(mps); }
        if (p.WildcardSubscriptionAvailable is { } wsa) { w.WriteByte((byte)PropertyId.WildcardSubscriptionAvailable); w.WriteByte(wsa); }
        if (p.SubscriptionIdentifierAvailable is { } sia) { w.WriteByte((byte)PropertyId.SubscriptionIdentifierAvailable); w.WriteByte(sia); }
        if (p.SharedSubscriptionAvailable is { } ssa) { w.WriteByte((byte)PropertyId.SharedSubscriptionAvailable); w.WriteByte(ssa); }
    }
}

/// <summary>The Variable Byte Integer of the spec (1 to 4 bytes, 7 bits each, up to 268,435,455).</summary>
public static class VariableByteInteger
{
    /// <summary>The largest value four bytes can hold.</summary>
    public const int MaxValue = 268_435_455;

    public static int GetLength(uint value) => value switch
    {
        < 128 => 1,
        < 16_384 => 2,
        < 2_097_152 => 3,
        _ => 4,
    };

    public static int Write(Span<byte> destination, uint value)
    {
        var i = 0;
        do
        {
            var b = (byte)(value & 0x7F);
            value >>= 7;
            if (value > 0)
            {
                b |= 0x80;
            }

            destination[i++] = b;
        }
        while (value > 0);
        return i;
    }
}

/// <summary>Writes big-endian fields into a span sized beforehand.</summary>
internal ref struct SpanWriter
{
    private readonly Span<byte> _span;
    private int _position;

    public SpanWriter(Span<byte> span)
    {
        _span = span;
        _position = 0;
    }

    public readonly int Position => _position;

    public void WriteByte(byte value) => _span[_position++] = value;

    public void WriteUInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(_span.Slice(_position), value);
        _position += 2;
    }

    public void WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(_span.Slice(_position), value);
        _position += 4;
    }

    public void WriteVariableByteInteger(uint value) => _position += VariableByteInteger.Write(_span.Slice(_position), value);

    public void WriteString(string value)
    {
        var length = Encoding.UTF8.GetBytes(value, _span.Slice(_position + 2));
        if (length > ushort.MaxValue)
        {
            throw new ArgumentException($"A string field is {length} bytes; MQTT allows at most 65535.", nameof(value));
        }

        BinaryPrimitives.WriteUInt16BigEndian(_span.Slice(_position), (ushort)length);
        _position += 2 + length;
    }

    public void WriteBinary(ReadOnlySpan<byte> value)
    {
        if (value.Length > ushort.MaxValue)
        {
            throw new ArgumentException($"A binary field is {value.Length} bytes; MQTT allows at most 65535.", nameof(value));
        }

        BinaryPrimitives.WriteUInt16BigEndian(_span.Slice(_position), (ushort)value.Length);
        value.CopyTo(_span.Slice(_position + 2));
        _position += 2 + value.Length;
    }

    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        value.CopyTo(_span.Slice(_position));
        _position += value.Length;
    }
}
