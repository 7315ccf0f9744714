using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Extensibility;

/// <summary>
/// Keeps the broker's state across restarts, as Mosquitto's <c>persistence true</c> does: retained messages and
/// persistent sessions (Session Expiry Interval above 0, or 3.1.1 Clean Session 0). Optional: without one the
/// broker keeps everything in memory only.
/// <para>
/// The broker never calls the store on the path of a message. Retained changes are buffered (the latest per
/// namespace and topic) and handed over every <see cref="BrokerOptions.StateFlushInterval"/>; the sessions that
/// changed are handed over every <see cref="BrokerOptions.SessionSnapshotInterval"/>, soon after a subscription
/// changes, and at a graceful stop. Calls come from one background loop, one at a time. A call that throws is
/// logged and its changes are handed over again at the next round.
/// </para>
/// </summary>
public interface IBrokerStateStore
{
    /// <summary>Everything saved before; called once at start, before any client can connect.</summary>
    Task<StoredBrokerState> LoadAsync(CancellationToken cancellationToken);

    /// <summary>
    /// One stored session, or null: on a cluster node, where sessions are not loaded at start, the last snapshot of
    /// a session whose node is gone, when its client connects again. Payloads given here are kept by the broker.
    /// </summary>
    Task<StoredSession?> LoadSessionAsync(SessionKey key, CancellationToken cancellationToken);

    /// <summary>
    /// Stores or replaces (a message) or deletes (no message) the retained message of each (namespace, topic),
    /// at most one change each. Payloads are valid only until the returned task completes.
    /// </summary>
    Task SaveRetainedAsync(IReadOnlyList<RetainedChange> changes, CancellationToken cancellationToken);

    /// <summary>
    /// Replaces each session in <paramref name="changed"/> (its subscriptions and messages included) and deletes
    /// the sessions in <paramref name="removed"/>. Payloads are valid only until the returned task completes.
    /// </summary>
    Task SaveSessionsAsync(IReadOnlyList<StoredSession> changed, IReadOnlyList<SessionKey> removed, CancellationToken cancellationToken);
}

/// <summary>What a state store returns at start. Payloads given to the broker here are kept by it as they are.</summary>
public sealed class StoredBrokerState
{
    public static readonly StoredBrokerState Empty = new();

    public IReadOnlyList<RetainedChange> Retained { get; init; } = [];

    public IReadOnlyList<StoredSession> Sessions { get; init; } = [];
}

/// <summary>An application message as stored: what was published, and when (its Message Expiry Interval runs from then).</summary>
public sealed class StoredMessage
{
    public required string Topic { get; init; }
    public required ReadOnlyMemory<byte> Payload { get; init; }
    /// <summary>The QoS it was published with.</summary>
    public QoS QoS { get; init; }
    /// <summary>The RETAIN flag it was published with.</summary>
    public bool Retain { get; init; }
    /// <summary>
    /// The properties it carries to subscribers, or null. <see cref="PropertyCodec.EncodeMessageProperties"/> and
    /// <see cref="PropertyCodec.DecodeMessageProperties"/> turn them into bytes and back.
    /// </summary>
    public MqttProperties? Properties { get; init; }
    public DateTimeOffset ReceivedAt { get; init; }
}

/// <summary>The retained message of one topic in one namespace; a null <see cref="Message"/> means it was deleted.</summary>
public readonly record struct RetainedChange(string Namespace, string Topic, StoredMessage? Message);

/// <summary>A session's identity: its client id, within its namespace, of its owner ("" for none; see <see cref="ClientIdentity.SessionOwner"/>).</summary>
public readonly record struct SessionKey(string Namespace, string ClientId, string Owner = "");

/// <summary>One subscription of a stored session, with all its options.</summary>
/// <param name="Filter">The filter as the client subscribed to it, <c>$share/{group}/</c> included, in the broker's topic space.</param>
public sealed record StoredSubscription(string Filter, QoS QoS, bool NoLocal, bool RetainAsPublished, RetainHandling RetainHandling, uint SubscriptionId);

/// <summary>
/// A QoS 1 or 2 delivery a session owes its client: sent and not yet acknowledged (<see cref="PacketId"/> not 0;
/// <see cref="Released"/> once PUBREC came and PUBREL went), or queued and not yet sent (<see cref="PacketId"/> 0).
/// </summary>
public sealed record StoredDelivery(StoredMessage Message, QoS QoS, bool Retain, IReadOnlyList<uint>? SubscriptionIds, ushort PacketId, bool Released);

/// <summary>A persistent session as stored.</summary>
public sealed class StoredSession
{
    public required string Namespace { get; init; }
    public required string ClientId { get; init; }

    /// <summary>The identity that owns it (<see cref="ClientIdentity.SessionOwner"/>), or "" for none.</summary>
    public string Owner { get; init; } = "";

    /// <summary>Seconds the session lives once its client is away; uint.MaxValue is never. Counted from the restart.</summary>
    public uint ExpiryInterval { get; init; }

    public IReadOnlyList<StoredSubscription> Subscriptions { get; init; } = [];

    /// <summary>Unacknowledged deliveries first (in the order sent), then queued ones (in the order to send).</summary>
    public IReadOnlyList<StoredDelivery> Deliveries { get; init; } = [];

    /// <summary>Packet identifiers of QoS 2 messages received from the client and not yet released (PUBREL).</summary>
    public IReadOnlyList<ushort> IncomingQoS2 { get; init; } = [];

    public SessionKey Key => new(Namespace, ClientId, Owner);
}
