using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Sessions;

/// <summary>
/// Where a session sends while its client is connected: the connection's outbound queue, seen only through what
/// the session needs of it. A session holds this, never the connection itself, so that its state can be driven
/// without sockets and moved elsewhere (a session grain) without taking a connection with it.
/// </summary>
internal interface ISessionOutput
{
    /// <summary>How many QoS 1/2 deliveries may be unacknowledged at once (the client's Receive Maximum, capped by the broker's).</summary>
    int SendQuota { get; }

    /// <summary>Queues one delivery for the socket; takes its own payload reference. QoS 0 may be dropped when the queue is full.</summary>
    void EnqueuePublish(BrokerMessage message, QoS qos, bool retain, bool dup, ushort packetId, List<uint>? subscriptionIds);

    /// <summary>Queues PUBACK, PUBREC, PUBREL or PUBCOMP.</summary>
    void EnqueueAck(PacketType type, ushort packetId, ReasonCode code);

    /// <summary>Another connection took the session over: tell this one (0x8E) and close it.</summary>
    void Kick();
}

/// <summary>What every session of one broker shares: its limits, its clock and its counters.</summary>
internal sealed class SessionServices(BrokerOptions options, TimeProvider time, BrokerMetrics metrics)
{
    public BrokerOptions Options { get; } = options;
    public TimeProvider Time { get; } = time;
    public BrokerMetrics Metrics { get; } = metrics;
}

/// <summary>What became of one delivery handed to a session.</summary>
internal enum DeliveryResult
{
    /// <summary>Sent, queued, or (QoS 0 to an absent client, or an ended session) left out as the protocol allows.</summary>
    Accepted,

    /// <summary>Queued past the session's limits because the publisher may be held back: it must wait for room.</summary>
    Congested,

    /// <summary>Dropped: the queue is full (counted with its reason).</summary>
    Dropped,
}

/// <summary>What an acknowledgement from the client did to the session's messages in flight.</summary>
internal enum AckResult
{
    /// <summary>No delivery in flight has that packet identifier (tolerated: it can follow a resend or a restart).</summary>
    Unknown,

    /// <summary>The delivery is complete and left the session.</summary>
    Completed,

    /// <summary>QoS 2: PUBREC accepted; PUBREL is to be sent.</summary>
    Released,

    /// <summary>The acknowledgement names a delivery in flight but does not fit it: a protocol error.</summary>
    Mismatch,
}

/// <summary>What an incoming QoS 2 PUBLISH is, against the packet identifiers received and not yet released.</summary>
internal enum IncomingQoS2Check
{
    New,
    Duplicate,
    OverLimit,
}
