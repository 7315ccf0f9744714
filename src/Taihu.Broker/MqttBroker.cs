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
        MqttChannel? previous = null;
        MqttSession session;
        lock (_sessionGate)
        {
            var key = (ns, owner, clientId);
            var resumable = false;
            if (_sessions.TryGetValue(key, out var existing))
            {
                lock (existing.Gate)
                {
                    previous = existing.Channel;
                    existing.Channel = null;

                    // A session with expiry 0 (3.1.1 Clean Session 1, 5.0 Session Expiry 0) ends with its
                    // connection: one taken over while still connected has nothing to resume (Mosquitto too).
                    resumable = !cleanStart && !existing.Ended && existing.ExpiryInterval != 0;
                }

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

                session = new MqttSession(ns, clientId, owner);
                _sessions[key] = session;
                sessionPresent = false;
            }

            lock (session.Gate)
            {
                session.Channel = channel;
                session.ExpiryInterval = expiryInterval;
                session.DisconnectedAt = null;
                session.StateChanged = true;
                if (session.PendingWill is { } will)
                {
                    // Reconnecting within the Will Delay Interval cancels the will (5.0 section 3.1.3.2.2).
                    will.Release();
                    session.PendingWill = null;
                    session.WillDueAt = null;
                }
            }
        }

        return session;
    }

    /// <summary>Called when a connected channel goes away: keeps or ends its session, and handles its will.</summary>
    internal void DetachSession(MqttChannel channel, MqttSession session, BrokerMessage? will, uint willDelay)
    {
        var now = Time.GetUtcNow();
        List<PendingDelivery>? redispatch = null;
        bool end;
        lock (_sessionGate)
        {
            lock (session.Gate)
            {
                if (!ReferenceEquals(session.Channel, channel))
                {
                    // Taken over: the new connection owns the session now. A will without delay goes out at
                    // once; a delayed one is cancelled because the session was resumed within the delay.
                    end = false;
                    if (will is not null && willDelay > 0 && !session.Ended)
                    {
                        will.Release();
                        will = null;
                    }
                }
                else
                {
                    session.Channel = null;
                    session.DisconnectedAt = now;
                    session.StateChanged = true;
                    // Nobody drains the queue now: publishers held back by it go on (and what overflows is dropped).
                    session.ReleaseWaitingPublishers();
                    end = session.ExpiryInterval == 0;
                    redispatch = TakeSharedDeliveries(session);
                }
            }

            if (will is not null)
            {
                var delay = Math.Min(willDelay, end ? 0 : session.ExpiryInterval);
                if (delay == 0 || session.Ended)
                {
                    RouteAndRetain(will);
                    will.Release();
                }
                else
                {
                    lock (session.Gate)
                    {
                        session.PendingWill?.Release();
                        session.PendingWill = will;
                        session.WillDueAt = now.AddSeconds(delay);
                    }
                }
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

    /// <summary>
    /// Takes the messages that reached <paramref name="session"/> through a shared subscription and were not
    /// acknowledged, so that another member of the group gets them. Caller holds the session gate.
    /// </summary>
    private static List<PendingDelivery>? TakeSharedDeliveries(MqttSession session)
    {
        List<PendingDelivery>? taken = null;
        for (var i = session.Inflight.Count - 1; i >= 0; i--)
        {
            var inflight = session.Inflight[i];
            if (inflight.Group is not null && !inflight.Released)
            {
                (taken ??= []).Insert(0, new PendingDelivery(inflight.Message, inflight.QoS, inflight.Retain, inflight.SubscriptionIds, inflight.Group));
                session.Inflight.RemoveAt(i);
            }
        }

        if (session.Queue.Count > 0)
        {
            var count = session.Queue.Count;
            for (var i = 0; i < count; i++)
            {
                var pending = session.DequeuePending();
                if (pending.Group is not null)
                {
                    (taken ??= []).Add(pending);
                }
                else
                {
                    session.EnqueuePending(pending);
                }
            }
        }

        return taken;
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
        BrokerMessage? will;
        List<Subscription> subscriptions;
        lock (session.Gate)
        {
            session.Ended = true;
            subscriptions = [.. session.Subscriptions.Values];
            session.Subscriptions.Clear();
            will = session.PendingWill;
            session.PendingWill = null;
            session.WillDueAt = null;
            session.ReleaseAll();
        }

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
    /// Hands one copy of <paramref name="message"/> to <paramref name="session"/>: straight to its connection when
    /// it is connected and has room in its inflight window, into its queue otherwise (QoS 1 and 2 only; QoS 0 for
    /// an absent client is dropped, as Mosquitto does by default).
    /// </summary>
    internal void Deliver(MqttSession session, BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group)
    {
        lock (session.Gate)
        {
            if (session.Ended)
            {
                return;
            }

            var channel = session.Channel;
            if (qos == QoS.AtMostOnce)
            {
                if (channel is null)
                {
                    return;
                }

                channel.EnqueuePublish(message, qos, retain, dup: false, packetId: 0, subscriptionIds);
                return;
            }

            if (channel is not null && session.Queue.Count == 0 && session.Inflight.Count < channel.SendQuota)
            {
                SendInflight(session, channel, message, qos, retain, subscriptionIds, group);
                return;
            }

            var size = MqttSession.SizeOf(message);
            if (IsQueueFull(session, size) && (DropExpired(session) == 0 || IsQueueFull(session, size)))
            {
                // Full. A publisher whose PUBLISH this is may be held back instead (see RouteFromClient), while
                // the subscriber is connected and reading: the message is queued past the limit, up to twice it,
                // and the publisher waits for room before it is acknowledged and read from again.
                if (!t_collectCongestion || channel is null || session.Stalled || Options.FullQueuePublisherWait <= TimeSpan.Zero || IsQueueOverfull(session, size))
                {
                    Metrics.MessageDropped(session.Queue.Count >= Options.MaximumQueuedMessages ? DropReasons.QueueFull : DropReasons.QueueBytesFull);
                    return;
                }

                t_congested ??= session;
            }

            message.AddReference();
            session.EnqueuePending(new PendingDelivery(message, qos, retain, subscriptionIds, group));
            session.StateChanged = true;
        }
    }

    /// <summary>Whether one more message of <paramref name="size"/> bytes would exceed the session's queue limits. Caller holds the gate.</summary>
    private bool IsQueueFull(MqttSession session, long size) =>
        session.Queue.Count >= Options.MaximumQueuedMessages
        || (Options.MaximumQueuedBytes > 0 && session.QueuedBytes + size > Options.MaximumQueuedBytes);

    /// <summary>Whether the queue is past what held-back publishers may add beyond the limits (twice them). Caller holds the gate.</summary>
    private bool IsQueueOverfull(MqttSession session, long size) =>
        session.Queue.Count >= 2L * Options.MaximumQueuedMessages
        || (Options.MaximumQueuedBytes > 0 && session.QueuedBytes + size > 2 * Options.MaximumQueuedBytes);

    /// <summary>
    /// Whether a full queue has room again for publishers held back by it: below seven eighths of each limit, so
    /// that they resume together once a batch has drained rather than one by one. Caller holds the gate.
    /// </summary>
    private bool HasRoomAgain(MqttSession session) =>
        session.Queue.Count <= Options.MaximumQueuedMessages - (Options.MaximumQueuedMessages / 8)
        && (Options.MaximumQueuedBytes <= 0 || session.QueuedBytes <= Options.MaximumQueuedBytes - (Options.MaximumQueuedBytes / 8));

    [ThreadStatic]
    private static bool t_collectCongestion;

    [ThreadStatic]
    private static MqttSession? t_congested;

    /// <summary>
    /// Routes a client's PUBLISH (<see cref="RouteAndRetain"/>). A QoS 1/2 delivery that finds a connected
    /// subscriber's queue full is queued anyway, within <see cref="IsQueueOverfull"/>, and that session is returned
    /// in <paramref name="congested"/>: the publishing connection must then wait for room
    /// (<see cref="WaitForRoomAsync"/>) before it acknowledges and reads on. That is how a subscriber that falls
    /// behind slows its publishers down instead of losing their messages.
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

    /// <summary>
    /// Waits until <paramref name="session"/>'s queue has room again, for at most
    /// <see cref="BrokerOptions.FullQueuePublisherWait"/>. When none comes in that time the session is marked
    /// stalled: its subscriber is not reading, and publishers are no longer held for it.
    /// </summary>
    internal async ValueTask WaitForRoomAsync(MqttSession session, CancellationToken cancellationToken)
    {
        Task wait;
        lock (session.Gate)
        {
            if (session.Ended || session.Channel is null || session.Stalled || HasRoomAgain(session))
            {
                return;
            }

            wait = (session.Room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        try
        {
            var waiting = wait.WaitAsync(Options.FullQueuePublisherWait, Time, cancellationToken);
            Metrics.PublisherHeldBack();
            await waiting;
        }
        catch (TimeoutException)
        {
            lock (session.Gate)
            {
                if (!HasRoomAgain(session))
                {
                    session.Stalled = true;
                }
            }
        }
    }

    /// <summary>Lets publishers held back by <paramref name="session"/> go on once its queue has room again. Caller holds the gate.</summary>
    private void ReleaseWhenRoom(MqttSession session)
    {
        if ((session.Room is not null || session.Stalled) && HasRoomAgain(session))
        {
            session.ReleaseWaitingPublishers();
        }
    }

    /// <summary>
    /// Removes the expired messages from a full queue (they would only be dropped when pumped), so that they do
    /// not keep fresh ones out of an offline session. Returns how many were removed. The queue is walked only once
    /// its earliest expiry has passed, so a queue that stays full costs O(1) per refused message, not O(queue).
    /// Caller holds the gate.
    /// </summary>
    private int DropExpired(MqttSession session)
    {
        var now = Time.GetUtcNow();
        if (now < session.QueuedExpiryNotBefore)
        {
            return 0;
        }

        var count = session.Queue.Count;
        var removed = 0;
        var earliest = DateTimeOffset.MaxValue;
        for (var i = 0; i < count; i++)
        {
            var pending = session.DequeuePending();
            if (pending.Message.IsExpired(now))
            {
                Metrics.MessageDropped(DropReasons.Expired);
                pending.Message.Release();
                removed++;
            }
            else
            {
                session.EnqueuePending(pending);
                if (pending.Message.ExpiresAt is { } at && at < earliest)
                {
                    earliest = at;
                }
            }
        }

        session.QueuedExpiryNotBefore = earliest;
        return removed;
    }

    /// <summary>Gives the message a packet identifier, records it in flight and queues it for the socket. Caller holds the gate.</summary>
    private static void SendInflight(MqttSession session, MqttChannel channel, BrokerMessage message, QoS qos, bool retain, List<uint>? subscriptionIds, SharedGroup? group)
    {
        var packetId = session.NextPacketId();
        message.AddReference();
        session.Inflight.Add(new InflightMessage
        {
            PacketId = packetId,
            Message = message,
            QoS = qos,
            Retain = retain,
            SubscriptionIds = subscriptionIds,
            Group = group,
        });
        session.StateChanged = true;
        channel.EnqueuePublish(message, qos, retain, dup: false, packetId, subscriptionIds);
    }

    /// <summary>Moves queued messages into the inflight window while it has room. Caller holds the gate.</summary>
    internal void Pump(MqttSession session, MqttChannel channel)
    {
        var now = Time.GetUtcNow();
        while (session.Queue.Count > 0 && session.Inflight.Count < channel.SendQuota)
        {
            var pending = session.DequeuePending();
            session.StateChanged = true;
            if (pending.Message.IsExpired(now))
            {
                Metrics.MessageDropped(DropReasons.Expired);
            }
            else
            {
                SendInflight(session, channel, pending.Message, pending.QoS, pending.Retain, pending.SubscriptionIds, pending.Group);
            }

            pending.Message.Release();
        }

        ReleaseWhenRoom(session);
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
