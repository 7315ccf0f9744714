using System.Reflection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Logging;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker;

/// <summary>
/// The broker: what a connection (<see cref="MqttChannel"/>) and the platform reach. It holds the parts, each with
/// one responsibility, and the timers that drive them:
/// <list type="bullet">
/// <item><see cref="ConnectionRegistry"/>: the open connections, their limit, keep alive, closing them;</item>
/// <item><see cref="SessionRegistry"/>: which session a client gets, takeover, detach, wills and expiry (what a
/// session holds is the session's own, see <see cref="MqttSession"/>);</item>
/// <item><see cref="MessageRouter"/>: per namespace a subscription trie and a retained store; matching and handing a
/// copy of each message to each subscriber's session;</item>
/// <item><see cref="BrokerPersistence"/>: write-behind of retained messages and persistent sessions, and their
/// restore at start, when a state store is registered;</item>
/// <item><see cref="SysPublisher"/>: the <c>$SYS</c> statistics.</item>
/// </list>
/// </summary>
public sealed partial class MqttBroker : IMqttServerPublisher, IMqttClientDisconnector, IDisposable
{
    private readonly ConnectionRegistry _connections;
    private readonly SessionRegistry _sessions;
    private readonly MessageRouter _router;
    private readonly BrokerPersistence? _persistence;
    private readonly SysPublisher _sys;
    private readonly ILogger _logger;
    private ITimer? _housekeeping;
    private ITimer? _sysTimer;

    public MqttBroker(BrokerOptions options, TimeProvider timeProvider, BrokerMetrics metrics, ILogger<MqttBroker>? logger = null,
        IMqttAuthenticator? authenticator = null, IMqttAuthorizer? authorizer = null, IPublishObserver? publishObserver = null,
        IMqttEnhancedAuthenticator? enhancedAuthenticator = null, IClientLifecycleObserver? lifecycleObserver = null, IBrokerStateStore? stateStore = null,
        IMqttClusterLink? clusterLink = null)
    {
        ClusterLink = clusterLink;
        AcknowledgesAfterForward = clusterLink?.AcknowledgesAfterForward ?? false;
        LifecycleObserver = lifecycleObserver;
        StateStore = stateStore;
        Options = options;
        Time = timeProvider;
        Metrics = metrics;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        Authenticator = authenticator ?? AllowAllAuthenticator.Instance;
        Authorizer = authorizer ?? AllowAllAuthenticator.Instance;
        PublishObserver = publishObserver;
        EnhancedAuthenticator = enhancedAuthenticator;
        StartedAt = timeProvider.GetUtcNow();
        RefusalLog = new LogRateLimiter(timeProvider, RefusalLinesPerSecond);
        Version = typeof(MqttBroker).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.1.0";

        _connections = new ConnectionRegistry(options, metrics);
        _router = new MessageRouter(options, timeProvider, metrics, tracksRetainedChanges: stateStore is not null, clusterLink);
        _sessions = new SessionRegistry(new SessionServices(options, timeProvider, metrics), _router, clusterLink);
        _persistence = stateStore is null ? null : new BrokerPersistence(stateStore, options, timeProvider, metrics, _logger, _sessions, _router, restoresSessions: clusterLink is null);
        _sys = new SysPublisher(this, _router, _sessions);
    }

    public BrokerOptions Options { get; }
    public TimeProvider Time { get; }
    public BrokerMetrics Metrics { get; }
    public IMqttAuthenticator Authenticator { get; }
    public IMqttAuthorizer Authorizer { get; }
    public IPublishObserver? PublishObserver { get; }
    public IMqttEnhancedAuthenticator? EnhancedAuthenticator { get; }
    public IClientLifecycleObserver? LifecycleObserver { get; }

    /// <summary>The other nodes of the cluster, or null on a single server.</summary>
    public IMqttClusterLink? ClusterLink { get; }

    /// <summary>Where retained messages and persistent sessions are kept across restarts, or null (memory only).</summary>
    public IBrokerStateStore? StateStore { get; }
    public DateTimeOffset StartedAt { get; }
    public string Version { get; }
    internal ILogger Logger => _logger;

    /// <summary>
    /// Log lines per second for what anyone can cause without logging in (refused connections, malformed
    /// frames, packets before CONNECT): 10 shows an operator what is going on, while a flood of refusals costs
    /// a few kilobytes of log a second instead of hundreds of megabytes. The rest are counted and reported.
    /// </summary>
    public const int RefusalLinesPerSecond = 10;

    /// <summary>The rate limit shared by every refusal line of the broker (see <see cref="RefusalLinesPerSecond"/>).</summary>
    internal LogRateLimiter RefusalLog { get; }

    /// <summary>Whether a refusal line may be logged now; reports the lines left out before it first.</summary>
    internal bool ShouldLogRefusal()
    {
        if (!RefusalLog.TryAcquire(out var suppressed))
        {
            return false;
        }

        if (suppressed > 0)
        {
            LogRefusalsSuppressed(_logger, suppressed);
        }

        return true;
    }

    /// <summary>Connections open now (connected or still in CONNECT).</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Sessions held, connected or not.</summary>
    public int SessionCount => _sessions.Count;

    /// <summary>Loads the saved state (when a store is registered), then starts the timers and the write-behind loop.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_persistence is { } persistence)
        {
            await persistence.StartAsync(cancellationToken);
        }

        Start();
    }

    /// <summary>Starts the housekeeping and $SYS timers.</summary>
    public void Start()
    {
        _housekeeping ??= Time.CreateTimer(_ => Housekeep(), null, Options.HousekeepingInterval, Options.HousekeepingInterval);
        if (Options.SysInterval > 0)
        {
            var interval = TimeSpan.FromSeconds(Options.SysInterval);
            _sysTimer ??= Time.CreateTimer(_ => PublishSys(), null, TimeSpan.Zero, interval);
        }
    }

    /// <summary>
    /// Stops the write-behind loop and writes what is left (see <see cref="BrokerPersistence.StopAsync"/>). Called at
    /// a graceful stop, once the connections have closed.
    /// </summary>
    public Task StopAsync() => _persistence?.StopAsync() ?? Task.CompletedTask;

    /// <summary>Writes the buffered retained changes and the sessions that changed now (the stop, and tests).</summary>
    public Task FlushStateAsync(CancellationToken cancellationToken = default) => _persistence?.FlushStateAsync(cancellationToken) ?? Task.CompletedTask;

    /// <summary>Sends DISCONNECT 0x8B (5.0) to every client and closes them.</summary>
    public void Shutdown()
    {
        _housekeeping?.Dispose();
        _sysTimer?.Dispose();
        _connections.CloseAll(ReasonCode.ServerShuttingDown, "The server is shutting down.");
    }

    public void Dispose()
    {
        _housekeeping?.Dispose();
        _sysTimer?.Dispose();
        _persistence?.Dispose();
    }

    /// <summary>The session of (<paramref name="ns"/>, <paramref name="owner"/>, <paramref name="clientId"/>), if any (tests and diagnostics).</summary>
    public MqttSession? FindSession(string ns, string clientId, string owner = "") => _sessions.Find(ns, clientId, owner);

    /// <summary>
    /// Each session held here, connected or away, with the cluster claim that gave it to this node (0 on a single
    /// server). A walk of the live registry: a session that comes or goes meanwhile may or may not be seen.
    /// </summary>
    public IEnumerable<(string Namespace, string Owner, string ClientId, long ClusterClaim)> HeldSessions()
    {
        foreach (var (key, session) in _sessions.All)
        {
            yield return (key.Namespace, key.Owner, key.ClientId, session.ClusterClaim);
        }
    }

    /// <summary>The connected channel of <paramref name="clientId"/> in <paramref name="ns"/>, if any (tests and diagnostics).</summary>
    internal MqttChannel? FindChannel(string ns, string clientId) => _connections.Find(ns, clientId);

    /// <summary>Retained messages in <paramref name="ns"/>.</summary>
    public int RetainedCount(string ns) => _router.RetainedCount(ns);

    /// <summary>Subscriptions in <paramref name="ns"/>.</summary>
    public int SubscriptionCount(string ns) => _router.SubscriptionCount(ns);

    /// <inheritdoc />
    public int Disconnect(Func<ClientIdentity, bool> match, ReasonCode code, string? reason) => _connections.Disconnect(match, code, reason);

    /// <summary>The clients connected in namespace <paramref name="ns"/> now, sorted by client id (the console's Clients page).</summary>
    public IReadOnlyList<ConnectedClient> ListClients(string ns) => _connections.List(ns);

    /// <summary>Closes the connection of client <paramref name="clientId"/> in namespace <paramref name="ns"/>, with its will; false when none is connected.</summary>
    public bool DisconnectClient(string ns, string clientId, ReasonCode code, string? reason)
    {
        if (_connections.Find(ns, clientId) is not { } channel)
        {
            return false;
        }

        channel.Close(code, reason, publishWill: true);
        return true;
    }

    /// <inheritdoc />
    public void Publish(string ns, PublishPacket packet) => Publish(ns, packet, listener: null);

    /// <inheritdoc />
    public int Publish(string ns, PublishPacket packet, IDeliveryListener? listener)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(packet);
        var message = BrokerMessage.Create(ns, packet.Topic, packet.Payload, packet.PayloadOwner, packet.QoS, packet.Retain, packet.Properties, Time.GetUtcNow(), originClientId: null);
        message.DeliveryListener = listener;
        var deliveries = RouteAndRetain(message);
        message.Release();
        return deliveries;
    }

    public int PublishHere(string ns, PublishPacket packet, IDeliveryListener? listener)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(packet);
        var message = BrokerMessage.Create(ns, packet.Topic, packet.Payload, packet.PayloadOwner, packet.QoS, retain: false, packet.Properties, Time.GetUtcNow(), originClientId: null);
        message.DeliveryListener = listener;
        var deliveries = _router.Route(message);
        message.Release();
        return deliveries;
    }

    /// <summary>
    /// A message another node of the cluster accepted and forwarded here (<see cref="IMqttClusterLink.Forward"/>):
    /// a retained one (RETAIN set) first changes this node's retained message of its topic as it did on its node
    /// (an empty payload deletes it), so that every node keeps the same retained messages; then it is delivered to
    /// this node's matching subscribers only, and to one member of each shared group in
    /// <paramref name="sharedGroups"/> (the groups the other node chose this node for; no other group here gets
    /// it), never forwarded again. The node that accepted it is the one that writes the change to the state store.
    /// Returns the number of deliveries. The caller keeps its own reference.
    /// </summary>
    public int RouteFromNode(BrokerMessage message, IReadOnlyList<SharedRoute>? sharedGroups = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.Retain)
        {
            _router.RetainFromNode(message, onlyIfNewer: false);
        }

        return _router.RouteFromNode(message, sharedGroups);
    }

    /// <summary>
    /// One of another node's retained messages, sent when this node joined the cluster: kept here unless this
    /// node holds a newer one for its topic (by the time it was published); delivered to nobody. The caller keeps
    /// its own reference.
    /// </summary>
    public void RetainFromNode(BrokerMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        _router.RetainFromNode(message, onlyIfNewer: true);
    }

    /// <summary>
    /// This node's retained messages (outside <c>$</c> topics), for a node that joins the cluster after it. Each
    /// comes with a reference the caller releases.
    /// </summary>
    public void CollectRetained(List<BrokerMessage> into) => _router.CollectRetained(into);

    /// <summary>
    /// The client's session was taken by a connection on another node: its connection here, if any, is told 0x8E
    /// and closed, and the session ends here. Returns false when there was none; else <paramref name="session"/>
    /// holds what the session held, if it was persistent (payloads copied), for the node that takes it over. From
    /// then on that node writes the session to the state store: this one neither writes nor deletes it again.
    /// </summary>
    public bool EndSessionTakenOver(string ns, string owner, string clientId, out StoredSession? session)
    {
        _persistence?.HandOver(new SessionKey(ns, clientId, owner));
        return _sessions.EndTakenOver(ns, owner, clientId, out session);
    }

    /// <summary>
    /// On a cluster node, before a client's session is attached: claims the session cluster-wide and puts here what
    /// it held on the node that had it, or, when no live node answered for it and none is here, its last snapshot in
    /// the state store (a node that died or restarted). With <paramref name="cleanStart"/> nothing is put here, but
    /// the stored rows become this node's, to rewrite or delete.
    /// </summary>
    /// <returns>The claim's number, for the session attached after it (<see cref="ClaimedSession.Claim"/>).</returns>
    internal async ValueTask<long> ClaimSessionAsync(IMqttClusterLink cluster, string ns, string owner, string clientId, bool cleanStart, CancellationToken cancellationToken)
    {
        var claim = await cluster.ClaimSessionAsync(ns, owner, clientId, cancellationToken);
        // This node may be putting the session here as a dead node's successor (its claim came first, so this one
        // found it held here): the connection goes on once the session is here, and finds it (Session Present 1).
        if (_adopting.TryGetValue(new SessionKey(ns, clientId, owner), out var adoption))
        {
            await adoption.Task.WaitAsync(cancellationToken);
        }

        var carried = claim.Session;
        if (!claim.Known && _persistence is { } persistence && _sessions.Find(ns, clientId, owner) is null)
        {
            carried = await persistence.LoadSessionAsync(new SessionKey(ns, clientId, owner), cancellationToken);
        }

        if (carried is null)
        {
            return claim.Claim;
        }

        if (!cleanStart)
        {
            // Written by this node from now on: at the next round, as it is here.
            _sessions.EndTakenOver(ns, owner, clientId, out _);
            BrokerPersistence.RestoreSession(carried, Options, Time.GetUtcNow(), _sessions, _router)!.MarkChanged();
        }

        _persistence?.Adopt(carried.Key);
        _persistence?.OnSubscriptionsChanged();
        return claim.Claim;
    }

    /// <summary>
    /// On a cluster node that succeeds a dead one: sends the will that node held for a client, as a will sent here
    /// would go (to this node's subscribers and the other nodes', retained when flagged).
    /// </summary>
    public int RouteWillOfDeadNode(BrokerMessage will) => _router.RouteAndRetain(will);

    /// <summary>Whether the client has a connection to this node now.</summary>
    public bool IsClientConnected(string ns, string owner, string clientId) => _sessions.Find(ns, clientId, owner) is { IsConnected: true };

    /// <summary>
    /// On a cluster node that succeeds a dead one (whose claim on the session the caller has already taken over):
    /// puts the session's last snapshot from the state store here, away from its client, so that its
    /// subscriptions route and queue messages until the client connects again, here or on another node (which
    /// then takes it over as from any node). False when there is no stored session, or one is here already.
    /// </summary>
    /// <summary>
    /// Marks a dead node's session as being put here by its successor, before the successor claims it: a client
    /// that connects here meanwhile waits for it (<see cref="ClaimSessionAsync"/>) instead of starting afresh.
    /// Disposing ends the mark.
    /// </summary>
    public IDisposable BeginAdoption(SessionKey key)
    {
        var adoption = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _adopting[key] = adoption;
        return new Adoption(_adopting, key, adoption);
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<SessionKey, TaskCompletionSource> _adopting = new();

    private sealed class Adoption(System.Collections.Concurrent.ConcurrentDictionary<SessionKey, TaskCompletionSource> adopting, SessionKey key, TaskCompletionSource done) : IDisposable
    {
        public void Dispose()
        {
            adopting.TryRemove(new KeyValuePair<SessionKey, TaskCompletionSource>(key, done));
            done.TrySetResult();
        }
    }

    /// <param name="clusterClaim">The number of the claim that gave this node the session (see <see cref="ClaimedSession.Claim"/>).</param>
    public async ValueTask<bool> AdoptStoredSessionAsync(SessionKey key, long clusterClaim, CancellationToken cancellationToken)
    {
        if (_persistence is not { } persistence || _sessions.Find(key.Namespace, key.ClientId, key.Owner) is not null)
        {
            return false;
        }

        // A client that connected here during the read keeps the session it got: the snapshot is put in place only
        // if none is there, in one step with that check (ending the session of a client that connected between a
        // check and the restore would leave its connection on a session that is gone: Session Present 1, and
        // nothing delivered).
        if (await persistence.LoadSessionAsync(key, cancellationToken) is not { } stored
            || BrokerPersistence.RestoreSession(stored, Options, Time.GetUtcNow(), _sessions, _router, replace: false) is not { } session)
        {
            return false;
        }

        session.MarkChanged();
        session.ClaimedInCluster(clusterClaim);
        persistence.Adopt(key);
        persistence.OnSubscriptionsChanged();
        return true;
    }

    // What a connection asks of the parts.

    internal bool TryRegister(MqttChannel channel, out long id) => _connections.TryRegister(channel, out id);

    internal void Unregister(long id) => _connections.Unregister(id);

    internal NamespaceState GetNamespace(string ns) => _router.GetNamespace(ns);

    /// <inheritdoc cref="SessionRegistry.Attach"/>
    internal MqttSession AttachSession(MqttChannel channel, string ns, string owner, string clientId, bool cleanStart, uint expiryInterval, out bool sessionPresent, long clusterClaim) =>
        _sessions.Attach(channel, ns, owner, clientId, cleanStart, expiryInterval, out sessionPresent, clusterClaim);

    /// <inheritdoc cref="SessionRegistry.Detach"/>
    internal void DetachSession(MqttChannel channel, MqttSession session, BrokerMessage? will, uint willDelay) => _sessions.Detach(channel, session, will, willDelay);

    /// <inheritdoc cref="MessageRouter.CanRetain"/>
    internal bool CanRetain(string ns, string topic, int payloadLength, MqttProperties? properties) => _router.CanRetain(ns, topic, payloadLength, properties);

    /// <inheritdoc cref="MessageRouter.RouteAndRetain"/>
    internal int RouteAndRetain(BrokerMessage message) => _router.RouteAndRetain(message);

    /// <inheritdoc cref="MessageRouter.RouteFromClient"/>
    internal int RouteFromClient(BrokerMessage message, out MqttSession? congested) => _router.RouteFromClient(message, out congested);

    /// <inheritdoc cref="MessageRouter.RouteFromClient(BrokerMessage, IForwardReceipt?, out MqttSession?, out bool)"/>
    internal int RouteFromClient(BrokerMessage message, IForwardReceipt receipt, out MqttSession? congested, out bool awaitsNodes) =>
        _router.RouteFromClient(message, receipt, out congested, out awaitsNodes);

    /// <summary>
    /// A cluster node whose link acknowledges a client's QoS 1 and 2 messages once the other nodes have them
    /// (<see cref="IMqttClusterLink.AcknowledgesAfterForward"/>); false on a single server.
    /// </summary>
    internal bool AcknowledgesAfterForward { get; }

    /// <inheritdoc cref="MessageRouter.Deliver"/>
    internal void Deliver(MqttSession session, BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group) =>
        _router.Deliver(session, message, qos, retain, subscriptionIds, group);

    /// <summary>Connections waiting for a keep-alive or CONNECT deadline check (tests).</summary>
    internal int ScheduledTimeoutChecks => _connections.ScheduledCount;

    /// <summary>Sessions that housekeeping looks at for a due will or expiry (tests).</summary>
    internal int AwaySessionCount => _sessions.AwayCount;

    /// <summary>A session's subscriptions changed: the state store gets the sessions at its next tick.</summary>
    internal void OnSubscriptionsChanged() => _persistence?.OnSubscriptionsChanged();

    private void Housekeep()
    {
        try
        {
            if (RefusalLog.TakeSuppressed() is var suppressed and > 0)
            {
                LogRefusalsSuppressed(_logger, suppressed);
            }

            var now = Time.GetUtcNow();
            _connections.CheckTimeouts(Time.GetTimestamp(), Time.TimestampFrequency);
            _sessions.Housekeep(now);
            _router.RemoveExpiredRetained(now);
            _persistence?.Tick(now);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogHousekeepingFailed(_logger, ex);
        }
    }

    private void PublishSys()
    {
        try
        {
            _sys.Publish();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogHousekeepingFailed(_logger, ex);
        }
    }

    [LoggerMessage(EventId = 106, Level = LogLevel.Information, Message = "{Count} more refusals (refused connections, protocol errors) were not logged")]
    private static partial void LogRefusalsSuppressed(ILogger logger, long count);

    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "Broker housekeeping failed")]
    private static partial void LogHousekeepingFailed(ILogger logger, Exception exception);
}
