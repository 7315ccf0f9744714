using System.Buffers;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker;

/// <summary>What is queued for the socket, and how each item is encoded for this client.</summary>
public sealed partial class MqttChannel
{
    private void Send(MqttPacket packet) => Enqueue(new OutboundItem(packet));

    /// <summary>Queues PUBACK, PUBREC, PUBREL or PUBCOMP without allocating a packet.</summary>
    private void SendAck(PacketType type, ushort packetId, ReasonCode code = ReasonCode.Success) => Enqueue(new OutboundItem(type, packetId, code));

    void ISessionOutput.EnqueueAck(PacketType type, ushort packetId, ReasonCode code) => SendAck(type, packetId, code);

    int ISessionOutput.SendQuota => SendQuota;

    void ISessionOutput.EnqueuePublish(BrokerMessage message, QoS qos, bool retain, bool dup, ushort packetId, List<uint>? subscriptionIds) =>
        EnqueuePublish(message, qos, retain, dup, packetId, subscriptionIds);

    void ISessionOutput.Kick() => Kick();

    private void Enqueue(in OutboundItem item)
    {
        switch (_outbound.Enqueue(item))
        {
            case EnqueueResult.QueuedWakeConsumer:
                _transport?.ScheduleSend();
                break;
            case EnqueueResult.Rejected:
                item.Message?.Release();
                break;
        }
    }

    /// <summary>
    /// Null while the outbound queue is below <see cref="BrokerOptions.MaximumOutboundQueue"/>; otherwise a task that
    /// completes when it has drained to half. The transport stops reading from the client until then: a client that
    /// sends without reading what it is answered is slowed down, and its acknowledgements are never dropped.
    /// </summary>
    internal Task? WaitForOutboundRoom() => _outbound.WaitForRoom(_broker.Options.MaximumOutboundQueue);

    /// <summary>The most packets ever queued for this connection at once.</summary>
    internal int OutboundHighWater => _outbound.HighWater;

    /// <summary>The sender takes the next item to write.</summary>
    internal bool TryDequeueOutbound(out OutboundItem item) => _outbound.TryDequeue(out item);

    /// <summary>The sender found the queue empty: whether to go on, go idle, or finish the connection.</summary>
    internal DrainState TryStopSending() => _outbound.TryStop();

    /// <summary>Queues one delivery for the socket, taking a payload reference. Drops QoS 0 when the queue is full.</summary>
    internal void EnqueuePublish(BrokerMessage message, QoS qos, bool retain, bool dup, ushort packetId, List<uint>? subscriptionIds)
    {
        if (qos == QoS.AtMostOnce && _outbound.Count >= _broker.Options.MaximumOutboundQueue)
        {
            _broker.Metrics.MessageDropped(DropReasons.OutboundQueueFull);
            return;
        }

        message.AddReference();
        Enqueue(new OutboundItem(message, qos, retain, dup, packetId, subscriptionIds));
    }

    /// <summary>
    /// Encodes one outbound item into <paramref name="output"/> (the transport's send loop, one thread). Returns
    /// the bytes written, or 0 when the item was dropped (expired, or too large for the client).
    /// </summary>
    internal int WriteOutbound(in OutboundItem item, IBufferWriter<byte> output)
    {
        if (item.AckType != PacketType.Reserved)
        {
            return WriteAck(item, output);
        }

        if (item.Packet is { } packet)
        {
            if (IsV5 && _clientMaximumPacketSize < int.MaxValue && PacketWriter.GetSize(packet, Version) > _clientMaximumPacketSize)
            {
                DropOptionalProperties(packet);
            }

            return PacketWriter.Write(output, packet, Version == ProtocolVersion.Unknown ? ProtocolVersion.V311 : Version);
        }

        var message = item.Message!;
        try
        {
            var now = _broker.Time.GetUtcNow();

            // 5.0 section 3.3.2.3.3: an expired message is deleted only while its onward delivery has not
            // started. A DUP resend on resume went out before, and section 4.4 says it must go again; it
            // carries what is left of its interval, 0 once past it.
            if (!item.Dup && message.IsExpired(now))
            {
                _broker.Metrics.MessageDropped(DropReasons.Expired);
                CompleteDropped(item);
                return 0;
            }

            var publish = _scratchPublish ??= new PublishPacket();
            publish.Topic = _identity.Topics is { } map ? map.ToClient(message.Topic) : message.Topic;
            publish.Payload = message.Payload;
            publish.QoS = item.QoS;
            publish.Retain = item.Retain;
            publish.Dup = item.Dup;
            publish.PacketId = item.PacketId;
            publish.Properties = null;
            if (IsV5)
            {
                publish.Properties = PrepareProperties(message, item, now, publish);
            }

            var size = PacketWriter.GetSize(publish, Version);
            if (size > _clientMaximumPacketSize)
            {
                // 5.0 section 3.1.2.11.4: discard it and behave as if it had been sent and acknowledged.
                if (publish.Properties?.TopicAlias is { } assigned && publish.Topic.Length > 0)
                {
                    _outboundAliases!.Remove(message.Topic);
                    _ = assigned;
                }

                _broker.Metrics.MessageDropped(DropReasons.TooLargeForClient);
                CompleteDropped(item);
                return 0;
            }

            var written = PacketWriter.Write(output, publish, Version);
            if (item.QoS == QoS.AtMostOnce)
            {
                message.DeliveryListener?.OnDelivered(QoS.AtMostOnce);
            }

            return written;
        }
        finally
        {
            message.Release();
            if (_scratchPublish is { } scratch)
            {
                ForgetMessage(scratch);
            }

            if (_scratchProperties is { } properties)
            {
                properties.ContentType = null;
                properties.ResponseTopic = null;
                properties.CorrelationData = null;
                properties.UserProperties = null;
                properties.SubscriptionIdentifiers = null;
            }
        }
    }

    /// <summary>
    /// 5.0 sections 3.2.2.3.9, 3.4.2.2.2, 3.14.2.2.3 and the like: the Reason String and User Properties are left
    /// out rather than exceed the client's Maximum Packet Size.
    /// </summary>
    private static void DropOptionalProperties(MqttPacket packet)
    {
        var properties = packet switch
        {
            PublishAckPacket ack => ack.Properties,
            DisconnectPacket disconnect => disconnect.Properties,
            ConnAckPacket connAck => connAck.Properties,
            SubAckPacket subAck => subAck.Properties,
            UnsubAckPacket unsubAck => unsubAck.Properties,
            AuthPacket auth => auth.Properties,
            _ => null,
        };
        if (properties is not null)
        {
            properties.ReasonString = null;
            properties.UserProperties = null;
        }
    }

    private MqttProperties? PrepareProperties(BrokerMessage message, in OutboundItem item, DateTimeOffset now, PublishPacket publish)
    {
        var source = message.Properties;
        var expiry = message.RemainingExpiry(now);
        ushort? alias = null;
        if (_clientTopicAliasMaximum > 0)
        {
            _outboundAliases ??= new Dictionary<string, ushort>(StringComparer.Ordinal);
            if (_outboundAliases.TryGetValue(message.Topic, out var existing))
            {
                alias = existing;
                publish.Topic = "";
            }
            else if (_outboundAliases.Count < _clientTopicAliasMaximum)
            {
                alias = (ushort)(_outboundAliases.Count + 1);
                _outboundAliases[message.Topic] = alias.Value;
            }
        }

        if (source is null && expiry is null && alias is null && item.SubscriptionIds is null)
        {
            return null;
        }

        var p = _scratchProperties ??= new MqttProperties();
        p.PayloadFormatIndicator = source?.PayloadFormatIndicator;
        p.MessageExpiryInterval = expiry;
        p.ContentType = source?.ContentType;
        p.ResponseTopic = source?.ResponseTopic;
        p.CorrelationData = source?.CorrelationData;
        p.UserProperties = source?.UserProperties;
        p.SubscriptionIdentifiers = item.SubscriptionIds;
        p.TopicAlias = alias;
        return p;
    }

    /// <summary>
    /// Writes a four-byte acknowledgement, or five bytes when a 5.0 reason code other than success must be told
    /// (section 3.4.2.1: the reason code may be left out when it is 0x00 and there are no properties).
    /// </summary>
    private int WriteAck(in OutboundItem item, IBufferWriter<byte> output)
    {
        var withCode = IsV5 && item.AckReason != ReasonCode.Success;
        var length = withCode ? 5 : 4;
        var span = output.GetSpan(length);
        span[0] = (byte)(((int)item.AckType << 4) | (item.AckType == PacketType.PubRel ? 0x02 : 0));
        span[1] = (byte)(length - 2);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(span[2..], item.PacketId);
        if (withCode)
        {
            span[4] = (byte)item.AckReason;
        }

        output.Advance(length);
        return length;
    }

    /// <summary>A QoS 1/2 delivery that will never be sent: take it out of flight as if acknowledged.</summary>
    private void CompleteDropped(in OutboundItem item)
    {
        if (item.QoS == QoS.AtMostOnce || _session is not { } session)
        {
            return;
        }

        session.CompleteDropped(item.PacketId, item.Message!);
    }
}
