using Orleans;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Cluster.Mqtt;

/// <summary>
/// A persistent session on its way from the node that held it to the node that takes it over: what the broker
/// keeps in a state store (<see cref="StoredSession"/>), in a form Orleans serializes. Message properties travel as
/// the property block of a 5.0 PUBLISH, as the state store keeps them.
/// </summary>
[GenerateSerializer]
public sealed class TransferredSession
{
    [Id(0)] public uint ExpiryInterval { get; init; }
    [Id(1)] public required List<TransferredSubscription> Subscriptions { get; init; }

    /// <summary>Unacknowledged deliveries first (in the order sent), then queued ones (in the order to send).</summary>
    [Id(2)] public required List<TransferredDelivery> Deliveries { get; init; }
    [Id(3)] public required ushort[] IncomingQoS2 { get; init; }

    public static TransferredSession From(StoredSession session)
    {
        ArgumentNullException.ThrowIfNull(session);
        var subscriptions = new List<TransferredSubscription>(session.Subscriptions.Count);
        foreach (var s in session.Subscriptions)
        {
            subscriptions.Add(new TransferredSubscription(s.Filter, (byte)s.QoS, s.NoLocal, s.RetainAsPublished, (byte)s.RetainHandling, s.SubscriptionId));
        }

        var deliveries = new List<TransferredDelivery>(session.Deliveries.Count);
        foreach (var d in session.Deliveries)
        {
            var m = d.Message;
            deliveries.Add(new TransferredDelivery
            {
                Topic = m.Topic,
                Payload = m.Payload.ToArray(),
                MessageQoS = (byte)m.QoS,
                MessageRetain = m.Retain,
                Properties = PropertyCodec.EncodeMessageProperties(m.Properties),
                ReceivedAt = m.ReceivedAt,
                QoS = (byte)d.QoS,
                Retain = d.Retain,
                SubscriptionIds = d.SubscriptionIds is { Count: > 0 } ids ? [.. ids] : null,
                PacketId = d.PacketId,
                Released = d.Released,
            });
        }

        return new TransferredSession
        {
            ExpiryInterval = session.ExpiryInterval,
            Subscriptions = subscriptions,
            Deliveries = deliveries,
            IncomingQoS2 = [.. session.IncomingQoS2],
        };
    }

    /// <summary>The session as the broker restores it, for the client of (<paramref name="ns"/>, <paramref name="owner"/>, <paramref name="clientId"/>).</summary>
    public StoredSession ToStored(string ns, string owner, string clientId)
    {
        var subscriptions = new List<StoredSubscription>(Subscriptions.Count);
        foreach (var s in Subscriptions)
        {
            subscriptions.Add(new StoredSubscription(s.Filter, (QoS)s.QoS, s.NoLocal, s.RetainAsPublished, (RetainHandling)s.RetainHandling, s.SubscriptionId));
        }

        var deliveries = new List<StoredDelivery>(Deliveries.Count);
        foreach (var d in Deliveries)
        {
            var message = new StoredMessage
            {
                Topic = d.Topic,
                Payload = d.Payload,
                QoS = (QoS)d.MessageQoS,
                Retain = d.MessageRetain,
                Properties = d.Properties is null ? null : PropertyCodec.DecodeMessageProperties(d.Properties),
                ReceivedAt = d.ReceivedAt,
            };
            deliveries.Add(new StoredDelivery(message, (QoS)d.QoS, d.Retain, d.SubscriptionIds, d.PacketId, d.Released));
        }

        return new StoredSession
        {
            Namespace = ns,
            ClientId = clientId,
            Owner = owner,
            ExpiryInterval = ExpiryInterval,
            Subscriptions = subscriptions,
            Deliveries = deliveries,
            IncomingQoS2 = IncomingQoS2,
        };
    }
}

/// <summary>One subscription of a <see cref="TransferredSession"/>, with all its options.</summary>
[GenerateSerializer]
[Immutable]
public sealed record TransferredSubscription(
    [property: Id(0)] string Filter,
    [property: Id(1)] byte QoS,
    [property: Id(2)] bool NoLocal,
    [property: Id(3)] bool RetainAsPublished,
    [property: Id(4)] byte RetainHandling,
    [property: Id(5)] uint SubscriptionId);

/// <summary>One delivery a <see cref="TransferredSession"/> owes its client: the message, and how it goes to this client.</summary>
[GenerateSerializer]
public sealed class TransferredDelivery
{
    [Id(0)] public required string Topic { get; init; }
    [Id(1)] public required byte[] Payload { get; init; }
    [Id(2)] public byte MessageQoS { get; init; }
    [Id(3)] public bool MessageRetain { get; init; }
    [Id(4)] public byte[]? Properties { get; init; }
    [Id(5)] public DateTimeOffset ReceivedAt { get; init; }
    [Id(6)] public byte QoS { get; init; }
    [Id(7)] public bool Retain { get; init; }
    [Id(8)] public uint[]? SubscriptionIds { get; init; }

    /// <summary>0 for a delivery queued and not yet sent.</summary>
    [Id(9)] public ushort PacketId { get; init; }
    [Id(10)] public bool Released { get; init; }
}
