using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Topics;

namespace Taihu.Broker;

/// <summary>SUBSCRIBE and UNSUBSCRIBE, and retained messages for new subscriptions.</summary>
public sealed partial class MqttChannel
{
    private async ValueTask<bool> HandleSubscribeAsync(SubscribePacket subscribe, CancellationToken cancellationToken)
    {
        var options = _broker.Options;
        var session = _session!;
        var state = _broker.GetNamespace(_identity.Namespace);
        var subscriptionId = subscribe.Properties?.SubscriptionIdentifiers is [var id, ..] ? id : 0u;
        var ack = new SubAckPacket { PacketId = subscribe.PacketId };
        List<(Subscription Subscription, bool IsNew)>? granted = null;
        foreach (var requested in subscribe.Subscriptions)
        {
            var raw = _identity.Topics is { } map ? map.FilterToBroker(requested.Filter) : requested.Filter;
            var filter = raw;
            string? group = null;
            if (TopicValidator.TryParseShared(raw, out var shareGroup, out var sharedFilter, out var validShared))
            {
                if (!options.SharedSubscriptionsEnabled)
                {
                    ack.ReasonCodes.Add(ReasonCode.SharedSubscriptionsNotSupported);
                    continue;
                }

                if (!validShared)
                {
                    ack.ReasonCodes.Add(ReasonCode.TopicFilterInvalid);
                    continue;
                }

                if (requested.NoLocal && IsV5)
                {
                    return await Fail(ReasonCode.ProtocolError, "No Local may not be set on a shared subscription.");
                }

                group = shareGroup;
                filter = sharedFilter;
            }

            if (!TopicValidator.IsValidTopicFilter(filter) || !CheckTopicLimits(filter, out _))
            {
                ack.ReasonCodes.Add(ReasonCode.TopicFilterInvalid);
                continue;
            }

            var authorization = await _broker.Authorizer.AuthorizeSubscribeAsync(_identity, ClientId!, raw, cancellationToken);
            if (authorization != ReasonCode.Success)
            {
                ack.ReasonCodes.Add(authorization);
                continue;
            }

            var subscription = new Subscription
            {
                Session = session,
                Filter = filter,
                RawFilter = raw,
                ShareGroup = group,
                QoS = requested.MaximumQoS,
                NoLocal = requested.NoLocal,
                RetainAsPublished = requested.RetainAsPublished,
                RetainHandling = requested.RetainHandling,
                SubscriptionId = subscriptionId,
            };
            session.Subscribe(raw, subscription);

            var isNew = state.Trie.Add(subscription);
            (granted ??= []).Add((subscription, isNew));
            ack.ReasonCodes.Add((ReasonCode)(byte)requested.MaximumQoS);
        }

        if (granted is not null)
        {
            _broker.OnSubscriptionsChanged();
        }

        // SUBACK goes first; retained messages for the new subscriptions follow it.
        Send(ack);
        if (granted is not null)
        {
            SendRetained(state, session, granted);
            if (_broker.LifecycleObserver is { } observer)
            {
                foreach (var (subscription, _) in granted)
                {
                    observer.OnSubscribed(_identity, ClientId!, subscription.RawFilter, subscription.QoS);
                }
            }
        }

        return true;
    }

    private void SendRetained(NamespaceState state, MqttSession session, List<(Subscription Subscription, bool IsNew)> granted)
    {
        var now = _broker.Time.GetUtcNow();
        var retained = new List<BrokerMessage>();
        foreach (var (subscription, isNew) in granted)
        {
            // Retained messages are not sent for shared subscriptions (5.0 section 4.8.2).
            if (subscription.ShareGroup is not null || subscription.RetainHandling == RetainHandling.DoNotSend
                || (subscription.RetainHandling == RetainHandling.SendIfNewSubscription && !isNew))
            {
                continue;
            }

            state.Retained.CollectMatching(subscription.Filter, now, retained);
            foreach (var message in retained)
            {
                var qos = (QoS)Math.Min((int)message.QoS, (int)subscription.QoS);
                var ids = subscription.SubscriptionId != 0 ? new List<uint> { subscription.SubscriptionId } : null;
                _broker.Deliver(session, message, qos, retain: true, ids, group: null);
                message.Release();
            }

            retained.Clear();
        }
    }

    private bool HandleUnsubscribe(UnsubscribePacket unsubscribe)
    {
        var session = _session!;
        var trie = _broker.GetNamespace(_identity.Namespace).Trie;
        var ack = new UnsubAckPacket { PacketId = unsubscribe.PacketId };
        foreach (var requested in unsubscribe.Filters)
        {
            var raw = _identity.Topics is { } map ? map.FilterToBroker(requested) : requested;
            var removed = session.Unsubscribe(raw);
            if (removed is null)
            {
                ack.ReasonCodes.Add(TopicValidator.IsValidTopicFilter(raw) ? ReasonCode.NoSubscriptionExisted : ReasonCode.TopicFilterInvalid);
                continue;
            }

            trie.Remove(session, removed.Filter, removed.ShareGroup);
            ack.ReasonCodes.Add(ReasonCode.Success);
            _broker.OnSubscriptionsChanged();
        }

        Send(ack);
        return true;
    }
}
