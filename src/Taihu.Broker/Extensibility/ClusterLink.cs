using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Extensibility;

/// <summary>
/// What the broker asks of a cluster when the server is a node of one (<c>Cluster:Enabled</c>); absent on a single
/// server, where none of this is called. The broker keeps matching and delivering to its own subscribers; the link
/// tells the other nodes which filters this node's subscribers hold, forwards a publish to the nodes whose
/// subscribers want it, and makes this node the one owner of a client's session cluster-wide. The other way, the
/// link hands the broker what other nodes send with <see cref="MqttBroker.RouteFromNode"/> and
/// <see cref="MqttBroker.EndSessionTakenOver"/>.
/// </summary>
public interface IMqttClusterLink
{
    /// <summary>
    /// A (non-shared) filter in <paramref name="ns"/> got its first subscriber on this node. Called under the
    /// subscription trie's write lock, in the order of the changes: record it and return at once.
    /// </summary>
    void OnRouteAdded(string ns, string filter);

    /// <summary>The last subscriber of a filter on this node went (see <see cref="OnRouteAdded"/>).</summary>
    void OnRouteRemoved(string ns, string filter);

    /// <summary>
    /// The shared group <paramref name="group"/> (<c>$share/{group}/{filter}</c>) got its first member on this
    /// node. Called under the subscription trie's write lock, in the order of the changes: record it and return.
    /// </summary>
    void OnSharedRouteAdded(string ns, string group, string filter);

    /// <summary>The shared group's last member on this node went (see <see cref="OnSharedRouteAdded"/>).</summary>
    void OnSharedRouteRemoved(string ns, string group, string filter);

    /// <summary>
    /// A message accepted on this node (a client's publish, a will, a server publish): hands a copy to each other
    /// node whose subscribers' filters match it, and, when it sets a retained message (RETAIN, outside
    /// <c>$SYS</c>), to every other node, so that each node keeps the same retained messages
    /// (<see cref="MqttBroker.RouteFromNode"/>). A shared group with members on this node gets it here only; one
    /// with members on other nodes only gets it on one of them, named with the copy sent there. In the order of the
    /// calls; returns how many nodes it went to for their subscribers.
    /// Must not keep <paramref name="message"/> past the call (copy what is sent).
    /// </summary>
    int Forward(BrokerMessage message);

    /// <summary>
    /// Whether a client's QoS 1 and 2 messages are acknowledged (PUBACK, PUBREC) only once every other node they were
    /// forwarded to for its subscribers has them (<see cref="Forward(BrokerMessage, IForwardReceipt)"/>): a node
    /// that dies then loses no message its publisher was told was accepted. False by default.
    /// </summary>
    bool AcknowledgesAfterForward => false;

    /// <summary>
    /// <see cref="Forward(BrokerMessage)"/> for a client's QoS 1 or 2 message whose acknowledgement waits: when it
    /// returns more than 0, <paramref name="receipt"/> is told once (<see cref="IForwardReceipt.OnForwarded"/>), when
    /// every node it went to for its subscribers has it or was declared dead, possibly before this returns; when it
    /// returns 0, never.
    /// </summary>
    int Forward(BrokerMessage message, IForwardReceipt receipt)
    {
        ArgumentNullException.ThrowIfNull(receipt);
        var nodes = Forward(message);
        if (nodes > 0)
        {
            receipt.OnForwarded();
        }

        return nodes;
    }

    /// <summary>
    /// Before a client's session is attached here: makes this node the owner of the session of (<paramref name="ns"/>,
    /// <paramref name="owner"/>, <paramref name="clientId"/>) cluster-wide, and ends it on the node that had it
    /// (its connection closed with 0x8E), if another; returns what that node held of it.
    /// </summary>
    ValueTask<ClaimedSession> ClaimSessionAsync(string ns, string owner, string clientId, CancellationToken cancellationToken);

    /// <summary>
    /// A client with a will connected here: the cluster keeps a copy, so that the other nodes can send it should
    /// this node die (<paramref name="topic"/> in the broker's topic space). Called once per CONNECT that carries a
    /// will, never for others: record it and return at once (the payload is valid only during the call).
    /// </summary>
    void OnWillSet(string ns, string owner, string clientId, string topic, ReadOnlySpan<byte> payload, QoS qos, bool retain, MqttProperties? properties, uint delay)
    {
    }

    /// <summary>
    /// This node has handled the will recorded with <see cref="OnWillSet"/>: sent it, or dropped it (a normal
    /// DISCONNECT, a reconnection within its delay). Called only for clients that had one.
    /// </summary>
    void OnWillDone(string ns, string owner, string clientId)
    {
    }

    /// <summary>
    /// A session this node held has ended here (its clean session's connection went, or it expired): the cluster may
    /// forget that this node holds it. <paramref name="claim"/> is the <see cref="ClaimedSession.Claim"/> that gave it
    /// to this node. Not called for a session taken over by another node. Return at once.
    /// </summary>
    void OnSessionEnded(string ns, string owner, string clientId, long claim)
    {
    }
}

/// <summary>Told once that the other nodes a client's message was forwarded to have it (see <see cref="IMqttClusterLink.Forward(BrokerMessage, IForwardReceipt)"/>).</summary>
public interface IForwardReceipt
{
    /// <summary>Every node the message went to for its subscribers has it, or was declared dead. Return at once.</summary>
    void OnForwarded();
}

/// <summary>What a claim of a session found on the node that held it before (see <see cref="IMqttClusterLink.ClaimSessionAsync"/>).</summary>
/// <param name="Known">
/// A live node held the session: this node (whose own sessions say what there is), or another that ended it, and
/// then <paramref name="Session"/> is what it held (null when nothing persistent). False when no node was known to
/// hold it, that node is dead, or the cluster did not answer: the broker then looks in its state store for the
/// session's last snapshot.
/// </param>
/// <param name="Session">The persistent session as it was when it ended on the other node, its payloads copied, or null.</param>
/// <param name="Claim">
/// The cluster's number for this claim (0 when it has none): the session keeps it, and gives it back with
/// <see cref="IMqttClusterLink.OnSessionEnded"/>, so that the end of a session is not taken for the end of a newer one.
/// </param>
public readonly record struct ClaimedSession(bool Known, StoredSession? Session, long Claim = 0);

/// <summary>A shared group on a filter (<c>$share/{Group}/{Filter}</c>) that a message forwarded from another node is for.</summary>
public readonly record struct SharedRoute(string Group, string Filter);
