using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Runtime;
using Taihu.Broker;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Cluster.Mqtt;

/// <summary>
/// The broker's link to the other nodes (<see cref="IMqttClusterLink"/>). It keeps this node's routes (the filters
/// its subscribers hold) and sends their changes to every other node; it keeps the other nodes' routes
/// (<see cref="RouteTable{TNode}"/>) and forwards each accepted message once to each node whose routes match it.
/// Everything for one other node goes through one <see cref="Peer"/>: one ordered queue, sent in batches, one call
/// at a time, again after a failure until that node is declared dead. That keeps each publisher's order, and no
/// message handed on is lost while both nodes live. Membership (Orleans) says which nodes live: a new node gets all
/// of this node's routes first; a dead node's routes and queue are dropped.
/// </summary>
internal sealed partial class ClusterMqttLink : IMqttClusterLink, ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    /// <summary>Most items (route changes and messages) in one call to another node.</summary>
    internal const int MaximumBatch = 512;

    private readonly IServiceProvider _services;
    private readonly ILocalSiloDetails _local;
    private readonly IClusterMembershipService _membership;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly RouteTable<SiloAddress> _remoteRoutes = new();
    // This node's routes: (namespace, filter, null) for plain subscribers, (namespace, filter, group) for a shared
    // group's members. Changed under _gate; read without it by Forward (a shared group with members here).
    private readonly ConcurrentDictionary<(string Namespace, string Filter, string? Group), byte> _localRoutes = new();
    private readonly ConcurrentDictionary<SiloAddress, Peer> _peers = new();
    private readonly ConcurrentDictionary<SiloAddress, long> _received = new();
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private HeldSessionsPass? _heldSessions;
    private MqttBroker? _broker;
    private INodeLinkClient? _nodes;
    private Succession.ClusterWills? _wills;
    private IGrainFactory? _grains;
    private Task _watch = Task.CompletedTask;
    private int _disposed;

    /// <summary>How long a CONNECT waits for the session's claim (and the old node's end of it) before it goes on.</summary>
    private static readonly TimeSpan s_claimTimeout = TimeSpan.FromSeconds(10);

    [ThreadStatic]
    private static List<SiloAddress>? t_targets;

    [ThreadStatic]
    private static List<SharedPick<SiloAddress>>? t_picks;

    public ClusterMqttLink(IServiceProvider services, ILocalSiloDetails local, IClusterMembershipService membership, TimeProvider time, IMeterFactory meters,
        IOptions<ClusterNodeOptions> options, ILogger<ClusterMqttLink> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        AcknowledgesAfterForward = options.Value.AckAfterForward;
        ArgumentNullException.ThrowIfNull(meters);
        meters.Create(ClusterNodes.MeterName).CreateObservableGauge("taihu.cluster.remote_routes", () => _remoteRoutes.Count, "{route}",
            "Routes (node, filter) of the other nodes this node forwards by.");
        _services = services;
        _local = local;
        _membership = membership;
        _time = time;
        _logger = logger;
    }

    /// <summary>The other nodes' routes held here (tests and diagnostics).</summary>
    public int RemoteRouteCount => _remoteRoutes.Count;

    private MqttBroker Broker => _broker ??= _services.GetRequiredService<MqttBroker>();

    private INodeLinkClient Nodes => _nodes ??= _services.GetRequiredService<INodeLinkClient>();

    public void OnRouteAdded(string ns, string filter) => ChangeRoute(new RouteChange(ns, filter, Added: true));

    public void OnRouteRemoved(string ns, string filter) => ChangeRoute(new RouteChange(ns, filter, Added: false));

    public void OnSharedRouteAdded(string ns, string group, string filter) => ChangeRoute(new RouteChange(ns, filter, Added: true, group));

    public void OnSharedRouteRemoved(string ns, string group, string filter) => ChangeRoute(new RouteChange(ns, filter, Added: false, group));

    private void ChangeRoute(RouteChange change)
    {
        lock (_gate)
        {
            var key = (change.Namespace, change.Filter, change.Group);
            var changed = change.Added ? _localRoutes.TryAdd(key, 0) : _localRoutes.TryRemove(key, out _);
            if (!changed)
            {
                return;
            }

            foreach (var (_, peer) in _peers)
            {
                peer.Enqueue(change);
            }
        }
    }

    /// <inheritdoc/>
    public bool AcknowledgesAfterForward { get; }

    public int Forward(BrokerMessage message) => Forward(message, null);

    public int Forward(BrokerMessage message, IForwardReceipt? receipt)
    {
        var retained = message.Retain && !IsSys(message.Topic);
        if (_remoteRoutes.Count == 0 && !(retained && !_peers.IsEmpty))
        {
            return 0;
        }

        var targets = t_targets ??= [];
        var picks = t_picks ??= [];
        try
        {
            _remoteRoutes.Match(message.Namespace, message.Topic, targets, picks);
            var groups = ChooseSharedGroups(message.Namespace, picks, targets);
            if (targets.Count == 0 && !retained)
            {
                return 0;
            }

            var copy = Copy(message);
            var sent = 0;
            // Counts the nodes down as each has its copy; held once until all are queued, so that it is told once, after.
            var wait = receipt is null ? null : new ForwardWait(receipt);
            foreach (var node in targets)
            {
                if (_peers.TryGetValue(node, out var peer))
                {
                    var forwarded = groups is not null && groups.TryGetValue(node, out var chosen) ? copy.ForSharedGroups([.. chosen]) : copy;
                    if (wait is null)
                    {
                        peer.Enqueue(forwarded);
                    }
                    else
                    {
                        wait.Add();
                        peer.Enqueue(new AwaitedCopy(forwarded, wait));
                    }

                    sent++;
                }
            }

            if (sent > 0)
            {
                wait?.Signal();
            }

            if (retained)
            {
                // Every node keeps the retained messages: those with no subscriber for it get it too.
                foreach (var (node, peer) in _peers)
                {
                    if (!targets.Contains(node))
                    {
                        peer.Enqueue(copy);
                    }
                }
            }

            return sent;
        }
        finally
        {
            targets.Clear();
            picks.Clear();
        }
    }

    /// <summary>
    /// For each shared group matching a message that has no member on this node (those with one get it here), the
    /// node the route table chose in turn gets it for that group: added to <paramref name="targets"/>, with the
    /// groups (name, filter, ...) it is chosen for. Null when there are none (the common case: no allocation).
    /// </summary>
    private Dictionary<SiloAddress, List<string>>? ChooseSharedGroups(string ns, List<SharedPick<SiloAddress>> picks, List<SiloAddress> targets)
    {
        Dictionary<SiloAddress, List<string>>? groups = null;
        foreach (var pick in picks)
        {
            if (_localRoutes.ContainsKey((ns, pick.Filter, pick.Group)))
            {
                continue;
            }

            groups ??= new Dictionary<SiloAddress, List<string>>();
            if (!groups.TryGetValue(pick.Node, out var chosen))
            {
                chosen = [];
                groups.Add(pick.Node, chosen);
            }

            chosen.Add(pick.Group);
            chosen.Add(pick.Filter);
            if (!targets.Contains(pick.Node))
            {
                targets.Add(pick.Node);
            }
        }

        return groups;
    }

    private static bool IsSys(string topic) => topic.StartsWith("$SYS", StringComparison.Ordinal) && (topic.Length == 4 || topic[4] == '/');

    public void OnWillSet(string ns, string owner, string clientId, string topic, ReadOnlySpan<byte> payload, QoS qos, bool retain, MqttProperties? properties, uint delay) =>
        Wills.Set(ns, owner, clientId, topic, payload, qos, retain, properties, delay);

    public void OnWillDone(string ns, string owner, string clientId) => Wills.Done(ns, owner, clientId);

    private Succession.ClusterWills Wills => _wills ??= _services.GetRequiredService<Succession.ClusterWills>();

    private IGrainFactory Grains => _grains ??= _services.GetRequiredService<IGrainFactory>();

    public void OnSessionEnded(string ns, string owner, string clientId, long claim)
    {
        if (claim != 0)
        {
            // One way: the registry forgets this node as the holder unless the client was claimed since. Should the
            // message be lost (this node stopping), the entry stays until the client's next claim replaces it.
            try
            {
                _ = SessionRegistry.For(Grains, ns, owner, clientId).Release(_local.SiloAddress, ns, owner, clientId, claim);
            }
            catch (Exception e) when (e is OrleansException or ObjectDisposedException or InvalidOperationException)
            {
                LogReleaseFailed(_logger, clientId, e.Message);
            }
        }
    }

    public async ValueTask<ClaimedSession> ClaimSessionAsync(string ns, string owner, string clientId, CancellationToken cancellationToken)
    {
        var grain = SessionRegistry.For(Grains, ns, owner, clientId);
        try
        {
            var start = System.Diagnostics.Stopwatch.GetTimestamp();
            var handover = await grain.Claim(_local.SiloAddress, ns, owner, clientId).WaitAsync(s_claimTimeout, cancellationToken);
            Platform.Storage.StageTimings.Since("connect.claim", start);
            return new ClaimedSession(handover.Known, handover.Session?.ToStored(ns, owner, clientId), handover.Claim);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
        {
            // The cluster cannot say who held the session: the client is served here all the same (from the
            // session's last snapshot, if any), and a connection it may still have on another node stays until it
            // goes (said in docs/scaling.md).
            LogClaimFailed(_logger, clientId, e.Message);
            return new ClaimedSession(Known: false, Session: null);
        }
    }

    /// <summary>A batch from another node (see <see cref="INodeLinkService.Receive"/>).</summary>
    public void Receive(SiloAddress sender, NodeBatch batch)
    {
        // Sent again after a call that failed on the way back: applied already.
        if (_received.TryGetValue(sender, out var last) && batch.Sequence <= last)
        {
            return;
        }

        // Sent before the sender was declared dead, and arriving after its routes were dropped: not applied again.
        if (_membership.CurrentSnapshot.GetSiloStatus(sender) == SiloStatus.Dead)
        {
            return;
        }

        _received[sender] = batch.Sequence;
        EnsurePeer(sender);
        foreach (var change in batch.Routes ?? [])
        {
            _ = change.Added
                ? _remoteRoutes.Add(sender, change.Namespace, change.Filter, change.Group)
                : _remoteRoutes.Remove(sender, change.Namespace, change.Filter, change.Group);
        }

        var broker = Broker;
        foreach (var forwarded in batch.Retained ?? [])
        {
            var message = ToBrokerMessage(forwarded);
            try
            {
                broker.RetainFromNode(message);
            }
            finally
            {
                message.Release();
            }
        }

        if (batch.Messages is not { } messages)
        {
            return;
        }

        foreach (var forwarded in messages)
        {
            var message = ToBrokerMessage(forwarded);
            try
            {
                broker.RouteFromNode(message, SharedRoutes(forwarded.SharedGroups));
            }
            finally
            {
                message.Release();
            }
        }
    }

    /// <summary>See <see cref="INodeLinkService.SessionsIn"/>.</summary>
    /// <remarks>
    /// When a node dies, the 85 or so partitions it hosted are activated again at once and each asks every node;
    /// going over all of this node's sessions for each ask took 10 to 70 ms on a loaded node (7,500 sessions), one
    /// ask after the other, so that the last asks waited past their 5 s and the claims of those partitions with them
    /// (docs/benchmarks.md). So one pass sorts the sessions by partition, and the asks of the next second take their
    /// share of it, as long as this node's view of the membership has not changed. That answer cannot mislead a
    /// partition: a session claimed here since the pass went through the partition as it is now (a claim taken by
    /// its earlier activation was taken before that node died, so before the death was declared and the view
    /// changed), and its claim waits for the activation, then records this node; a session ended here since sent
    /// the partition its release, which the partition takes after its activation, so after this answer.
    /// </remarks>
    public HeldSession[] SessionsIn(int partition)
    {
        var now = _time.GetTimestamp();
        var view = _membership.CurrentSnapshot.Version;
        var index = _heldSessions;
        if (index is null || index.View != view || _time.GetElapsedTime(index.Made, now) > HeldSessionsReuse)
        {
            index = new HeldSessionsPass(now, view, SessionRegistry.ByPartition(Broker.HeldSessions()));
            _heldSessions = index;
        }

        return index.ByPartition[partition];
    }

    /// <summary>How long one pass over the held sessions answers partitions' asks (see <see cref="SessionsIn"/>).</summary>
    internal static readonly TimeSpan HeldSessionsReuse = TimeSpan.FromSeconds(1);

    private sealed record HeldSessionsPass(long Made, MembershipVersion View, HeldSession[][] ByPartition);

    /// <summary>See <see cref="INodeLinkService.HoldsSessions"/>.</summary>
    public bool[] HoldsSessions(string[] keys)
    {
        var held = new bool[keys.Length / 3];
        var broker = Broker;
        for (var i = 0; i < held.Length; i++)
        {
            held[i] = broker.FindSession(keys[3 * i], keys[(3 * i) + 2], keys[(3 * i) + 1]) is not null;
        }

        return held;
    }

    /// <summary>A connection on another node took the session over (see <see cref="INodeLinkService.EndSession"/>).</summary>
    public TransferredSession? EndSession(string ns, string owner, string clientId)
    {
        if (!Broker.EndSessionTakenOver(ns, owner, clientId, out var session))
        {
            return null;
        }

        LogTakenOver(_logger, clientId, ns, session?.Subscriptions.Count ?? 0, session?.Deliveries.Count ?? 0);
        return session is null ? null : TransferredSession.From(session);
    }

    public void Participate(ISiloLifecycle lifecycle)
    {
        ArgumentNullException.ThrowIfNull(lifecycle);
        lifecycle.Subscribe(nameof(ClusterMqttLink), ServiceLifecycleStage.Active, _ =>
        {
            _watch = Task.Run(WatchMembershipAsync, CancellationToken.None);
            return Task.CompletedTask;
        }, async _ =>
        {
            if (Volatile.Read(ref _disposed) == 0)
            {
                await _stopping.CancelAsync();
            }

            await _watch.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
    }

    /// <summary>Idempotent: the container disposes it once for each service it is registered as.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        _stopping.Dispose();
        _remoteRoutes.Dispose();
        foreach (var (_, peer) in _peers)
        {
            peer.Dispose();
        }
    }

    private async Task WatchMembershipAsync()
    {
        try
        {
            await foreach (var snapshot in _membership.MembershipUpdates.WithCancellation(_stopping.Token))
            {
                foreach (var (address, member) in snapshot.Members)
                {
                    if (address.Equals(_local.SiloAddress))
                    {
                        continue;
                    }

                    if (member.Status == SiloStatus.Active)
                    {
                        EnsurePeer(address);
                    }
                    else if (member.Status == SiloStatus.Dead)
                    {
                        Forget(address);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// A node this node sends to: its queue starts with all of this node's routes, and, when it joined after this
    /// node, this node's retained messages.
    /// </summary>
    private void EnsurePeer(SiloAddress node)
    {
        if (_peers.ContainsKey(node) || _membership.CurrentSnapshot.GetSiloStatus(node) == SiloStatus.Dead)
        {
            return;
        }

        Peer peer;
        lock (_gate)
        {
            if (_peers.ContainsKey(node))
            {
                return;
            }

            peer = new Peer(this, node);
            foreach (var ((ns, filter, group), _) in _localRoutes)
            {
                peer.Enqueue(new RouteChange(ns, filter, Added: true, group));
            }

            _peers[node] = peer;
            peer.Start();
            LogPeerAdded(_logger, node, _localRoutes.Count);
        }

        // Taken after the peer is in place: a retained change made meanwhile is forwarded to it as well, and the
        // copy here, no newer than that, is then not taken over it.
        if (node.Generation > _local.SiloAddress.Generation)
        {
            SendRetained(node, peer);
        }
    }

    private void SendRetained(SiloAddress node, Peer peer)
    {
        var retained = new List<BrokerMessage>();
        try
        {
            Broker.CollectRetained(retained);
            foreach (var message in retained)
            {
                peer.Enqueue(new RetainedCopy(Copy(message)));
            }
        }
        finally
        {
            foreach (var message in retained)
            {
                message.Release();
            }
        }

        LogRetainedSent(_logger, node, retained.Count);
    }

    private void Forget(SiloAddress node)
    {
        lock (_gate)
        {
            if (!_peers.TryRemove(node, out var peer))
            {
                return;
            }

            peer.Dispose();
        }

        var routes = _remoteRoutes.RemoveNode(node);
        _received.TryRemove(node, out _);
        LogPeerDead(_logger, node, routes);
    }

    /// <summary>The shared groups a forwarded message is for (name, filter, ...), or null.</summary>
    private static List<SharedRoute>? SharedRoutes(string[]? pairs)
    {
        if (pairs is null)
        {
            return null;
        }

        var routes = new List<SharedRoute>(pairs.Length / 2);
        for (var i = 0; i + 1 < pairs.Length; i += 2)
        {
            routes.Add(new SharedRoute(pairs[i], pairs[i + 1]));
        }

        return routes;
    }

    private static ForwardedMessage Copy(BrokerMessage message)
    {
        var properties = message.Properties;
        string[]? user = null;
        if (properties?.UserProperties is { Count: > 0 } list)
        {
            user = new string[list.Count * 2];
            for (var i = 0; i < list.Count; i++)
            {
                user[2 * i] = list[i].Name;
                user[(2 * i) + 1] = list[i].Value;
            }
        }

        return new ForwardedMessage
        {
            Namespace = message.Namespace,
            Topic = message.Topic,
            Payload = message.Payload.ToArray(),
            QoS = (byte)message.QoS,
            Retain = message.Retain,
            ReceivedAt = message.ReceivedAt,
            OriginClientId = message.OriginClientId,
            OriginOwner = message.OriginOwner,
            PayloadFormatIndicator = properties?.PayloadFormatIndicator,
            MessageExpiryInterval = properties?.MessageExpiryInterval,
            ContentType = properties?.ContentType,
            ResponseTopic = properties?.ResponseTopic,
            CorrelationData = properties?.CorrelationData?.ToArray(),
            UserProperties = user,
        };
    }

    private static BrokerMessage ToBrokerMessage(ForwardedMessage m)
    {
        MqttProperties? properties = null;
        if (m.PayloadFormatIndicator is not null || m.MessageExpiryInterval is not null || m.ContentType is not null || m.ResponseTopic is not null
            || m.CorrelationData is not null || m.UserProperties is not null)
        {
            properties = new MqttProperties
            {
                PayloadFormatIndicator = m.PayloadFormatIndicator,
                MessageExpiryInterval = m.MessageExpiryInterval,
                ContentType = m.ContentType,
                ResponseTopic = m.ResponseTopic,
                CorrelationData = m.CorrelationData,
            };
            if (m.UserProperties is { } user)
            {
                properties.UserProperties = new List<UserProperty>(user.Length / 2);
                for (var i = 0; i + 1 < user.Length; i += 2)
                {
                    properties.UserProperties.Add(new UserProperty(user[i], user[i + 1]));
                }
            }
        }

        return BrokerMessage.Create(m.Namespace, m.Topic, m.Payload, owner: null, (QoS)m.QoS, m.Retain, properties, m.ReceivedAt, m.OriginClientId, m.OriginOwner);
    }

    [LoggerMessage(EventId = 2611, Level = LogLevel.Information, Message = "MQTT link to node {Node} open; {Routes} route(s) of this node sent first")]
    private static partial void LogPeerAdded(ILogger logger, SiloAddress node, int routes);

    [LoggerMessage(EventId = 2617, Level = LogLevel.Information, Message = "Node {Node} joined after this one: {Count} retained message(s) of this node sent to it")]
    private static partial void LogRetainedSent(ILogger logger, SiloAddress node, int count);

    [LoggerMessage(EventId = 2612, Level = LogLevel.Information, Message = "Node {Node} is dead: its {Routes} route(s) and the messages queued for it are dropped")]
    private static partial void LogPeerDead(ILogger logger, SiloAddress node, int routes);

    [LoggerMessage(EventId = 2613, Level = LogLevel.Warning, Message = "MQTT link to node {Node}: a batch failed ({Error}); sending it again")]
    private static partial void LogSendFailed(ILogger logger, SiloAddress node, string error);

    [LoggerMessage(EventId = 2616, Level = LogLevel.Warning, Message = "Client {ClientId}: the session could not be claimed in the cluster ({Error}); the client is served here")]
    private static partial void LogClaimFailed(ILogger logger, string clientId, string error);

    [LoggerMessage(EventId = 2665, Level = LogLevel.Debug, Message = "Client {ClientId}: the session registry was not told that its session ended here ({Error})")]
    private static partial void LogReleaseFailed(ILogger logger, string clientId, string error);

    [LoggerMessage(EventId = 2614, Level = LogLevel.Information, Message = "Client {ClientId} (namespace '{Ns}') was taken over on another node; its session here ended, {Subscriptions} subscription(s) and {Messages} message(s) handed over")]
    private static partial void LogTakenOver(ILogger logger, string clientId, string ns, int subscriptions, int messages);
}
