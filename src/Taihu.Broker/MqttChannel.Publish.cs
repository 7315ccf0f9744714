using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Unicode;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker;

/// <summary>PUBLISH from the client, and the acknowledgements of what the broker sends.</summary>
public sealed partial class MqttChannel
{
    private async ValueTask<bool> HandlePublishAsync(PublishPacket publish, CancellationToken cancellationToken)
    {
        var owner = publish.PayloadOwner;
        try
        {
            if (Interlocked.Exchange(ref _congestedOn, null) is { } congested)
            {
                // An earlier publish, routed after its observer answered, filled a subscriber's queue: this
                // connection waits for room before its next message is taken.
                await congested.WaitForRoomAsync(cancellationToken);
            }

            return await HandlePublishCoreAsync(publish, cancellationToken);
        }
        finally
        {
            // The publisher's reference: deliveries and the retained store took their own.
            owner?.Release();
            if (ReferenceEquals(publish, _reusablePublish))
            {
                ForgetMessage(publish);
            }
        }
    }

    /// <summary>
    /// Drops what a reused PUBLISH still points at once its message is handled or written. Kept, a connection's
    /// last topic and payload live until its next message: for a device called once in a while (a new topic per
    /// RPC request id), that is one more collection at least, and every connection's leftovers are copied into
    /// older generations that later collections walk again.
    /// </summary>
    private static void ForgetMessage(PublishPacket publish)
    {
        publish.Topic = "";
        publish.Payload = default;
        publish.PayloadOwner = null;
        publish.Properties = null;
    }

    private async ValueTask<bool> HandlePublishCoreAsync(PublishPacket publish, CancellationToken cancellationToken)
    {
        if (_rateLimiter is { } limiter && limiter.TryTake(publish.Payload.Length) is var limited && limited != RateLimitResult.Allowed)
        {
            return RefuseRate(limiter, limited);
        }

        var options = _broker.Options;
        var topic = publish.Topic;
        var properties = publish.Properties;
        if (IsV5 && properties?.TopicAlias is { } alias)
        {
            if (alias == 0 || alias > options.TopicAliasMaximum)
            {
                return await Fail(ReasonCode.TopicAliasInvalid, $"Topic alias {alias} is outside 1..{options.TopicAliasMaximum}.");
            }

            _inboundAliases ??= [];
            if (topic.Length == 0)
            {
                if (!_inboundAliases.TryGetValue(alias, out var known))
                {
                    return await Fail(ReasonCode.ProtocolError, $"Topic alias {alias} was never set.");
                }

                topic = known;
            }
            else
            {
                _inboundAliases[alias] = topic;
            }

            properties = properties.Clone();
            properties.TopicAlias = null;
        }

        if (!CheckTopicLimits(topic, out var topicProblem))
        {
            return await Fail(ReasonCode.TopicNameInvalid, topicProblem);
        }

        var qos = publish.QoS;
        if (qos == QoS.ExactlyOnce)
        {
            var check = _session!.CheckIncomingQoS2(publish.PacketId, _pendingIncoming);
            if (check == IncomingQoS2Check.OverLimit)
            {
                return await Fail(ReasonCode.ReceiveMaximumExceeded, "More QoS 2 messages unacknowledged than Receive Maximum allows.");
            }

            if (check == IncomingQoS2Check.Duplicate)
            {
                // Already accepted and routed: acknowledge again, deliver nothing again (4.3.3).
                SendAck(PacketType.PubRec, publish.PacketId);
                return true;
            }
        }

        if (IsV5 && properties?.PayloadFormatIndicator == 1 && !Utf8.IsValid(publish.Payload.Span))
        {
            return Refuse(publish, ReasonCode.PayloadFormatInvalid, "The payload is marked as UTF-8 but is not.", closeWhenUnacknowledged: true);
        }

        if (publish.Retain && !options.RetainAvailable)
        {
            return await Fail(ReasonCode.RetainNotSupported, "Retained messages are not available.");
        }

        if (_identity.Topics is { } map)
        {
            topic = map.ToBroker(topic);
        }

        if (IsSysTopic(topic))
        {
            return Refuse(publish, ReasonCode.NotAuthorized, "Clients may not publish to $SYS topics.", closeWhenUnacknowledged: false);
        }

        var authorization = await _broker.Authorizer.AuthorizePublishAsync(_identity, ClientId!, topic, cancellationToken);
        if (authorization != ReasonCode.Success)
        {
            _broker.Metrics.MessageDropped(DropReasons.NotAuthorized);
            return Refuse(publish, authorization, $"Not authorized to publish to '{topic}'.", closeWhenUnacknowledged: false);
        }

        if (publish.Retain && !publish.Payload.IsEmpty && !_broker.CanRetain(_identity.Namespace, topic, publish.Payload.Length, properties))
        {
            _broker.Metrics.MessageDropped(DropReasons.RetainedLimit);
            if (IsV5 && qos != QoS.AtMostOnce)
            {
                return Refuse(publish, ReasonCode.QuotaExceeded, "The retained message is over the broker's retained size limits.", closeWhenUnacknowledged: false);
            }

            // 3.1.1 has no code to tell it with (and 5.0 QoS 0 no acknowledgement): delivered, not retained, as EMQX does.
            publish.Retain = false;
        }

        var code = ReasonCode.Success;
        if (qos != QoS.AtLeastOnce && HasDeferred)
        {
            // QoS 1 publishes wait for their observer: nothing of another QoS may overtake them.
            await WaitForDeferredAsync(0, cancellationToken);
        }

        if (_broker.PublishObserver is { } observer)
        {
            if (publish.Topic != topic)
            {
                publish.Topic = topic;
            }

            if (qos == QoS.AtLeastOnce)
            {
                return await ObserveAtLeastOnceAsync(observer, publish, topic, properties, cancellationToken);
            }

            _pendingIncoming++;
            try
            {
                var pending = observer.OnPublishAsync(new ObservedPublish(_identity, ClientId!, publish), cancellationToken);
                code = pending.IsCompletedSuccessfully ? pending.Result : await pending;
            }
            finally
            {
                _pendingIncoming--;
            }

            if (!code.IsSuccess())
            {
                return Refuse(publish, code, null, closeWhenUnacknowledged: true);
            }

            if (!observer.Routes(_identity, topic))
            {
                Acknowledge(publish, code);
                return true;
            }
        }

        if (qos == QoS.AtLeastOnce && (HasDeferred || _broker.AcknowledgesAfterForward))
        {
            // Behind earlier ones still waiting; or, on a cluster node, acknowledged once the other nodes have it.
            DeferCompleted(code, publish, topic, properties, routes: true);
            return true;
        }

        var message = BrokerMessage.Create(_identity.Namespace, topic, publish.Payload, publish.PayloadOwner, qos, publish.Retain, properties, _broker.Time.GetUtcNow(), ClientId, _identity.SessionOwner ?? "");
        int deliveries;
        MqttSession? congested;
        Task? forwarded = null;
        if (qos == QoS.ExactlyOnce && _broker.AcknowledgesAfterForward)
        {
            // On a cluster node the PUBREC waits until the other nodes have it (the read loop waits: QoS 2 is rare).
            var receipt = new AwaitedReceipt();
            deliveries = _broker.RouteFromClient(message, receipt, out congested, out var awaitsNodes);
            forwarded = awaitsNodes ? receipt.Task : null;
        }
        else
        {
            deliveries = _broker.RouteFromClient(message, out congested);
        }

        message.Release();
        if (code == ReasonCode.Success && deliveries == 0 && IsV5)
        {
            code = ReasonCode.NoMatchingSubscribers;
        }

        if (congested is not null)
        {
            // A subscriber's queue is full: the acknowledgement, and the next read, wait for room.
            await congested.WaitForRoomAsync(cancellationToken);
        }

        if (forwarded is not null)
        {
            await forwarded.WaitAsync(cancellationToken);
        }

        Acknowledge(publish, code);
        return true;
    }

    /// <summary>A receipt awaited by the read loop (a QoS 2 message on a cluster node).</summary>
    private sealed class AwaitedReceipt : TaskCompletionSource, IForwardReceipt
    {
        public AwaitedReceipt()
            : base(TaskCreationOptions.RunContinuationsAsynchronously)
        {
        }

        public void OnForwarded() => TrySetResult();
    }

    /// <summary>
    /// Over a publish rate limit: the message goes nowhere (counted), and the connection ends, 5.0 with DISCONNECT
    /// 0x96 and a reason string that names the limit; logged through the rate-limited refusal log.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool RefuseRate(PublishRateLimiter limiter, RateLimitResult limited)
    {
        _broker.Metrics.MessageDropped(DropReasons.RateLimited);
        _broker.Metrics.RateLimited(limited == RateLimitResult.Messages ? "messages" : "bytes");
        var reason = limited == RateLimitResult.Messages
            ? $"publish rate limit of {limiter.MessagesPerSecond} messages per second exceeded"
            : $"publish byte rate limit of {limiter.BytesPerSecond} bytes per second exceeded";
        return FailNow(ReasonCode.MessageRateTooHigh, reason);
    }

    /// <summary>
    /// A QoS 1 publish shown to the observer: answered at once, it is acknowledged at once (unless earlier ones
    /// still wait); answered later, it joins the deferred queue and the connection reads on.
    /// </summary>
    private async ValueTask<bool> ObserveAtLeastOnceAsync(IPublishObserver observer, PublishPacket publish, string topic, MqttProperties? properties, CancellationToken cancellationToken)
    {
        // Receive Maximum: at most that many wait; the client should not send more, and a 3.1.1 client that
        // does is slowed down here.
        await WaitForDeferredAsync(_broker.Options.MaximumInflightMessages - 1, cancellationToken);
        var pending = observer.OnPublishAsync(new ObservedPublish(_identity, ClientId!, publish), cancellationToken);
        var routes = observer.Routes(_identity, topic);
        if (!pending.IsCompleted)
        {
            Defer(pending, publish, topic, properties, routes);
            return true;
        }

        ReasonCode code;
        try
        {
            code = pending.Result;
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            code = ReasonCode.UnspecifiedError;
        }

        if (HasDeferred || (_broker.AcknowledgesAfterForward && routes && code.IsSuccess()))
        {
            DeferCompleted(code, publish, topic, properties, routes);
            return true;
        }

        if (!code.IsSuccess())
        {
            return Refuse(publish, code, null, closeWhenUnacknowledged: true);
        }

        if (!routes)
        {
            Acknowledge(publish, code);
            return true;
        }

        var message = BrokerMessage.Create(_identity.Namespace, topic, publish.Payload, publish.PayloadOwner, publish.QoS, publish.Retain, properties, _broker.Time.GetUtcNow(), ClientId, _identity.SessionOwner ?? "");
        var deliveries = _broker.RouteFromClient(message, out var congested);
        message.Release();
        if (congested is not null)
        {
            await congested.WaitForRoomAsync(cancellationToken);
        }

        Acknowledge(publish, deliveries == 0 && IsV5 ? ReasonCode.NoMatchingSubscribers : code);
        return true;
    }

    private void Acknowledge(PublishPacket publish, ReasonCode code)
    {
        if (publish.QoS == QoS.AtLeastOnce)
        {
            SendAck(PacketType.PubAck, publish.PacketId, IsV5 ? code : ReasonCode.Success);
        }
        else if (publish.QoS == QoS.ExactlyOnce)
        {
            if (code.IsSuccess())
            {
                _session!.AcceptIncomingQoS2(publish.PacketId);
            }

            SendAck(PacketType.PubRec, publish.PacketId, IsV5 ? code : ReasonCode.Success);
        }
    }

    /// <summary>
    /// Refuses a publish. 5.0 QoS 1/2 carry the code in PUBACK/PUBREC. Where no acknowledgement can carry it
    /// (3.1.1, or QoS 0), the message is dropped silently, or the connection closed when
    /// <paramref name="closeWhenUnacknowledged"/> (bad payloads must not pass unnoticed).
    /// </summary>
    private bool Refuse(PublishPacket publish, ReasonCode code, string? reason, bool closeWhenUnacknowledged)
    {
        if (IsV5 && publish.QoS != QoS.AtMostOnce)
        {
            var ack = new PublishAckPacket(publish.QoS == QoS.AtLeastOnce ? PacketType.PubAck : PacketType.PubRec, publish.PacketId, code)
            {
                Properties = ReasonProperties(reason),
            };
            Send(ack);
            return true;
        }

        if (closeWhenUnacknowledged)
        {
            Close(code, reason, publishWill: true);
            return false;
        }

        if (publish.QoS == QoS.AtLeastOnce)
        {
            SendAck(PacketType.PubAck, publish.PacketId);
        }
        else if (publish.QoS == QoS.ExactlyOnce)
        {
            SendAck(PacketType.PubRec, publish.PacketId);
        }

        return true;
    }

    private bool CheckTopicLimits(string topic, out string problem)
    {
        var options = _broker.Options;
        if (topic.Length > options.MaximumTopicLength || Encoding.UTF8.GetByteCount(topic) > options.MaximumTopicLength)
        {
            problem = $"The topic is longer than {options.MaximumTopicLength} bytes.";
            return false;
        }

        if (topic.AsSpan().Count('/') + 1 > options.MaximumTopicLevels)
        {
            problem = $"The topic has more than {options.MaximumTopicLevels} levels.";
            return false;
        }

        problem = "";
        return true;
    }

    // ---------------------------------------------------------------- acknowledgements of our PUBLISH, and PUBREL

    /// <remarks>
    /// An acknowledgement for an identifier we have not in flight is tolerated (PUBACK and PUBCOMP ignored, PUBREC
    /// answered with PUBREL 0x92): it can follow a resend or a restart. One that names a delivery in flight but does
    /// not fit it (PUBREC or PUBCOMP for QoS 1, PUBACK for QoS 2, PUBCOMP before PUBREC) can only be a broken
    /// client: 3.1.1 [MQTT-4.8.0-1] closes, 5.0 sends DISCONNECT 0x82 first, as Mosquitto does.
    /// </remarks>
    private bool HandleAck(PublishAckPacket ack)
    {
        var session = _session!;
        switch (ack.Type)
        {
            case PacketType.PubAck:
            case PacketType.PubComp:
            case PacketType.PubRec:
                switch (session.Acknowledge(ack.Type, ack.PacketId, ack.ReasonCode))
                {
                    case AckResult.Unknown when ack.Type == PacketType.PubRec:
                        SendAck(PacketType.PubRel, ack.PacketId, IsV5 ? ReasonCode.PacketIdentifierNotFound : ReasonCode.Success);
                        return true;
                    case AckResult.Released:
                        SendAck(PacketType.PubRel, ack.PacketId);
                        return true;
                    case AckResult.Mismatch:
                        return FailNow(ReasonCode.ProtocolError, ack.Type switch
                        {
                            PacketType.PubAck => "PUBACK for a QoS 2 delivery.",
                            PacketType.PubRec => "PUBREC for a QoS 1 delivery.",
                            _ => "PUBCOMP for a delivery that is not waiting for it.",
                        });
                    default:
                        return true;
                }

            case PacketType.PubRel:
                var known = session.ReleaseIncomingQoS2(ack.PacketId);
                SendAck(PacketType.PubComp, ack.PacketId, known || !IsV5 ? ReasonCode.Success : ReasonCode.PacketIdentifierNotFound);
                return true;
            default:
                return false;
        }
    }
}
