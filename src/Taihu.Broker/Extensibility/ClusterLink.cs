using Taihu.Broker.Routing;

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
    /// A message accepted on this node (a client's publish, a will, a server publish): hands a copy to each other
    /// node whose subscribers' filters match it, in the order of the calls, and returns how many nodes that is.
    /// Must not keep <paramref name="message"/> past the call (copy what is sent).
    /// </summary>
    int Forward(BrokerMessage message);

    /// <summary>
    /// Before a client's session is attached here: makes this node the owner of the session of (<paramref name="ns"/>,
    /// <paramref name="owner"/>, <paramref name="clientId"/>) cluster-wide, and ends it on the node that had it
    /// (its connection closed with 0x8E), if another.
    /// </summary>
    ValueTask ClaimSessionAsync(string ns, string owner, string clientId, CancellationToken cancellationToken);
}
