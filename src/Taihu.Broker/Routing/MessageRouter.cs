using System.Collections.Concurrent;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Routing;

/// <summary>A namespace's subscriptions and retained messages. Tenants are namespaces: they never see each other's topics.</summary>
internal sealed class NamespaceState(string ns, bool tracksRetainedChanges, IMqttClusterLink? clusterLink)
{
    public SubscriptionTrie Trie { get; } = new(ns, clusterLink);
    public RetainedStore Retained { get; } = new(tracksRetainedChanges);
}

/// <summary>
/// Routing and delivery: one subscription trie and one retained store per namespace; a publish is matched against
/// its namespace's trie and one copy is handed to each matching session (<see cref="MqttSession.Deliver"/>), which
/// decides whether it is sent, queued or dropped.
/// </summary>
internal sealed class MessageRouter(BrokerOptions options, TimeProvider time, BrokerMetrics metrics, bool tracksRetainedChanges, IMqttClusterLink? clusterLink = null)
{
    private readonly ConcurrentDictionary<string, NamespaceState> _namespaces = new(StringComparer.Ordinal);

    [ThreadStatic]
    private static RouteScratch? t_scratch;

    private BrokerOptions Options => options;
    private TimeProvider Time => time;
    private BrokerMetrics Metrics => metrics;

    /// <summary>Every namespace with subscriptions or retained messages, walked in place.</summary>
    public ConcurrentDictionary<string, NamespaceState> Namespaces => _namespaces;

    public NamespaceState GetNamespace(string ns) =>
        _namespaces.GetOrAdd(ns, static (key, parts) => new NamespaceState(key, parts.tracksRetainedChanges, parts.clusterLink), (tracksRetainedChanges, clusterLink));

    /// <summary>Retained messages in <paramref name="ns"/>.</summary>
    public int RetainedCount(string ns) => _namespaces.TryGetValue(ns, out var state) ? state.Retained.Count : 0;

    /// <summary>Subscriptions in <paramref name="ns"/>.</summary>
    public int SubscriptionCount(string ns) => _namespaces.TryGetValue(ns, out var state) ? state.Trie.Count : 0;

    /// <summary>Removes the retained messages whose Message Expiry Interval has passed (housekeeping).</summary>
    public void RemoveExpiredRetained(DateTimeOffset now)
    {
        foreach (var (_, state) in _namespaces)
        {
            state.Retained.RemoveExpired(now);
        }
    }

    /// <summary>
    /// A message that reached <paramref name="leaving"/> through a shared subscription and was not acknowledged goes
    /// to another member of its group.
    /// </summary>
    public void RedeliverToGroup(MqttSession leaving, PendingDelivery pending)
    {
        var state = GetNamespace(leaving.Namespace);
        var target = state.Trie.PickSharedMember(pending.Group!, exclude: leaving);
        if (target is null)
        {
            Metrics.MessageDropped(DropReasons.NoSubscribers);
            return;
        }

        Deliver(target.Session, pending.Message, pending.QoS, pending.Retain, pending.SubscriptionIds, pending.Group);
    }

    /// <summary>
    /// Whether a retained publish of this size on <paramref name="topic"/> fits the retained limits of
    /// <paramref name="ns"/> now (<see cref="BrokerOptions.MaximumRetainedMessageSize"/>,
    /// <see cref="BrokerOptions.MaximumRetainedBytesPerNamespace"/>). Checked before a client's retained publish is
    /// accepted, so that a 5.0 publisher can be told 0x97; the store decides for good when it is routed.
    /// </summary>
    public bool CanRetain(string ns, string topic, int payloadLength, MqttProperties? properties)
    {
        var size = RetainedStore.SizeOf(topic, payloadLength, properties);
        return size <= Options.MaximumRetainedMessageSize && GetNamespace(ns).Retained.HasRoomFor(topic, size, Options.MaximumRetainedBytesPerNamespace);
    }

    /// <summary>Stores <paramref name="message"/> if retained, then routes it. The caller keeps its own reference.</summary>
    public int RouteAndRetain(BrokerMessage message) => RouteAndRetain(message, null, out _);

    /// <summary>
    /// <see cref="RouteAndRetain(BrokerMessage)"/>; with a <paramref name="receipt"/>, on a cluster node whose link
    /// acknowledges after forwarding, <paramref name="awaitsNodes"/> says whether the receipt will be told when the
    /// other nodes it was forwarded to have it (see <see cref="IMqttClusterLink.Forward(BrokerMessage, IForwardReceipt)"/>).
    /// </summary>
    public int RouteAndRetain(BrokerMessage message, IForwardReceipt? receipt, out bool awaitsNodes)
    {
        if (message.Retain)
        {
            if (!GetNamespace(message.Namespace).Retained.Set(message, Options.MaximumRetainedMessages, Options.MaximumRetainedMessageSize, Options.MaximumRetainedBytesPerNamespace))
            {
                Metrics.MessageDropped(DropReasons.RetainedLimit);
            }
        }

        // On a cluster node, the other nodes whose subscribers want it get a copy; their subscribers count as matching.
        var remote = clusterLink is null ? 0 : receipt is null ? clusterLink.Forward(message) : clusterLink.Forward(message, receipt);
        awaitsNodes = receipt is not null && remote > 0;
        return Route(message, remote);
    }

    /// <summary>
    /// A retained message that another node accepted: stored or deleted here as there (not written to the state
    /// store by this node). <c>$SYS</c> topics are each node's own and are left alone.
    /// </summary>
    /// <param name="onlyIfNewer">
    /// The message comes from the other node's whole set, sent when this node joined: taken only where this node
    /// holds none for the topic or an older one.
    /// </param>
    public void RetainFromNode(BrokerMessage message, bool onlyIfNewer)
    {
        if (RetainedStore.IsSys(message.Topic))
        {
            return;
        }

        var store = GetNamespace(message.Namespace).Retained;
        var kept = onlyIfNewer
            ? store.SetFromNodeIfNewer(message, Options.MaximumRetainedMessages, Options.MaximumRetainedMessageSize, Options.MaximumRetainedBytesPerNamespace)
            : store.SetFromNode(message, Options.MaximumRetainedMessages, Options.MaximumRetainedMessageSize, Options.MaximumRetainedBytesPerNamespace);
        if (!kept)
        {
            Metrics.MessageDropped(DropReasons.RetainedLimit);
        }
    }

    /// <summary>Adds every live retained message outside <c>$</c> topics, of every namespace, each with a reference the caller releases.</summary>
    public void CollectRetained(List<BrokerMessage> into)
    {
        var now = Time.GetUtcNow();
        foreach (var (_, state) in _namespaces)
        {
            state.Retained.CollectMatching("#", now, into);
        }
    }

    /// <summary>
    /// Delivers <paramref name="message"/> to every matching subscriber in its namespace: one copy per session at
    /// the highest QoS granted among its matching subscriptions (with all their identifiers), and one copy per
    /// shared group to one member in turn. Returns the number of deliveries, plus <paramref name="remoteNodes"/>
    /// (the other nodes it was forwarded to, which make it no dropped message).
    /// </summary>
    public int Route(BrokerMessage message, int remoteNodes = 0) => Route(message, remoteNodes, fromNode: false, sharedGroups: null);

    /// <summary>
    /// A message another node accepted: delivered to the matching subscribers here, and to a member of only those
    /// shared groups that the other node chose this node for (<paramref name="sharedGroups"/>).
    /// </summary>
    public int RouteFromNode(BrokerMessage message, IReadOnlyList<SharedRoute>? sharedGroups)
    {
        t_fromNode = true;
        try
        {
            return Route(message, 0, fromNode: true, sharedGroups);
        }
        finally
        {
            t_fromNode = false;
        }
    }

    private int Route(BrokerMessage message, int remoteNodes, bool fromNode, IReadOnlyList<SharedRoute>? sharedGroups)
    {
        var scratch = t_scratch ??= new RouteScratch();
        var state = GetNamespace(message.Namespace);
        try
        {
            state.Trie.Match(message.Topic, scratch.Matches, scratch.Shared);
            var targets = scratch.Targets;
            foreach (var sub in scratch.Matches)
            {
                if (sub.NoLocal && message.OriginClientId is not null && string.Equals(sub.Session.ClientId, message.OriginClientId, StringComparison.Ordinal)
                    && string.Equals(sub.Session.Owner, message.OriginOwner, StringComparison.Ordinal))
                {
                    continue;
                }

                var qos = (QoS)Math.Min((int)sub.QoS, (int)message.QoS);
                var retain = sub.RetainAsPublished && message.Retain;
                if (scratch.Index.TryGetValue(sub.Session, out var index))
                {
                    var target = targets[index];
                    if (qos > target.QoS)
                    {
                        target.QoS = qos;
                    }

                    target.Retain |= retain;
                    if (sub.SubscriptionId != 0)
                    {
                        (target.SubscriptionIds ??= []).Add(sub.SubscriptionId);
                    }

                    targets[index] = target;
                }
                else
                {
                    scratch.Index[sub.Session] = targets.Count;
                    targets.Add(new RouteTarget
                    {
                        Session = sub.Session,
                        QoS = qos,
                        Retain = retain,
                        SubscriptionIds = sub.SubscriptionId != 0 ? [sub.SubscriptionId] : null,
                    });
                }
            }

            var deliveries = 0;
            foreach (var target in targets)
            {
                Deliver(target.Session, message, target.QoS, target.Retain, target.SubscriptionIds, group: null);
                deliveries++;
            }

            foreach (var group in scratch.Shared)
            {
                if (fromNode && !IsChosen(group, sharedGroups))
                {
                    continue;
                }

                var member = state.Trie.PickSharedMember(group, exclude: null);
                if (member is null)
                {
                    continue;
                }

                var qos = (QoS)Math.Min((int)member.QoS, (int)message.QoS);
                var ids = member.SubscriptionId != 0 ? new List<uint> { member.SubscriptionId } : null;
                Deliver(member.Session, message, qos, member.RetainAsPublished && message.Retain, ids, group);
                deliveries++;
            }

            if (deliveries == 0 && remoteNodes == 0)
            {
                Metrics.MessageDropped(DropReasons.NoSubscribers);
            }

            return deliveries + remoteNodes;
        }
        finally
        {
            scratch.Clear();
        }
    }

    /// <summary>
    /// Hands one copy of <paramref name="message"/> to <paramref name="session"/> (see <see cref="MqttSession.Deliver"/>).
    /// While a client's publish is routed (<see cref="RouteFromClient"/>), a session whose full queue took the
    /// message anyway is remembered, so that the publisher waits for room.
    /// </summary>
    public void Deliver(MqttSession session, BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group)
    {
        if (session.Deliver(message, qos, retain, subscriptionIds, group, t_collectCongestion, t_fromNode) == DeliveryResult.Congested)
        {
            t_congested ??= session;
        }
    }

    [ThreadStatic]
    private static bool t_collectCongestion;

    /// <summary>Set while a message from another node is routed (<see cref="RouteFromNode"/>): see <see cref="MqttSession.Deliver"/>.</summary>
    [ThreadStatic]
    private static bool t_fromNode;

    [ThreadStatic]
    private static MqttSession? t_congested;

    /// <summary>
    /// Routes a client's PUBLISH (<see cref="RouteAndRetain"/>). A QoS 1/2 delivery that finds a connected
    /// subscriber's queue full is queued anyway, within twice the queue's limits, and that session is returned
    /// in <paramref name="congested"/>: the publishing connection must then wait for room
    /// (<see cref="MqttSession.WaitForRoomAsync"/>) before it acknowledges and reads on. That is how a subscriber
    /// that falls behind slows its publishers down instead of losing their messages.
    /// </summary>
    public int RouteFromClient(BrokerMessage message, out MqttSession? congested) => RouteFromClient(message, null, out congested, out _);

    /// <summary>
    /// <see cref="RouteFromClient(BrokerMessage, out MqttSession?)"/> for a message whose acknowledgement waits for
    /// the other nodes (<see cref="RouteAndRetain(BrokerMessage, IForwardReceipt?, out bool)"/>).
    /// </summary>
    public int RouteFromClient(BrokerMessage message, IForwardReceipt? receipt, out MqttSession? congested, out bool awaitsNodes)
    {
        t_collectCongestion = true;
        try
        {
            return RouteAndRetain(message, receipt, out awaitsNodes);
        }
        finally
        {
            congested = t_congested;
            t_congested = null;
            t_collectCongestion = false;
        }
    }

    /// <summary>Whether the node that accepted a message chose this node for <paramref name="group"/> (a short list, walked).</summary>
    private static bool IsChosen(SharedGroup group, IReadOnlyList<SharedRoute>? chosen)
    {
        if (chosen is null)
        {
            return false;
        }

        for (var i = 0; i < chosen.Count; i++)
        {
            if (string.Equals(chosen[i].Group, group.Name, StringComparison.Ordinal) && string.Equals(chosen[i].Filter, group.Filter, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    private struct RouteTarget
    {
        public MqttSession Session;
        public QoS QoS;
        public bool Retain;
        public List<uint>? SubscriptionIds;
    }

    /// <summary>Per-thread lists reused by every route, so routing allocates nothing once warm.</summary>
    private sealed class RouteScratch
    {
        public readonly List<Subscription> Matches = [];
        public readonly List<SharedGroup> Shared = [];
        public readonly List<RouteTarget> Targets = [];
        public readonly Dictionary<MqttSession, int> Index = new(ReferenceEqualityComparer.Instance);

        public void Clear()
        {
            Matches.Clear();
            Shared.Clear();
            Targets.Clear();
            Index.Clear();
        }
    }
}

