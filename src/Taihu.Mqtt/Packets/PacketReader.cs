using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Taihu.Mqtt.Buffers;
using Taihu.Mqtt.Topics;

namespace Taihu.Mqtt.Packets;

/// <summary>
/// Decodes MQTT control packets from a <see cref="ReadOnlySequence{T}"/> as it arrives from a pipe.
/// <para>
/// <see cref="TryRead"/> returns false when the buffer does not yet hold a whole packet ("need more bytes") and
/// throws <see cref="MqttProtocolException"/> carrying the reason code when the bytes can never become a valid
/// packet. A frame larger than the allowed maximum is refused as soon as its remaining length is known, before
/// its body arrives. The packet body is parsed from one span: the common single-segment case reads in place; a
/// frame split across segments is copied into a stack or pooled buffer first.
/// </para>
/// </summary>
public sealed class PacketReader
{
    private const int StackCopyLimit = 512;

    /// <summary>The protocol version of the connection; set from CONNECT.</summary>
    public ProtocolVersion Version { get; set; }

    /// <summary>The largest whole packet (fixed header included) accepted; larger ones are refused with 0x95.</summary>
    public int MaximumPacketSize { get; set; } = VariableByteInteger.MaxValue + 5;

    /// <summary>Optional cache that turns repeated PUBLISH topics into strings without allocating.</summary>
    public TopicNameCache? TopicCache { get; set; }

    /// <summary>
    /// When set, PUBACK, PUBREC, PUBREL and PUBCOMP are decoded into one object reused for every acknowledgement:
    /// for a caller that handles each packet before reading the next and keeps none of them (the broker).
    /// </summary>
    public bool ReuseAcknowledgements { get; set; }

    /// <summary>
    /// Set by a server for a new connection: the next packet must be CONNECT, no larger than
    /// <see cref="MaximumConnectPacketSize"/>. Both are judged from the fixed header, before the body is buffered:
    /// any other packet type is refused from its first byte, and a remaining length is refused as soon as the bytes
    /// read of it already make it too large, so one silent socket cannot make the server hold a large frame before
    /// it has even said who it is. Cleared once a packet has been read.
    /// </summary>
    public bool AwaitingConnect { get; set; }

    /// <summary>
    /// The largest CONNECT (fixed header included) accepted while <see cref="AwaitingConnect"/>; larger ones are
    /// refused with 0x95 from the fixed header alone. <see cref="MaximumPacketSize"/> still applies when smaller.
    /// </summary>
    public int MaximumConnectPacketSize { get; set; } = VariableByteInteger.MaxValue + 5;

    private PublishAckPacket? _reusableAck;

    /// <summary>
    /// Reads the fixed header. False when it is not complete yet. Throws on a remaining length longer than four
    /// bytes, or a packet larger than <paramref name="maximumPacketSize"/>.
    /// </summary>
    public static bool TryReadFixedHeader(in ReadOnlySequence<byte> buffer, int maximumPacketSize, out byte header, out int remainingLength, out int headerLength) =>
        TryReadFixedHeader(buffer, maximumPacketSize, refuseEarly: false, out header, out remainingLength, out headerLength);

    /// <param name="refuseEarly">
    /// Refuse as soon as the length bytes read so far make the packet larger than the limit, whatever follows,
    /// instead of waiting for the last length byte (used for the first packet, where no byte is worth waiting for).
    /// </param>
    private static bool TryReadFixedHeader(in ReadOnlySequence<byte> buffer, int maximumPacketSize, bool refuseEarly, out byte header, out int remainingLength, out int headerLength)
    {
        header = 0;
        remainingLength = 0;
        headerLength = 0;
        if (buffer.IsEmpty)
        {
            return false;
        }

        Span<byte> first = stackalloc byte[5];
        var available = (int)Math.Min(buffer.Length, 5);
        buffer.Slice(0, available).CopyTo(first);
        header = first[0];
        var value = 0;
        var shift = 0;
        for (var i = 1; i < 5; i++)
        {
            if (i >= available)
            {
                return false;
            }

            var b = first[i];
            value |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                remainingLength = value;
                headerLength = i + 1;
                if ((long)remainingLength + headerLength > maximumPacketSize)
                {
                    throw new MqttProtocolException(ReasonCode.PacketTooLarge, $"The packet is {remainingLength + headerLength} bytes; the limit is {maximumPacketSize}.")
                    {
                        PacketType = (PacketType)(header >> 4),
                    };
                }

                return true;
            }

            // More length bytes follow: the packet is at least this long, whatever they are.
            if (refuseEarly && (long)value + i + 2 > maximumPacketSize)
            {
                throw new MqttProtocolException(ReasonCode.PacketTooLarge, $"The packet is more than {value + i + 1} bytes; the limit is {maximumPacketSize}.")
                {
                    PacketType = (PacketType)(header >> 4),
                };
            }

            shift += 7;
        }

        throw new MqttProtocolException(ReasonCode.MalformedPacket, "The remaining length is longer than four bytes.") { PacketType = (PacketType)(header >> 4) };
    }

    /// <summary>
    /// Decodes one packet from the start of <paramref name="buffer"/> and slices it off. False means more bytes
    /// are needed and leaves the buffer unchanged.
    /// </summary>
    public bool TryRead(ref ReadOnlySequence<byte> buffer, [NotNullWhen(true)] out MqttPacket? packet) =>
        TryRead(ref buffer, reusablePublish: null, out packet);

    /// <summary>
    /// As <see cref="TryRead(ref ReadOnlySequence{byte}, out MqttPacket?)"/>, except that a PUBLISH is decoded into
    /// <paramref name="reusablePublish"/> instead of a new packet object. With a <see cref="TopicCache"/> this makes
    /// decoding a PUBLISH allocate nothing beyond its pooled payload. Every field of the target is overwritten, and
    /// only once the whole packet is valid (a malformed frame leaves it as it was). The caller must be done with the
    /// previous contents, its <see cref="PublishPacket.PayloadOwner"/> released or handed on, before the next read.
    /// Other packet types are allocated as usual; null behaves like the overload without it.
    /// </summary>
    public bool TryRead(ref ReadOnlySequence<byte> buffer, PublishPacket? reusablePublish, [NotNullWhen(true)] out MqttPacket? packet)
    {
        packet = null;
        var awaitingConnect = AwaitingConnect;
        if (awaitingConnect && !buffer.IsEmpty)
        {
            CheckFirstPacketType(buffer);
        }

        var limit = awaitingConnect ? Math.Min(MaximumConnectPacketSize, MaximumPacketSize) : MaximumPacketSize;
        if (!TryReadFixedHeader(buffer, limit, awaitingConnect, out var header, out var remainingLength, out var headerLength))
        {
            return false;
        }

        var total = headerLength + remainingLength;
        if (buffer.Length < total)
        {
            return false;
        }

        var body = buffer.Slice(headerLength, remainingLength);
        if (body.IsSingleSegment)
        {
            packet = Decode(header, body.FirstSpan, reusablePublish);
        }
        else if (remainingLength <= StackCopyLimit)
        {
            Span<byte> copy = stackalloc byte[StackCopyLimit];
            body.CopyTo(copy);
            packet = Decode(header, copy[..remainingLength], reusablePublish);
        }
        else
        {
            var rented = ArrayPool<byte>.Shared.Rent(remainingLength);
            try
            {
                body.CopyTo(rented);
                packet = Decode(header, rented.AsSpan(0, remainingLength), reusablePublish);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        buffer = buffer.Slice(total);
        AwaitingConnect = false;
        return true;
    }

    /// <summary>Refuses a first packet that is not CONNECT from its first byte, as Mosquitto does.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void CheckFirstPacketType(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> first = stackalloc byte[1];
        buffer.Slice(0, 1).CopyTo(first);
        var type = (PacketType)(first[0] >> 4);
        if (type != PacketType.Connect)
        {
            throw new MqttProtocolException(ReasonCode.ProtocolError, $"The first packet must be CONNECT, not {type.ToString().ToUpperInvariant()}.") { PacketType = type };
        }
    }

    /// <summary>Decodes a packet from its first byte and its complete body.</summary>
    public MqttPacket Decode(byte header, ReadOnlySpan<byte> body) => Decode(header, body, reusablePublish: null);

    private MqttPacket Decode(byte header, ReadOnlySpan<byte> body, PublishPacket? reusablePublish)
    {
        var type = (PacketType)(header >> 4);
        var flags = header & 0x0F;
        try
        {
            return type switch
            {
                PacketType.Publish => DecodePublish(flags, body, reusablePublish),
                PacketType.PubAck or PacketType.PubRec or PacketType.PubComp => DecodePublishAck(type, flags, 0, body),
                PacketType.PubRel => DecodePublishAck(type, flags, 2, body),
                PacketType.PingReq => DecodeEmpty(flags, body, PingReqPacket.Instance),
                PacketType.PingResp => DecodeEmpty(flags, body, PingRespPacket.Instance),
                PacketType.Connect => DecodeConnect(flags, body),
                PacketType.ConnAck => DecodeConnAck(flags, body),
                PacketType.Subscribe => DecodeSubscribe(flags, body),
                PacketType.SubAck => DecodeSubAck(flags, body),
                PacketType.Unsubscribe => DecodeUnsubscribe(flags, body),
                PacketType.UnsubAck => DecodeUnsubAck(flags, body),
                PacketType.Disconnect => DecodeDisconnect(flags, body),
                PacketType.Auth => DecodeAuth(flags, body),
                _ => ThrowHelper.Malformed<MqttPacket>("Packet type 0 is reserved."),
            };
        }
        catch (MqttProtocolException ex) when (ex.PacketType == PacketType.Reserved && type != PacketType.Reserved)
        {
            throw new MqttProtocolException(ex.ReasonCode, ex.Message) { PacketType = type, ConnectVersion = ex.ConnectVersion };
        }
    }

    private bool IsV5 => Version == ProtocolVersion.V500;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckFlags(int flags, int expected, string packet)
    {
        if (flags != expected)
        {
            ThrowHelper.Malformed($"The fixed header flags of {packet} are reserved and must be {expected}.");
        }
    }

    // The packet's name is only formatted when the flags are wrong: the hot path must not build strings.
    private static void CheckFlags(int flags, int expected, PacketType type)
    {
        if (flags != expected)
        {
            ThrowHelper.Malformed($"The fixed header flags of {type.ToString().ToUpperInvariant()} are reserved and must be {expected}.");
        }
    }

    private static void CheckEnd(in BodyReader reader)
    {
        if (!reader.End)
        {
            ThrowHelper.Malformed("The packet has bytes after its last field.");
        }
    }

    private static MqttPacket DecodeEmpty(int flags, ReadOnlySpan<byte> body, MqttPacket instance)
    {
        CheckFlags(flags, 0, instance.Type);
        if (body.Length != 0)
        {
            ThrowHelper.Malformed($"{instance.Type} has no body.");
        }

        return instance;
    }

    private PublishPacket DecodePublish(int flags, ReadOnlySpan<byte> body, PublishPacket? target)
    {
        var qos = (flags >> 1) & 0x03;
        if (qos == 3)
        {
            ThrowHelper.Malformed("PUBLISH with QoS 3.");
        }

        var dup = (flags & 0x08) != 0;
        if (dup && qos == 0)
        {
            ThrowHelper.Malformed("PUBLISH with QoS 0 has the DUP flag set.");
        }

        var reader = new BodyReader(body);
        var topicBytes = reader.ReadStringSpan();
        var topic = topicBytes.Length == 0 ? "" : TopicCache is { } cache ? cache.GetOrAdd(topicBytes) : Utf8Validation.Strict.GetString(topicBytes);
        if (topic.Length > 0 && !TopicValidator.IsValidTopicName(topic))
        {
            ThrowHelper.Throw(ReasonCode.TopicNameInvalid, "The topic name of PUBLISH contains a wildcard.");
        }

        ushort packetId = 0;
        if (qos > 0)
        {
            packetId = reader.ReadUInt16();
            if (packetId == 0)
            {
                ThrowHelper.Malformed("PUBLISH with QoS > 0 has packet identifier 0.");
            }
        }

        MqttProperties? properties = null;
        if (IsV5)
        {
            properties = PropertyCodec.Read(ref reader, (int)PacketType.Publish);
        }

        if (topic.Length == 0 && properties?.TopicAlias is null)
        {
            ThrowHelper.Throw(IsV5 ? ReasonCode.ProtocolError : ReasonCode.TopicNameInvalid, "PUBLISH has an empty topic name and no topic alias.");
        }

        var payload = reader.ReadRest();
        var owner = PooledBuffer.CopyOf(payload);

        // Every settable property of PublishPacket is assigned here: a reused target keeps nothing of the previous message.
        target ??= new PublishPacket();
        target.Topic = topic;
        target.QoS = (QoS)qos;
        target.Dup = dup;
        target.Retain = (flags & 0x01) != 0;
        target.PacketId = packetId;
        target.Properties = properties;
        target.Payload = owner.Memory;
        target.PayloadOwner = owner;
        return target;
    }

    private PublishAckPacket DecodePublishAck(PacketType type, int flags, int expectedFlags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, expectedFlags, type);
        var reader = new BodyReader(body);
        var packetId = reader.ReadUInt16();
        if (packetId == 0)
        {
            ThrowHelper.Malformed($"{type} has packet identifier 0.");
        }

        var packet = ReuseAcknowledgements ? (_reusableAck ??= new PublishAckPacket(PacketType.PubAck, 1)) : new PublishAckPacket(type, packetId);
        packet.Reset(type, packetId);
        if (IsV5)
        {
            // A 5.0 acknowledgement may stop after the packet id (success) or after the reason code.
            if (!reader.End)
            {
                packet.ReasonCode = (ReasonCode)reader.ReadByte();
                if (!reader.End)
                {
                    packet.Properties = PropertyCodec.Read(ref reader, (int)type);
                }
            }
        }

        CheckEnd(reader);
        return packet;
    }

    private ConnectPacket DecodeConnect(int flags, ReadOnlySpan<byte> body)
    {
        var reader = new BodyReader(body);
        var name = reader.ReadStringSpan();
        var level = reader.ReadByte();
        var isMqtt = name.SequenceEqual("MQTT"u8);
        var isMqIsdp = name.SequenceEqual("MQIsdp"u8);
        if (!isMqtt && !isMqIsdp)
        {
            // 5.0 [MQTT-3.1.2-1] names 0x84 for a wrong protocol name; it maps to 3.1.1 return code 1, not 3.
            ThrowHelper.Throw(ReasonCode.UnsupportedProtocolVersion, "The protocol name of CONNECT is neither MQTT nor MQIsdp.");
        }

        if (!((isMqtt && level is 4 or 5) || (isMqIsdp && level == 3)))
        {
            throw new MqttProtocolException(ReasonCode.UnsupportedProtocolVersion, $"Protocol level {level} is not supported.");
        }

        var version = (ProtocolVersion)level;
        try
        {
            // Checked once the version is known, so that a 5.0 client learns why in CONNACK.
            CheckFlags(flags, 0, "CONNECT");
            return DecodeConnectRest(ref reader, version);
        }
        catch (MqttProtocolException ex) when (ex.ConnectVersion == ProtocolVersion.Unknown)
        {
            throw new MqttProtocolException(ex.ReasonCode, ex.Message) { PacketType = PacketType.Connect, ConnectVersion = version };
        }
    }

    private ConnectPacket DecodeConnectRest(ref BodyReader reader, ProtocolVersion version)
    {
        var v5 = version == ProtocolVersion.V500;
        var connectFlags = reader.ReadByte();
        if ((connectFlags & 0x01) != 0)
        {
            ThrowHelper.Malformed("The reserved bit of the CONNECT flags is set.");
        }

        var hasUser = (connectFlags & 0x80) != 0;
        var hasPassword = (connectFlags & 0x40) != 0;
        var willRetain = (connectFlags & 0x20) != 0;
        var willQoS = (connectFlags >> 3) & 0x03;
        var hasWill = (connectFlags & 0x04) != 0;
        if (willQoS == 3)
        {
            ThrowHelper.Malformed("The will QoS is 3.");
        }

        if (!hasWill && (willQoS != 0 || willRetain))
        {
            ThrowHelper.Malformed("Will QoS or will retain is set without a will.");
        }

        if (!v5 && hasPassword && !hasUser)
        {
            ThrowHelper.Malformed("A password without a user name is not allowed before MQTT 5.0.");
        }

        var packet = new ConnectPacket
        {
            ProtocolVersion = version,
            CleanStart = (connectFlags & 0x02) != 0,
            KeepAlive = reader.ReadUInt16(),
        };
        if (v5)
        {
            packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.Connect);
            if (packet.Properties?.AuthenticationData is not null && packet.Properties.AuthenticationMethod is null)
            {
                ThrowHelper.ProtocolError("Authentication Data without an Authentication Method.");
            }
        }

        packet.ClientId = reader.ReadString();
        if (hasWill)
        {
            var will = new WillMessage { QoS = (QoS)willQoS, Retain = willRetain };
            if (v5)
            {
                will.Properties = PropertyCodec.Read(ref reader, PropertyCodec.WillContext);
            }

            will.Topic = reader.ReadString();
            if (!TopicValidator.IsValidTopicName(will.Topic))
            {
                ThrowHelper.Throw(v5 ? ReasonCode.TopicNameInvalid : ReasonCode.MalformedPacket, "The will topic is not a valid topic name.");
            }

            will.Payload = reader.ReadBinary();
            packet.Will = will;
        }

        if (hasUser)
        {
            packet.UserName = reader.ReadString();
        }

        if (hasPassword)
        {
            packet.Password = reader.ReadBinary();
        }

        CheckEnd(reader);
        return packet;
    }

    private ConnAckPacket DecodeConnAck(int flags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, 0, "CONNACK");
        var reader = new BodyReader(body);
        var ackFlags = reader.ReadByte();
        if ((ackFlags & 0xFE) != 0)
        {
            ThrowHelper.Malformed("Reserved CONNACK flags are set.");
        }

        var code = reader.ReadByte();
        var packet = new ConnAckPacket
        {
            SessionPresent = (ackFlags & 0x01) != 0,
            ReasonCode = IsV5 ? (ReasonCode)code : ReasonCodes.FromConnectReturnCode((ConnectReturnCode)code),
        };
        if (IsV5)
        {
            packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.ConnAck);
        }

        CheckEnd(reader);
        return packet;
    }

    private SubscribePacket DecodeSubscribe(int flags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, 2, "SUBSCRIBE");
        var reader = new BodyReader(body);
        var packet = new SubscribePacket { PacketId = reader.ReadUInt16() };
        if (packet.PacketId == 0)
        {
            ThrowHelper.Malformed("SUBSCRIBE has packet identifier 0.");
        }

        if (IsV5)
        {
            packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.Subscribe);
        }

        while (!reader.End)
        {
            var filter = reader.ReadString();
            if (filter.Length == 0)
            {
                // 4.7.3: a filter is at least one character long. Malformed, as Mosquitto has it, not a per-filter 0x8F.
                ThrowHelper.Malformed("SUBSCRIBE has an empty topic filter.");
            }

            var options = reader.ReadByte();
            var reservedMask = IsV5 ? 0xC0 : 0xFC;
            if ((options & reservedMask) != 0)
            {
                ThrowHelper.Malformed("Reserved bits of the subscription options are set.");
            }

            if ((options & 0x03) == 3)
            {
                // 5.0 section 3.8.3.1 calls Maximum QoS 3 a Protocol Error; 3.1.1 [MQTT-3.8.3-4] a malformed packet.
                ThrowHelper.Throw(IsV5 ? ReasonCode.ProtocolError : ReasonCode.MalformedPacket, "A subscription asks for QoS 3.");
            }

            var retainHandling = (options >> 4) & 0x03;
            if (retainHandling == 3)
            {
                ThrowHelper.ProtocolError("Retain Handling 3 is not defined.");
            }

            packet.Subscriptions.Add(new TopicSubscription
            {
                Filter = filter,
                MaximumQoS = (QoS)(options & 0x03),
                NoLocal = (options & 0x04) != 0,
                RetainAsPublished = (options & 0x08) != 0,
                RetainHandling = (RetainHandling)retainHandling,
            });
        }

        if (packet.Subscriptions.Count == 0)
        {
            ThrowHelper.ProtocolError("SUBSCRIBE has no topic filter.");
        }

        return packet;
    }

    private SubAckPacket DecodeSubAck(int flags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, 0, "SUBACK");
        var reader = new BodyReader(body);
        var packet = new SubAckPacket { PacketId = reader.ReadUInt16() };
        if (IsV5)
        {
            packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.SubAck);
        }

        while (!reader.End)
        {
            packet.ReasonCodes.Add((ReasonCode)reader.ReadByte());
        }

        return packet;
    }

    private UnsubscribePacket DecodeUnsubscribe(int flags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, 2, "UNSUBSCRIBE");
        var reader = new BodyReader(body);
        var packet = new UnsubscribePacket { PacketId = reader.ReadUInt16() };
        if (packet.PacketId == 0)
        {
            ThrowHelper.Malformed("UNSUBSCRIBE has packet identifier 0.");
        }

        if (IsV5)
        {
            packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.Unsubscribe);
        }

        while (!reader.End)
        {
            var filter = reader.ReadString();
            if (filter.Length == 0)
            {
                ThrowHelper.Malformed("UNSUBSCRIBE has an empty topic filter.");
            }

            packet.Filters.Add(filter);
        }

        if (packet.Filters.Count == 0)
        {
            ThrowHelper.ProtocolError("UNSUBSCRIBE has no topic filter.");
        }

        return packet;
    }

    private UnsubAckPacket DecodeUnsubAck(int flags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, 0, "UNSUBACK");
        var reader = new BodyReader(body);
        var packet = new UnsubAckPacket { PacketId = reader.ReadUInt16() };
        if (IsV5)
        {
            packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.UnsubAck);
            while (!reader.End)
            {
                packet.ReasonCodes.Add((ReasonCode)reader.ReadByte());
            }
        }

        CheckEnd(reader);
        return packet;
    }

    private DisconnectPacket DecodeDisconnect(int flags, ReadOnlySpan<byte> body)
    {
        CheckFlags(flags, 0, "DISCONNECT");
        var packet = new DisconnectPacket();
        if (!IsV5)
        {
            if (body.Length != 0)
            {
                ThrowHelper.Malformed("DISCONNECT has no body before MQTT 5.0.");
            }

            return packet;
        }

        var reader = new BodyReader(body);
        if (!reader.End)
        {
            packet.ReasonCode = (ReasonCode)reader.ReadByte();
            if (!reader.End)
            {
                packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.Disconnect);
            }
        }

        CheckEnd(reader);
        return packet;
    }

    private AuthPacket DecodeAuth(int flags, ReadOnlySpan<byte> body)
    {
        if (!IsV5)
        {
            ThrowHelper.Malformed("AUTH exists only in MQTT 5.0.");
        }

        CheckFlags(flags, 0, "AUTH");
        var packet = new AuthPacket();
        var reader = new BodyReader(body);
        if (!reader.End)
        {
            packet.ReasonCode = (ReasonCode)reader.ReadByte();
            if (packet.ReasonCode is not (ReasonCode.Success or ReasonCode.ContinueAuthentication or ReasonCode.ReAuthenticate))
            {
                ThrowHelper.ProtocolError("AUTH carries a reason code it may not.");
            }

            if (!reader.End)
            {
                packet.Properties = PropertyCodec.Read(ref reader, (int)PacketType.Auth);
            }
        }

        CheckEnd(reader);
        return packet;
    }
}
