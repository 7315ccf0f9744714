using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Sessions;

/// <summary>The session's deliveries: the queue, the messages in flight, their acknowledgements and incoming QoS 2 (all under the session's lock).</summary>
public sealed partial class MqttSession
{
    // ------------------------------------------------------------------------------------------------ deliveries

    /// <summary>
    /// Hands one copy of <paramref name="message"/> to the session: straight to its connection when it is connected
    /// and has room in its inflight window, into its queue otherwise (QoS 1 and 2 only; QoS 0 for an absent client
    /// is dropped, as Mosquitto does by default). A full queue drops the message, unless
    /// <paramref name="mayHoldPublisher"/> (a client's publish, which can be held back) and the subscriber is
    /// connected and reading: then it is queued past the limit (see <see cref="IsQueueOverfull"/>), and the result
    /// says the publisher must wait for room (<see cref="WaitForRoomAsync"/>) before it is acknowledged and read
    /// from again.
    /// </summary>
    /// <remarks>
    /// <paramref name="fromOtherNode"/>: a message another node of a cluster accepted and acknowledged, whose
    /// publisher cannot be held back from here: to a connected subscriber that is reading it is queued past the
    /// message limit too (within the same bytes), rather than lost after its publisher was told it was accepted.
    /// </remarks>
    internal DeliveryResult Deliver(BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group, bool mayHoldPublisher,
        bool fromOtherNode = false)
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
                if (!(mayHoldPublisher || fromOtherNode) || output is null || _stalled || Options.FullQueuePublisherWait <= TimeSpan.Zero || IsQueueOverfull(size))
                {
                    _services.Metrics.MessageDropped(Queue.Count >= Options.MaximumQueuedMessages ? DropReasons.QueueFull : DropReasons.QueueBytesFull);
                    return DeliveryResult.Dropped;
                }

                result = mayHoldPublisher ? DeliveryResult.Congested : DeliveryResult.Accepted;
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

    /// <summary>
    /// Whether the queue is past what held-back publishers may add beyond the limits. Each held publisher adds at
    /// most one message (it is read from again only once there is room), so their number bounds the count: a
    /// burst from 15,000 devices that each send one message at once must not lose 13,000 of them to a count cap.
    /// What bounds the memory is the bytes: at most twice <see cref="BrokerOptions.MaximumQueuedBytes"/> in all
    /// (twice the message limit when no byte limit is set).
    /// </summary>
    private bool IsQueueOverfull(long size) => Options.MaximumQueuedBytes > 0
        ? _queuedBytes + size > 2 * Options.MaximumQueuedBytes
        : Queue.Count >= 2L * Options.MaximumQueuedMessages;

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
}
