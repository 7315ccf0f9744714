using System.Collections.Concurrent;
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
/// The broker's shared state: sessions by (namespace, client id), one subscription trie and one retained store
/// per namespace, the connections, and the housekeeping timer that enforces keep alive and expiries. Connections
/// (<see cref="MqttChannel"/>) call in here to attach sessions, route publishes and subscribe.
/// </summary>
public sealed partial class MqttBroker : IMqttServerPublisher, IMqttClientDisconnector, IDisposable
{
    // Keyed by owner too (ClientIdentity.SessionOwner, "" for none): a client id is unique per owner, not per namespace.
    private readonly ConcurrentDictionary<(string Namespace, string Owner, string ClientId), MqttSession> _sessions = new();
    private readonly ConcurrentDictionary<string, NamespaceState> _namespaces = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, MqttChannel> _channels = new();
    private readonly Lock _sessionGate = new();
    private readonly SessionServices _sessionServices;
    private readonly ILogger _logger;
    private ITimer? _housekeeping;
    private ITimer? _sys;
    private long _nextChannelId;
    private bool _shuttingDown;

    [ThreadStatic]
    private static RouteScratch? t_scratch;

    public MqttBroker(BrokerOptions options, TimeProvider timeProvider, BrokerMetrics metrics, ILogger<MqttBroker>? logger = null,
        IMqttAuthenticator? authenticator = null, IMqttAuthorizer? authorizer = null, IPublishObserver? publishObserver = null,
        IMqttEnhancedAuthenticator? enhancedAuthenticator = null, IClientLifecycleObserver? lifecycleObserver = null, IBrokerStateStore? stateStore = null)
    {
        LifecycleObserver = lifecycleObserver;
        StateStore = stateStore;
        Options = options;
        Time = timeProvider;
        Metrics = metrics;
        _sessionServices = new SessionServices(options, timeProvider, metrics);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        Authenticator = authenticator ?? AllowAllAuthenticator.Instance;
        Authorizer = authorizer ?? AllowAllAuthenticator.Instance;
        PublishObserver = publishObserver;
        EnhancedAuthenticator = enhancedAuthenticator;
        StartedAt = timeProvider.GetUtcNow();
        RefusalLog = new LogRateLimiter(timeProvider, RefusalLinesPerSecond);
        Version = typeof(MqttBroker).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.1.0";
    }

    public BrokerOptions Options { get; }
    public TimeProvider Time { get; }
    public BrokerMetrics Metrics { get; }
    public IMqttAuthenticator Authenticator { get; }
    public IMqttAuthorizer Authorizer { get; }
    public IPublishObserver? PublishObserver { get; }
    public IMqttEnhancedAuthenticator? EnhancedAuthenticator { get; }
    public IClientLifecycleObserver? LifecycleObserver { get; }
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
    public int ConnectionCount => _channels.Count;

    /// <summary>Sessions held, connected or not.</summary>
    public int SessionCount => _sessions.Count;

    /// <summary>Starts the housekeeping and $SYS timers.</summary>
    public void Start()
    {
        _housekeeping ??= Time.CreateTimer(_ => Housekeep(), null, Options.HousekeepingInterval, Options.HousekeepingInterval);
        if (Options.SysInterval > 0)
        {
            var interval = TimeSpan.FromSeconds(Options.SysInterval);
            _sys ??= Time.CreateTimer(_ => PublishSys(), null, TimeSpan.Zero, interval);
        }
    }

    /// <summary>Sends DISCONNECT 0x8B (5.0) to every client and closes them.</summary>
    public void Shutdown()
    {
        // Set first: a connection that registers from now on refuses itself (see TryRegister), and every one
        // registered before is in the dictionary that the loop below walks.
        Volatile.Write(ref _shuttingDown, true);
        _housekeeping?.Dispose();
        _sys?.Dispose();
        foreach (var channel in _channels.Values)
        {
            channel.Close(ReasonCode.ServerShuttingDown, "The server is shutting down.", publishWill: false);
        }
    }

    public void Dispose()
    {
        _housekeeping?.Dispose();
        _sys?.Dispose();
        _persistStop?.Cancel();
    }

    internal NamespaceState GetNamespace(string ns) => _namespaces.GetOrAdd(ns, static (_, tracksChanges) => new NamespaceState(tracksChanges), StateStore is not null);

    /// <summary>The session of (<paramref name="ns"/>, <paramref name="owner"/>, <paramref name="clientId"/>), if any (tests and diagnostics).</summary>
    public MqttSession? FindSession(string ns, string clientId, string owner = "") => _sessions.TryGetValue((ns, owner, clientId), out var s) ? s : null;

    /// <summary>The connected channel of <paramref name="clientId"/> in <paramref name="ns"/>, if any (tests and diagnostics).</summary>
    internal MqttChannel? FindChannel(string ns, string clientId)
    {
        foreach (var (_, channel) in _channels)
        {
            if (channel.IsConnected && channel.Identity.Namespace == ns && channel.ClientId == clientId)
            {
                return channel;
            }
        }

        return null;
    }

    /// <summary>Retained messages in <paramref name="ns"/>.</summary>
    public int RetainedCount(string ns) => _namespaces.TryGetValue(ns, out var state) ? state.Retained.Count : 0;

    /// <summary>Subscriptions in <paramref name="ns"/>.</summary>
    public int SubscriptionCount(string ns) => _namespaces.TryGetValue(ns, out var state) ? state.Trie.Count : 0;

    internal bool TryRegister(MqttChannel channel, out long id)
    {
        id = Interlocked.Increment(ref _nextChannelId);
        if (_channels.Count >= Options.MaximumConnections)
        {
            return false;
        }

        _channels[id] = channel;
        if (Volatile.Read(ref _shuttingDown))
        {
            _channels.TryRemove(id, out _);
            return false;
        }

        Metrics.ConnectionAccepted();
        return true;
    }

    internal void Unregister(long id) => _channels.TryRemove(id, out _);

    /// <inheritdoc />
    public int Disconnect(Func<ClientIdentity, bool> match, ReasonCode code, string? reason)
    {
        var closed = 0;
        foreach (var channel in _channels.Values)
        {
            if (channel.IsConnected && match(channel.Identity))
            {
                channel.Close(code, reason, publishWill: true);
                closed++;
            }
        }

        return closed;
    }

    /// <summary>
    /// Gives <paramref name="channel"/> the session for its client id and owner: a new one, or the existing one
    /// (taken over from its old connection, which is closed with 0x8E). Returns whether an existing session was
    /// resumed. A session of another owner with the same client id is a different session and is left alone.
    /// </summary>
    internal MqttSession AttachSession(MqttChannel channel, string ns, string owner, string clientId, bool cleanStart, uint expiryInterval, out bool sessionPresent)
    {
        MqttSession session;
        lock (_sessionGate)
        {
            var key = (ns, owner, clientId);
            var resumable = false;
            if (_sessions.TryGetValue(key, out var existing))
            {
                resumable = existing.TakeOver(cleanStart, out var previous);

                // The old connection is told 0x8E and closed; its will follows the usual rules (see DetachSession).
                previous?.Kick();
            }

            if (existing is not null && resumable)
            {
                session = existing;
                sessionPresent = true;
            }
            else
            {
                if (existing is not null)
                {
                    EndSession(existing);
                }

                session = new MqttSession(ns, clientId, owner, _sessionServices);
                _sessions[key] = session;
                sessionPresent = false;
            }

            session.Attach(channel, expiryInterval);
        }

        return session;
    }

    /// <summary>Called when a connected channel goes away: keeps or ends its session, and handles its will.</summary>
    internal void DetachSession(MqttChannel channel, MqttSession session, BrokerMessage? will, uint willDelay)
    {
        List<PendingDelivery>? redispatch;
        lock (_sessionGate)
        {
            var willNow = session.Detach(channel, Time.GetUtcNow(), will, willDelay, out var end, out redispatch);
            if (willNow is not null)
            {
                RouteAndRetain(willNow);
                willNow.Release();
            }

            if (end)
            {
                EndSession(session);
                _sessions.TryRemove(new KeyValuePair<(string, string, string), MqttSession>((session.Namespace, session.Owner, session.ClientId), session));
            }
        }

        if (redispatch is not null)
        {
            foreach (var pending in redispatch)
            {
                RedeliverToGroup(session, pending);
                pending.Message.Release();
            }
        }
    }

    private void RedeliverToGroup(MqttSession leaving, PendingDelivery pending)
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

    /// <summary>Discards a session: its subscriptions leave the trie, its messages are released, a pending will goes out.</summary>
    private void EndSession(MqttSession session)
    {
        var subscriptions = session.End(out var will);
        var trie = GetNamespace(session.Namespace).Trie;
        foreach (var subscription in subscriptions)
        {
            trie.Remove(session, subscription.Filter, subscription.ShareGroup);
        }

        if (will is not null)
        {
            will.Restamp(Time.GetUtcNow());
            RouteAndRetain(will);
            will.Release();
        }
    }

    /// <summary>
    /// Whether a retained publish of this size on <paramref name="topic"/> fits the retained limits of
    /// <paramref name="ns"/> now (<see cref="BrokerOptions.MaximumRetainedMessageSize"/>,
    /// <see cref="BrokerOptions.MaximumRetainedBytesPerNamespace"/>). Checked before a client's retained publish is
    /// accepted, so that a 5.0 publisher can be told 0x97; the store decides for good when it is routed.
    /// </summary>
    internal bool CanRetain(string ns, string topic, int payloadLength, MqttProperties? properties)
    {
        var size = RetainedStore.SizeOf(topic, payloadLength, properties);
        return size <= Options.MaximumRetainedMessageSize && GetNamespace(ns).Retained.HasRoomFor(topic, size, Options.MaximumRetainedBytesPerNamespace);
    }

    /// <summary>Stores <paramref name="message"/> if retained, then routes it. The caller keeps its own reference.</summary>
    internal int RouteAndRetain(BrokerMessage message)
    {
        if (message.Retain)
        {
            if (!GetNamespace(message.Namespace).Retained.Set(message, Options.MaximumRetainedMessages, Options.MaximumRetainedMessageSize, Options.MaximumRetainedBytesPerNamespace))
            {
                Metrics.MessageDropped(DropReasons.RetainedLimit);
            }
        }

        return Route(message);
    }

    /// <summary>
    /// Delivers <paramref name="message"/> to every matching subscriber in its namespace: one copy per session at
    /// the highest QoS granted among its matching subscriptions (with all their identifiers), and one copy per
    /// shared group to one member in turn. Returns the number of deliveries.
    /// </summary>
    internal int Route(BrokerMessage message)
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

            if (deliveries == 0)
            {
                Metrics.MessageDropped(DropReasons.NoSubscribers);
            }

            return deliveries;
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
    internal void Deliver(MqttSession session, BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group)
    {
        if (session.Deliver(message, qos, retain, subscriptionIds, group, t_collectCongestion) == DeliveryResult.Congested)
        {
            t_congested ??= session;
        }
    }

    [ThreadStatic]
    private static bool t_collectCongestion;

    [ThreadStatic]
    private static MqttSession? t_congested;

    /// <summary>
    /// Routes a client's PUBLISH (<see cref="RouteAndRetain"/>). A QoS 1/2 delivery that finds a connected
    /// subscriber's queue full is queued anyway, within twice the queue's limits, and that session is returned
    /// in <paramref name="congested"/>: the publishing connection must then wait for room
    /// (<see cref="MqttSession.WaitForRoomAsync"/>) before it acknowledges and reads on. That is how a subscriber
    /// that falls behind slows its publishers down instead of losing their messages.
    /// </summary>
    internal int RouteFromClient(BrokerMessage message, out MqttSession? congested)
    {
        t_collectCongestion = true;
        try
        {
            return RouteAndRetain(message);
        }
        finally
        {
            congested = t_congested;
            t_congested = null;
            t_collectCongestion = false;
        }
    }

    /// <inheritdoc />
    public void Publish(string ns, PublishPacket packet)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(packet);
        var message = BrokerMessage.Create(ns, packet.Topic, packet.Payload, packet.PayloadOwner, packet.QoS, packet.Retain, packet.Properties, Time.GetUtcNow(), originClientId: null);
        RouteAndRetain(message);
        message.Release();
    }

    [LoggerMessage(EventId = 106, Level = LogLevel.Information, Message = "{Count} more refusals (refused connections, protocol errors) were not logged")]
    private static partial void LogRefusalsSuppressed(ILogger logger, long count);

    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "Broker housekeeping failed")]
    private static partial void LogHousekeepingFailed(ILogger logger, Exception exception);

    internal sealed class NamespaceState(bool tracksRetainedChanges)
    {
        public SubscriptionTrie Trie { get; } = new();
        public RetainedStore Retained { get; } = new(tracksRetainedChanges);
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
