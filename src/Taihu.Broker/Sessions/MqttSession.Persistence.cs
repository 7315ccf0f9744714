using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Sessions;

/// <summary>The session's copy for a state store, and its restore at start.</summary>
public sealed partial class MqttSession
{
    // ------------------------------------------------------------------------------------------------ persistence

    /// <summary>
    /// For a state store: whether the session is one it keeps (persistent, not ended), and, when it changed since
    /// the last snapshot or the store does not know it (<paramref name="stored"/> false), a copy of it. Payloads are
    /// not copied: each message gets a reference, added to <paramref name="held"/>, that the caller releases once
    /// the store is done.
    /// </summary>
    internal bool TrySnapshot(bool stored, List<BrokerMessage> held, out StoredSession? snapshot)
    {
        lock (_gate)
        {
            snapshot = null;
            if (_ended || _expiryInterval == 0)
            {
                return false;
            }

            if (_stateChanged || !stored)
            {
                _stateChanged = false;
                snapshot = ToStored(held);
            }

            return true;
        }
    }

    /// <summary>A snapshot could not be written: the next round writes the session again.</summary>
    internal void MarkChanged()
    {
        lock (_gate)
        {
            _stateChanged = true;
        }
    }

    /// <summary>
    /// Fills a session loaded from a state store, before any connection can reach it: its subscriptions (already
    /// parsed by the broker), its deliveries in flight and queued, its incoming QoS 2 identifiers. Returns whether
    /// everything stored was taken (false when something was left out, so the next snapshot rewrites it).
    /// </summary>
    internal bool Restore(StoredSession stored, List<Subscription> subscriptions, DateTimeOffset now, Func<StoredMessage, BrokerMessage> load)
    {
        lock (_gate)
        {
            _expiryInterval = stored.ExpiryInterval;
            _disconnectedAt = now;
            var complete = subscriptions.Count == stored.Subscriptions.Count;
            foreach (var subscription in subscriptions)
            {
                Subscriptions[subscription.RawFilter] = subscription;
            }

            foreach (var delivery in stored.Deliveries)
            {
                var ids = delivery.SubscriptionIds is { Count: > 0 } list ? new List<uint>(list) : null;
                if (delivery.PacketId != 0)
                {
                    if (FindInflight(delivery.PacketId) >= 0)
                    {
                        complete = false;
                        continue;
                    }

                    // A delivery that was in flight through a shared subscription stays with this session: the group
                    // it came through may not exist any more, and its client is the one that may have it already.
                    Inflight.Add(new InflightMessage
                    {
                        PacketId = delivery.PacketId,
                        Message = load(delivery.Message),
                        QoS = delivery.QoS,
                        Retain = delivery.Retain,
                        SubscriptionIds = ids,
                        Released = delivery.Released,
                    });
                }
                else if (Queue.Count < Options.MaximumQueuedMessages)
                {
                    EnqueuePending(new PendingDelivery(load(delivery.Message), delivery.QoS, delivery.Retain, ids, Group: null));
                }
                else
                {
                    _services.Metrics.MessageDropped(DropReasons.QueueFull);
                    complete = false;
                }
            }

            foreach (var packetId in stored.IncomingQoS2)
            {
                IncomingQoS2.Add(packetId);
            }

            // It is what the store holds, unless something was left out above.
            _stateChanged = !complete;
            return complete;
        }
    }

    /// <summary>Copies the session for a state store (see <see cref="TrySnapshot"/>).</summary>
    private StoredSession ToStored(List<BrokerMessage> held)
    {
        var subscriptions = new StoredSubscription[_subscriptions?.Count ?? 0];
        if (_subscriptions is not null)
        {
            var i = 0;
            foreach (var subscription in _subscriptions.Values)
            {
                subscriptions[i++] = new StoredSubscription(subscription.RawFilter, subscription.QoS, subscription.NoLocal, subscription.RetainAsPublished, subscription.RetainHandling, subscription.SubscriptionId);
            }
        }

        var deliveries = new List<StoredDelivery>((_inflight?.Count ?? 0) + (_queue?.Count ?? 0));
        if (_inflight is not null)
        {
            foreach (var inflight in _inflight)
            {
                inflight.Message.AddReference();
                held.Add(inflight.Message);
                deliveries.Add(new StoredDelivery(BrokerPersistence.ToStored(inflight.Message), inflight.QoS, inflight.Retain, inflight.SubscriptionIds, inflight.PacketId, inflight.Released));
            }
        }

        if (_queue is not null)
        {
            foreach (var pending in _queue)
            {
                pending.Message.AddReference();
                held.Add(pending.Message);
                deliveries.Add(new StoredDelivery(BrokerPersistence.ToStored(pending.Message), pending.QoS, pending.Retain, pending.SubscriptionIds, PacketId: 0, Released: false));
            }
        }

        return new StoredSession
        {
            Namespace = Namespace,
            ClientId = ClientId,
            Owner = Owner,
            ExpiryInterval = _expiryInterval,
            Subscriptions = subscriptions,
            Deliveries = deliveries,
            IncomingQoS2 = _incomingQoS2 is { Count: > 0 } incoming ? [.. incoming] : [],
        };
    }
}
