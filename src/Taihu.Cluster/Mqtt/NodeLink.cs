using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Runtime.Services;
using Orleans.Services;

namespace Taihu.Cluster.Mqtt;

/// <summary>
/// Each node's MQTT link, one per node (an Orleans GrainService: it lives on its node and is addressed by the node),
/// so that nodes talk to each other directly: route changes, forwarded messages, and session takeovers.
/// </summary>
public interface INodeLinkService : IGrainService
{
    /// <summary>
    /// A batch from <paramref name="sender"/>, in the order it sent them: its route changes (which filters its
    /// subscribers hold) and the messages for this node's subscribers.
    /// </summary>
    Task Receive(SiloAddress sender, NodeBatch batch);

    /// <summary>
    /// A connection on another node took the session of the client over: end it here, and return what it held if it
    /// was persistent (null when there was none, or it was not).
    /// </summary>
    Task<TransferredSession?> EndSession(string ns, string owner, string clientId);

    /// <summary>
    /// For each client given as namespace, owner, client id, ...: whether this node holds its session (connected
    /// or away). Asked by the node succeeding a dead one, to leave alone the clients that live nodes hold.
    /// </summary>
    Task<bool[]> HoldsSessions(string[] keys);

    /// <summary>
    /// The sessions this node holds (connected or away) whose client is in session registry partition
    /// <paramref name="partition"/>, with their claims: asked by the partition when it is activated again after its node died.
    /// </summary>
    Task<HeldSession[]> SessionsIn(int partition);
}

/// <summary>Reaches another node's <see cref="INodeLinkService"/>.</summary>
public interface INodeLinkClient
{
    INodeLinkService On(SiloAddress node);
}

internal sealed class NodeLinkClient(IServiceProvider services) : GrainServiceClient<INodeLinkService>(services), INodeLinkClient
{
    public INodeLinkService On(SiloAddress node) => GetGrainService(node);
}

/// <summary>The node's end of the links: hands what other nodes send to <see cref="ClusterMqttLink"/>.</summary>
[Reentrant]
internal sealed class NodeLinkService(GrainId id, Silo silo, ILoggerFactory loggerFactory, ClusterMqttLink link)
    : GrainService(id, silo, loggerFactory), INodeLinkService
{
    public Task Receive(SiloAddress sender, NodeBatch batch)
    {
        link.Receive(sender, batch);
        return Task.CompletedTask;
    }

    public Task<TransferredSession?> EndSession(string ns, string owner, string clientId) => Task.FromResult(link.EndSession(ns, owner, clientId));

    public Task<bool[]> HoldsSessions(string[] keys) => Task.FromResult(link.HoldsSessions(keys));

    public Task<HeldSession[]> SessionsIn(int partition) => Task.FromResult(link.SessionsIn(partition));
}

/// <summary>
/// What one node sends another in one call. Batches from a node to another are numbered from 1 and sent one at a
/// time, each after the last was answered; a batch sent again after a failed call is recognised by its number and
/// applied once.
/// </summary>
[GenerateSerializer]
public sealed class NodeBatch
{
    [Id(0)] public long Sequence { get; set; }

    /// <summary>Route changes, in order: the sender's subscribers now hold (Added) or no longer hold a filter.</summary>
    [Id(1)] public List<RouteChange>? Routes { get; set; }

    /// <summary>Messages accepted on the sender for this node's subscribers, in the order they were accepted.</summary>
    [Id(2)] public List<ForwardedMessage>? Messages { get; set; }

    /// <summary>
    /// The sender's retained messages, sent once to a node that joined after it, before any message: each kept
    /// unless the receiver holds a newer one for its topic. Applied before <see cref="Messages"/>.
    /// </summary>
    [Id(3)] public List<ForwardedMessage>? Retained { get; set; }
}

[GenerateSerializer]
[Immutable]
public sealed record RouteChange([property: Id(0)] string Namespace, [property: Id(1)] string Filter, [property: Id(2)] bool Added,
    [property: Id(3)] string? Group = null);

/// <summary>A copy of an accepted message, as the receiving node's broker needs it.</summary>
[GenerateSerializer]
[Immutable]
public sealed class ForwardedMessage
{
    [Id(0)] public required string Namespace { get; init; }
    [Id(1)] public required string Topic { get; init; }
    [Id(2)] public required byte[] Payload { get; init; }
    [Id(3)] public byte QoS { get; init; }
    [Id(4)] public bool Retain { get; init; }
    [Id(5)] public DateTimeOffset ReceivedAt { get; init; }
    [Id(6)] public string? OriginClientId { get; init; }
    [Id(7)] public string OriginOwner { get; init; } = "";
    [Id(8)] public byte? PayloadFormatIndicator { get; init; }
    [Id(9)] public uint? MessageExpiryInterval { get; init; }
    [Id(10)] public string? ContentType { get; init; }
    [Id(11)] public string? ResponseTopic { get; init; }
    [Id(12)] public byte[]? CorrelationData { get; init; }

    /// <summary>User properties as name, value, name, value ...</summary>
    [Id(13)] public string[]? UserProperties { get; init; }

    /// <summary>
    /// The shared groups the receiving node gets it for, as group, filter, group, filter ...: the sender chose that
    /// node for them. The receiver's other shared groups do not get it.
    /// </summary>
    [Id(14)] public string[]? SharedGroups { get; init; }

    /// <summary>The same message for a node chosen for <paramref name="sharedGroups"/> (the arrays are shared, not copied).</summary>
    public ForwardedMessage ForSharedGroups(string[] sharedGroups) => new()
    {
        Namespace = Namespace,
        Topic = Topic,
        Payload = Payload,
        QoS = QoS,
        Retain = Retain,
        ReceivedAt = ReceivedAt,
        OriginClientId = OriginClientId,
        OriginOwner = OriginOwner,
        PayloadFormatIndicator = PayloadFormatIndicator,
        MessageExpiryInterval = MessageExpiryInterval,
        ContentType = ContentType,
        ResponseTopic = ResponseTopic,
        CorrelationData = CorrelationData,
        UserProperties = UserProperties,
        SharedGroups = sharedGroups,
    };
}
