using System.Runtime.CompilerServices;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Buffers;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker;

/// <summary>
/// QoS 1 publishes whose observer answers later (the platform acknowledges telemetry once it is committed) do not
/// hold up the connection: it reads on, and their PUBACKs, and their routing, follow in the order the PUBLISHes
/// came (3.1.1 section 4.6), each when its observer has answered. Without this a device that keeps several
/// messages in flight would still get one acknowledged per commit.
/// </summary>
/// <remarks>
/// Entries wait in a FIFO; whoever completes the head (an observer's continuation, or the read loop) drains every
/// completed entry from the head, one drainer at a time. While entries wait, later publishes of any QoS join the
/// queue (or, for QoS 0 and 2, wait for it to empty) so that nothing overtakes them. At most Receive Maximum
/// entries wait; beyond that the read loop waits for room, which slows the client instead of growing memory.
/// The packet object is reused for the next PUBLISH as soon as the observer returns a pending task; the payload
/// stays valid until the task completes, because the entry holds a reference to it.
/// </remarks>
public sealed partial class MqttChannel
{
    // Also the lock for the fields below: a separate Lock object would cost every connection 40 bytes.
    private readonly Queue<DeferredPublish> _deferred = new();
    private bool _draining;
    private int _deferredCount; // _deferred.Count, readable without the lock on the hot path
    private TaskCompletionSource? _deferredRoom;
    // A subscriber's session whose queue a deferred publish filled; the next PUBLISH waits for room in it.
    private Sessions.MqttSession? _congestedOn;

    private static readonly BoundedPool<DeferredPublish> s_deferredPool = new(4096);

    /// <summary>Publishes waiting for their observer or for an earlier one.</summary>
    internal int DeferredCount
    {
        get
        {
            lock (_deferred)
            {
                return _deferred.Count;
            }
        }
    }

    /// <summary>Queues a QoS 1 publish whose observer has not answered yet; it is acknowledged and routed in turn.</summary>
    private void Defer(ValueTask<ReasonCode> pending, PublishPacket publish, string topic, MqttProperties? properties, bool routes)
    {
        var entry = s_deferredPool.TryTake(out var pooled) ? pooled! : new DeferredPublish();
        entry.Channel = this;
        entry.PacketId = publish.PacketId;
        entry.Message = routes
            ? BrokerMessage.Create(_identity.Namespace, topic, publish.Payload, publish.PayloadOwner, publish.QoS, publish.Retain, properties, _broker.Time.GetUtcNow(), ClientId, _identity.SessionOwner ?? "")
            : null;
        // Keeps the payload valid for the observer even when the message is not routed.
        entry.PayloadOwner = publish.PayloadOwner;
        entry.PayloadOwner?.Retain();
        entry.Done = false;
        lock (_deferred)
        {
            _deferred.Enqueue(entry);
            _deferredCount = _deferred.Count;
        }

        entry.Awaiter = pending.GetAwaiter();
        entry.Awaiter.UnsafeOnCompleted(entry.Continuation);
    }

    /// <summary>Queues a publish that is already answered behind those still waiting.</summary>
    private void DeferCompleted(ReasonCode code, PublishPacket publish, string topic, MqttProperties? properties, bool routes)
    {
        var entry = s_deferredPool.TryTake(out var pooled) ? pooled! : new DeferredPublish();
        entry.Channel = this;
        entry.PacketId = publish.PacketId;
        entry.Message = routes && code.IsSuccess()
            ? BrokerMessage.Create(_identity.Namespace, topic, publish.Payload, publish.PayloadOwner, publish.QoS, publish.Retain, properties, _broker.Time.GetUtcNow(), ClientId, _identity.SessionOwner ?? "")
            : null;
        entry.PayloadOwner = null;
        entry.Code = code;
        entry.Done = true;
        lock (_deferred)
        {
            _deferred.Enqueue(entry);
            _deferredCount = _deferred.Count;
        }

        DrainDeferred();
    }

    /// <summary>Whether publishes are waiting (a new QoS 1 publish must then queue behind them).</summary>
    private bool HasDeferred => Volatile.Read(ref _deferredCount) > 0;

    /// <summary>Waits until at most <paramref name="limit"/> publishes are waiting (0: until none is).</summary>
    private ValueTask WaitForDeferredAsync(int limit, CancellationToken cancellationToken) =>
        Volatile.Read(ref _deferredCount) <= limit ? ValueTask.CompletedTask : WaitForDeferredSlowAsync(limit, cancellationToken);

    private async ValueTask WaitForDeferredSlowAsync(int limit, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_deferred)
            {
                if (_deferred.Count <= limit)
                {
                    return;
                }

                _deferredRoom ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _deferredRoom.Task;
            }

            await wait.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Acknowledges and routes every completed entry at the head of the queue, in order.</summary>
    private void DrainDeferred()
    {
        lock (_deferred)
        {
            if (_draining)
            {
                return;
            }

            _draining = true;
        }

        while (true)
        {
            DeferredPublish entry;
            TaskCompletionSource? room = null;
            bool routeFirst;
            lock (_deferred)
            {
                if (_deferred.Count == 0 || !_deferred.Peek().Done)
                {
                    _draining = false;
                    room = _deferredRoom;
                    _deferredRoom = null;
                    room?.TrySetResult();
                    return;
                }

                entry = _deferred.Peek();
                routeFirst = entry.Message is not null && entry.Code.IsSuccess() && _broker.AcknowledgesAfterForward;
                if (routeFirst)
                {
                    // On a cluster node: routed now, acknowledged once the other nodes have it (it stays at the
                    // head meanwhile, so that later acknowledgements keep their order).
                    entry.Done = false;
                }
                else
                {
                    _deferred.Dequeue();
                    _deferredCount = _deferred.Count;
                    if (_deferredRoom is { } waiting)
                    {
                        _deferredRoom = null;
                        room = waiting;
                    }
                }
            }

            if (routeFirst)
            {
                RouteBeforeAcknowledging(entry);
                continue;
            }

            room?.TrySetResult();
            Complete(entry);
        }
    }

    /// <summary>
    /// Routes the entry at the head (its observer has answered) with the entry as the receipt of the other nodes it
    /// is forwarded to; its acknowledgement follows when they have it (<see cref="DeferredPublish.OnForwarded"/>),
    /// at once when it went to none. Only the drainer calls this, with the entry's Done cleared under the lock.
    /// </summary>
    private void RouteBeforeAcknowledging(DeferredPublish entry)
    {
        var message = entry.Message!;
        entry.Message = null;
        var deliveries = _broker.RouteFromClient(message, entry, out var congested, out var awaitsNodes);
        message.Release();
        if (congested is not null)
        {
            Volatile.Write(ref _congestedOn, congested);
        }

        if (deliveries == 0 && IsV5)
        {
            entry.Code = ReasonCode.NoMatchingSubscribers;
        }

        if (!awaitsNodes)
        {
            entry.Done = true;
        }
    }

    private void Complete(DeferredPublish entry)
    {
        var code = entry.Code;
        if (!code.IsSuccess())
        {
            entry.Message?.Release();
            if (IsV5)
            {
                Send(new PublishAckPacket(PacketType.PubAck, entry.PacketId, code));
            }
            else
            {
                // 3.1.1 has no way to say no: close, so that the client knows nothing was kept.
                Close(code, null, publishWill: true);
            }
        }
        else
        {
            if (entry.Message is { } message)
            {
                var deliveries = _broker.RouteFromClient(message, out var congested);
                message.Release();
                if (congested is not null)
                {
                    // Routed off the read loop: the read loop waits for room before the next PUBLISH.
                    Volatile.Write(ref _congestedOn, congested);
                }

                if (deliveries == 0 && IsV5)
                {
                    code = ReasonCode.NoMatchingSubscribers;
                }
            }

            SendAck(PacketType.PubAck, entry.PacketId, IsV5 ? code : ReasonCode.Success);
        }

        entry.Message = null;
        entry.Channel = null;
        s_deferredPool.Return(entry);
    }

    /// <summary>
    /// One QoS 1 publish waiting for its observer, or, on a cluster node, for the other nodes it was forwarded to;
    /// pooled, with its continuation bound once.
    /// </summary>
    private sealed class DeferredPublish : IForwardReceipt
    {
        public DeferredPublish() => Continuation = OnObserved;

        public MqttChannel? Channel;
        public ushort PacketId;
        public BrokerMessage? Message;
        public PooledBuffer? PayloadOwner;
        public ReasonCode Code;
        public volatile bool Done;
        public ValueTaskAwaiter<ReasonCode> Awaiter;
        public readonly Action Continuation;

        private void OnObserved()
        {
            ReasonCode code;
            try
            {
                code = Awaiter.GetResult();
            }
            catch (Exception)
            {
                code = ReasonCode.UnspecifiedError;
            }

            Awaiter = default;
            Code = code;
            PayloadOwner?.Release();
            PayloadOwner = null;
            var channel = Channel!;
            Done = true;
            channel.DrainDeferred();
        }

        /// <summary>The other nodes have the routed message: its acknowledgement can go, in turn.</summary>
        public void OnForwarded()
        {
            var channel = Channel!;
            Done = true;
            channel.DrainDeferred();
        }
    }
}
