using System.Buffers;
using System.Text;

namespace Taihu.Mqtt.Packets;

/// <summary>
/// Encodes packets into an <see cref="IBufferWriter{T}"/>: the size is computed first, then the packet is
/// written straight into the span the writer hands out, so encoding allocates nothing of its own.
/// </summary>
public static class PacketWriter
{
    /// <summary>Encodes <paramref name="packet"/> for a peer speaking <paramref name="version"/>; returns the bytes written.</summary>
    public static int Write(IBufferWriter<byte> output, MqttPacket packet, ProtocolVersion version)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(packet);
        var remaining = GetRemainingLength(packet, version, out var propertiesLength);
        var total = 1 + VariableByteInteger.GetLength((uint)remaining) + remaining;
        var span = output.GetSpan(total);
        var writer = new SpanWriter(span);
        writer.WriteByte(GetFirstByte(packet));
        writer.WriteVariableByteInteger((uint)remaining);
        WriteBody(ref writer, packet, version, propertiesLength);
        output.Advance(writer.Position);
        return writer.Position;
    }

    /// <summary>The encoded size of the whole packet, fixed header included.</summary>
    public static int GetSize(MqttPacket packet, ProtocolVersion version)
    {
        var remaining = GetRemainingLength(packet, version, out _);
        return 1 + VariableByteInteger.GetLength((uint)remaining) + remaining;
    }

    /// <summary>Encodes into a new array (tests and tools; the broker writes into its pipe).</summary>
    public static byte[] ToArray(MqttPacket packet, ProtocolVersion version)
    {
        var buffer = new ArrayBufferWriter<byte>();
        Write(buffer, packet, version);
        return buffer.WrittenSpan.ToArray();
    }

    private static byte GetFirstByte(MqttPacket packet)
    {
        var type = (byte)((byte)packet.Type << 4);
        return packet switch
        {
            PublishPacket p => (byte)(type | (p.Dup ? 0x08 : 0) | ((int)p.QoS << 1) | (p.Retain ? 0x01 : 0)),
            PublishAckPacket { Type: PacketType.PubRel } => (byte)(type | 0x02),
            SubscribePacket or UnsubscribePacket => (byte)(type | 0x02),
            _ => type,
        };
    }

    private static int StringLength(string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        if (length > ushort.MaxValue)
        {
            throw new ArgumentException($"A string field is {length} bytes; MQTT allows at most 65535.", nameof(value));
        }

        return 2 + length;
    }

    private static int PropertiesBlock(MqttProperties? properties, out int length)
    {
        length = PropertyCodec.GetLength(properties);
        return VariableByteInteger.GetLength((uint)length) + length;
    }

    private static int GetRemainingLength(MqttPacket packet, ProtocolVersion version, out int propertiesLength)
    {
        var v5 = version == ProtocolVersion.V500;
        propertiesLength = 0;
        switch (packet)
        {
            case PublishPacket p:
            {
                var length = StringLength(p.Topic) + (p.QoS > 0 ? 2 : 0) + p.Payload.Length;
                if (v5)
                {
                    length += PropertiesBlock(p.Properties, out propertiesLength);
                }

                return length;
            }

            case PublishAckPacket a:
                if (!v5)
                {
                    return 2;
                }

                propertiesLength = PropertyCodec.GetLength(a.Properties);
                if (propertiesLength > 0)
                {
                    return 3 + VariableByteInteger.GetLength((uint)propertiesLength) + propertiesLength;
                }

                return a.ReasonCode == ReasonCode.Success ? 2 : 3;
            case ConnectPacket c:
            {
                var length = StringLength(c.ProtocolVersion == ProtocolVersion.V310 ? "MQIsdp" : "MQTT") + 1 + 1 + 2;
                var cv5 = c.ProtocolVersion == ProtocolVersion.V500;
                if (cv5)
                {
                    length += PropertiesBlock(c.Properties, out propertiesLength);
                }

                length += StringLength(c.ClientId);
                if (c.Will is { } will)
                {
                    if (cv5)
                    {
                        length += PropertiesBlock(will.Properties, out _);
                    }

                    length += StringLength(will.Topic) + 2 + will.Payload.Length;
                }

                if (c.UserName is not null)
                {
                    length += StringLength(c.UserName);
                }

                if (c.Password is { } password)
                {
                    length += 2 + password.Length;
                }

                return length;
            }

            case ConnAckPacket ack:
                return 2 + (v5 ? PropertiesBlock(ack.Properties, out propertiesLength) : 0);
            case SubscribePacket s:
            {
                var length = 2 + (v5 ? PropertiesBlock(s.Properties, out propertiesLength) : 0);
                foreach (var sub in s.Subscriptions)
                {
                    length += StringLength(sub.Filter) + 1;
                }

                return length;
            }

            case SubAckPacket s:
                return 2 + (v5 ? PropertiesBlock(s.Properties, out propertiesLength) : 0) + s.ReasonCodes.Count;
            case UnsubscribePacket u:
            {
                var length = 2 + (v5 ? PropertiesBlock(u.Properties, out propertiesLength) : 0);
                foreach (var filter in u.Filters)
                {
                    length += StringLength(filter);
                }

                return length;
            }

            case UnsubAckPacket u:
                return v5 ? 2 + PropertiesBlock(u.Properties, out propertiesLength) + u.ReasonCodes.Count : 2;
            case PingReqPacket or PingRespPacket:
                return 0;
            case DisconnectPacket d:
                if (!v5)
                {
                    return 0;
                }

                propertiesLength = PropertyCodec.GetLength(d.Properties);
                if (propertiesLength > 0)
                {
                    return 1 + VariableByteInteger.GetLength((uint)propertiesLength) + propertiesLength;
                }

                return d.ReasonCode == ReasonCode.NormalDisconnection ? 0 : 1;
            case AuthPacket a:
                propertiesLength = PropertyCodec.GetLength(a.Properties);
                if (propertiesLength > 0)
                {
                    return 1 + VariableByteInteger.GetLength((uint)propertiesLength) + propertiesLength;
                }

                return a.ReasonCode == ReasonCode.Success ? 0 : 1;
            default:
                throw new ArgumentException($"Cannot encode {packet.GetType().Name}.", nameof(packet));
        }
    }

    private static void WriteProperties(ref SpanWriter w, MqttProperties? properties, int length)
    {
        w.WriteVariableByteInteger((uint)length);
        PropertyCodec.Write(ref w, properties);
    }

    private static void WriteBody(ref SpanWriter w, MqttPacket packet, ProtocolVersion version, int propertiesLength)
    {
        var v5 = version == ProtocolVersion.V500;
        switch (packet)
        {
            case PublishPacket p:
                w.WriteString(p.Topic);
                if (p.QoS > 0)
                {
                    w.WriteUInt16(p.PacketId);
                }

                if (v5)
                {
                    WriteProperties(ref w, p.Properties, propertiesLength);
                }

                w.WriteBytes(p.Payload.Span);
                break;
            case PublishAckPacket a:
                w.WriteUInt16(a.PacketId);
                if (v5 && (a.ReasonCode != ReasonCode.Success || propertiesLength > 0))
                {
                    w.WriteByte((byte)a.ReasonCode);
                    if (propertiesLength > 0)
                    {
                        WriteProperties(ref w, a.Properties, propertiesLength);
                    }
                }

                break;
            case ConnectPacket c:
                WriteConnect(ref w, c, propertiesLength);
                break;
            case ConnAckPacket ack:
                w.WriteByte(ack.SessionPresent ? (byte)1 : (byte)0);
                w.WriteByte(v5 ? (byte)ack.ReasonCode : (byte)ack.ReasonCode.ToConnectReturnCode());
                if (v5)
                {
                    WriteProperties(ref w, ack.Properties, propertiesLength);
                }

                break;
            case SubscribePacket s:
                w.WriteUInt16(s.PacketId);
                if (v5)
                {
                    WriteProperties(ref w, s.Properties, propertiesLength);
                }

                foreach (var sub in s.Subscriptions)
                {
                    w.WriteString(sub.Filter);
                    var options = (int)sub.MaximumQoS;
                    if (v5)
                    {
                        options |= (sub.NoLocal ? 0x04 : 0) | (sub.RetainAsPublished ? 0x08 : 0) | ((int)sub.RetainHandling << 4);
                    }

                    w.WriteByte((byte)options);
                }

                break;
            case SubAckPacket s:
                w.WriteUInt16(s.PacketId);
                if (v5)
                {
                    WriteProperties(ref w, s.Properties, propertiesLength);
                }

                foreach (var code in s.ReasonCodes)
                {
                    // 3.1.1 knows only 0, 1, 2 and 0x80 (failure).
                    w.WriteByte(v5 || (byte)code <= 2 ? (byte)code : (byte)0x80);
                }

                break;
            case UnsubscribePacket u:
                w.WriteUInt16(u.PacketId);
                if (v5)
                {
                    WriteProperties(ref w, u.Properties, propertiesLength);
                }

                foreach (var filter in u.Filters)
                {
                    w.WriteString(filter);
                }

                break;
            case UnsubAckPacket u:
                w.WriteUInt16(u.PacketId);
                if (v5)
                {
                    WriteProperties(ref w, u.Properties, propertiesLength);
                    foreach (var code in u.ReasonCodes)
                    {
                        w.WriteByte((byte)code);
                    }
                }

                break;
            case DisconnectPacket d:
                if (v5 && (d.ReasonCode != ReasonCode.NormalDisconnection || propertiesLength > 0))
                {
                    w.WriteByte((byte)d.ReasonCode);
                    if (propertiesLength > 0)
                    {
                        WriteProperties(ref w, d.Properties, propertiesLength);
                    }
                }

                break;
            case AuthPacket a:
                if (a.ReasonCode != ReasonCode.Success || propertiesLength > 0)
                {
                    w.WriteByte((byte)a.ReasonCode);
                    if (propertiesLength > 0)
                    {
                        WriteProperties(ref w, a.Properties, propertiesLength);
                    }
                }

                break;
        }
    }

    private static void WriteConnect(ref SpanWriter w, ConnectPacket c, int propertiesLength)
    {
        var v5 = c.ProtocolVersion == ProtocolVersion.V500;
        w.WriteString(c.ProtocolVersion == ProtocolVersion.V310 ? "MQIsdp" : "MQTT");
        w.WriteByte((byte)c.ProtocolVersion);
        var flags = 0;
        if (c.UserName is not null) flags |= 0x80;
        if (c.Password is not null) flags |= 0x40;
        if (c.Will is { } will)
        {
            flags |= 0x04 | ((int)will.QoS << 3) | (will.Retain ? 0x20 : 0);
        }

        if (c.CleanStart) flags |= 0x02;
        w.WriteByte((byte)flags);
        w.WriteUInt16(c.KeepAlive);
        if (v5)
        {
            WriteProperties(ref w, c.Properties, propertiesLength);
        }

        w.WriteString(c.ClientId);
        if (c.Will is { } w2)
        {
            if (v5)
            {
                WriteProperties(ref w, w2.Properties, PropertyCodec.GetLength(w2.Properties));
            }

            w.WriteString(w2.Topic);
            w.WriteBinary(w2.Payload.Span);
        }

        if (c.UserName is not null)
        {
            w.WriteString(c.UserName);
        }

        if (c.Password is { } password)
        {
            w.WriteBinary(password.Span);
        }
    }
}
