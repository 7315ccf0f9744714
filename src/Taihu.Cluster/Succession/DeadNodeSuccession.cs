using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Orleans;
using Orleans.Runtime;
using Taihu.Broker;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Cluster.Devices;
using Taihu.Cluster.Events;
using Taihu.Cluster.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Platform.Devices;
using Taihu.Platform.Hosting;
using Taihu.Platform.Rpc;

namespace Taihu.Cluster.Succession;

/// <summary>
/// What the surviving nodes do for a node that died without stopping (killed, its machine lost): the node holding
/// the event log lease (<see cref="PostgresEventWorkLease"/>) takes over the dead node's duties, once each, in this
/// one place (docs/scaling.md, "When a node dies").
/// </summary>
/// <remarks>
/// <para>
/// One loop owns everything here (the deaths seen, the wills waiting for their delay); nothing is shared or locked.
/// Membership tells every node of a death; only the lease holder acts on it, and a node that takes the lease later
/// finds the dead node's rows still in the cluster's tables, so a holder that dies in the middle leaves the rest to
/// the next. For each dead node, in this order:
/// </para>
/// <list type="number">
/// <item>its persistent sessions (<c>cluster_sessions</c>): each one no live node holds is claimed for this node
/// (<see cref="ISessionRegistryGrain.ClaimForSuccessor"/>, which refuses when the client has connected to a live node
/// since) and put here from its last stored snapshot, away from its client: its subscriptions route and queue
/// messages, and the client gets it (Session Present 1) wherever it connects next, as after a takeover;</item>
/// <item>its wills (<c>cluster_wills</c>): each of a client that no live node holds is made this node's and sent
/// after its Will Delay Interval counted from the detection, unless the client has connected meanwhile, through
/// the broker's normal routing (subscribers on every node, retained when flagged);</item>
/// <item>the persistent RPC calls (not kept by node: one sweep for all the deaths of a round, and once when this
/// node first holds the lease for the nodes that died before): this node's owners take every
/// device's calls that are not final back from the store, so that their expiries and reply timeouts run here
/// (a call the dead node had delivered times out from its delivery), and every other node is told, so that a
/// device that connects to it (or already has) gets what waits for it, a call sent and not acknowledged again as
/// a retry.</item>
/// </list>
/// <para>Its devices' connectivity is not this node's to take: their partitions' owners drop its connections
/// (<see cref="Devices.ConnectivityPartitionGrain"/>).</para>
/// </remarks>
internal sealed partial class DeadNodeSuccession : BackgroundService
{
    /// <summary>How often the holder looks in the tables for dead nodes' rows besides the deaths it is told of.</summary>
    private static readonly TimeSpan s_scanInterval = TimeSpan.FromSeconds(10);

    /// <summary>
    /// When the devices with calls are woken again after a death's sweep: Orleans deactivates, after a death, the
    /// activations on live nodes whose directory entries lived on the dead one, owners of calls among them.
    /// </summary>
    private static readonly TimeSpan s_callsAgain = TimeSpan.FromSeconds(10);

    /// <summary>How long another node has to answer what it holds.</summary>
    private static readonly TimeSpan s_askTimeout = TimeSpan.FromSeconds(5);

    private readonly PostgresEventWorkLease _lease;
    private readonly IClusterMembershipService _membership;
    private readonly ILocalSiloDetails _local;
    private readonly ClusterWills _wills;
    private readonly ClusterSessionStore _sessions;
    private readonly MqttBroker _broker;
    private readonly IGrainFactory _grains;
    private readonly INodeLinkClient _links;
    private readonly RpcService _rpc;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly TimeProvider _time;
    private readonly ILogger<DeadNodeSuccession> _logger;
    private readonly Counter<long> _willsSent;
    private readonly Counter<long> _sessionsTakenOver;

    // Owned by the loop.
    private readonly Dictionary<SiloAddress, DateTimeOffset> _deaths = [];
    private readonly HashSet<SiloAddress> _callsSwept = [];
    private readonly List<(WillRow Row, DateTimeOffset Due)> _waitingWills = [];
    private DateTimeOffset? _callsAgainAt;

    public DeadNodeSuccession(PostgresEventWorkLease lease, IClusterMembershipService membership, ILocalSiloDetails local, ClusterWills wills,
        ClusterSessionStore sessions, MqttBroker broker, IGrainFactory grains, INodeLinkClient links,
        RpcService rpc, IHostApplicationLifetime lifetime, TimeProvider time, IMeterFactory meters,
        ILogger<DeadNodeSuccession> logger)
    {
        ArgumentNullException.ThrowIfNull(meters);
        _lease = lease;
        _membership = membership;
        _local = local;
        _wills = wills;
        _sessions = sessions;
        _broker = broker;
        _grains = grains;
        _links = links;
        _rpc = rpc;
        _lifetime = lifetime;
        _time = time;
        _logger = logger;
        var meter = meters.Create(ClusterNodes.MeterName);
        _willsSent = meter.CreateCounter<long>("taihu.cluster.wills_sent", "{will}", "Wills of dead nodes' clients sent by this node as their successor.");
        _sessionsTakenOver = meter.CreateCounter<long>("taihu.cluster.sessions_taken_over", "{session}",
            "Persistent sessions of dead nodes taken over by this node as their successor.");
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The silo is active and the broker listening once the host has started.
        if (!await _lifetime.StartedAsync(stoppingToken))
        {
            return;
        }

        var wasHeld = false;
        var nextScan = DateTimeOffset.MinValue;
        // Nodes already dead when this one starts are succeeded too (their rows, and one sweep of their devices)
        // if nobody did it: this node may be the first holder since.
        var known = _membership.CurrentSnapshot.Version;
        foreach (var (address, member) in _membership.CurrentSnapshot.Members)
        {
            if (member.Status == SiloStatus.Dead)
            {
                _deaths.TryAdd(address, _time.GetUtcNow());
            }
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var now = _time.GetUtcNow();
                var snapshot = _membership.CurrentSnapshot;
                if (snapshot.Version != known)
                {
                    known = snapshot.Version;
                    foreach (var (address, member) in snapshot.Members)
                    {
                        if (member.Status == SiloStatus.Dead && _deaths.TryAdd(address, now))
                        {
                            nextScan = now;
                            LogDeathSeen(_logger, address, now.UtcDateTime);
                        }
                    }
                }

                var held = _lease.IsHeld;
                if (held && !wasHeld)
                {
                    nextScan = now;
                }

                wasHeld = held;
                if (held && now >= nextScan)
                {
                    nextScan = now + s_scanInterval;
                    await ScanAsync(snapshot, stoppingToken);
                }

                if (held && _callsAgainAt is { } again && now >= again)
                {
                    _callsAgainAt = null;
                    await _rpc.ResumeAsync(stoppingToken);
                }

                await SendDueWillsAsync(stoppingToken);
                await Task.Delay(TimeSpan.FromMilliseconds(200), _time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or OrleansException or SiloUnavailableException or InvalidOperationException)
            {
                // Tried again at the next look; what was done stays done (each step is recorded as it goes).
                LogFailed(_logger, e);
                nextScan = _time.GetUtcNow() + TimeSpan.FromSeconds(1);
                await Task.Delay(TimeSpan.FromSeconds(1), _time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>The dead nodes with rows in the cluster's tables, and those seen dying whose devices are not done yet.</summary>
    private async Task ScanAsync(ClusterMembershipSnapshot snapshot, CancellationToken cancellationToken)
    {
        var dead = new HashSet<SiloAddress>();
        foreach (var name in await _wills.NodesWithRowsAsync(cancellationToken))
        {
            var address = SiloAddress.FromParsableString(name);
            if (snapshot.GetSiloStatus(address) == SiloStatus.Dead)
            {
                dead.Add(address);
            }
        }

        foreach (var (address, _) in _deaths)
        {
            if (!_callsSwept.Contains(address))
            {
                dead.Add(address);
            }
        }

        DateTimeOffset? sweepAt = null;
        foreach (var address in dead)
        {
            // Seen dead by this node now if it was not told before (it took the lease after the death).
            if (!_deaths.TryGetValue(address, out var detected))
            {
                detected = _time.GetUtcNow();
                _deaths[address] = detected;
            }

            await SucceedAsync(address, detected, cancellationToken);
            if (!_callsSwept.Contains(address) && (sweepAt is null || detected < sweepAt))
            {
                sweepAt = detected;
            }
        }

        // The calls are not kept by node: one sweep for all the deaths not swept yet.
        if (sweepAt is { } at)
        {
            // Each device's owner is woken where it lives; one that lived on the dead node is activated again.
            var withCalls = await _rpc.ResumeAsync(cancellationToken);
            _callsAgainAt = _time.GetUtcNow() + s_callsAgain;

            foreach (var address in dead)
            {
                _callsSwept.Add(address);
            }

            LogCallsTaken(_logger, withCalls);
        }
    }

    private async Task SucceedAsync(SiloAddress dead, DateTimeOffset detected, CancellationToken cancellationToken)
    {
        var node = dead.ToParsableString();
        var self = _local.SiloAddress;

        var sessions = await _sessions.ListAsync(node, cancellationToken);
        var taken = 0;
        if (sessions.Count > 0)
        {
            var heldElsewhere = await HeldElsewhereAsync(sessions, cancellationToken);
            // The sessions live nodes hold already (their clients reconnected before the death was known) are only
            // forgotten, together; each of the others is claimed and taken in turn.
            var held = new List<SessionKey>();
            for (var i = 0; i < sessions.Count; i++)
            {
                if (heldElsewhere[i])
                {
                    held.Add(sessions[i]);
                }
            }

            await _sessions.DropAsync(held, node, cancellationToken);
            for (var i = 0; i < sessions.Count; i++)
            {
                if (heldElsewhere[i])
                {
                    continue;
                }

                var key = sessions[i];
                bool mine;
                // Marked before the claim: a client reconnecting here at once (as clients do) waits for the session
                // instead of finding it claimed for this node and not yet here (Session Present 0: seen in ClusterStateTests).
                using (_broker.BeginAdoption(key))
                {
                    var claim = await SessionRegistry.For(_grains, key.Namespace, key.Owner, key.ClientId).ClaimForSuccessor(self, dead, key.Namespace, key.Owner, key.ClientId);
                    mine = claim != 0;
                    if (mine && await _broker.AdoptStoredSessionAsync(key, claim, cancellationToken))
                    {
                        taken++;
                        _sessionsTakenOver.Add(1);
                    }
                }

                await _sessions.MoveAsync(key, node, taken: mine, cancellationToken);
            }
        }

        var wills = await _wills.ListAsync(node, cancellationToken);
        var waiting = 0;
        if (wills.Count > 0)
        {
            var keys = new List<SessionKey>(wills.Count);
            foreach (var row in wills)
            {
                keys.Add(row.Key);
            }

            var heldElsewhere = await HeldElsewhereAsync(keys, cancellationToken);
            for (var i = 0; i < wills.Count; i++)
            {
                var row = wills[i];
                if (!await _wills.TakeAsync(row, node, cancellationToken))
                {
                    continue;
                }

                if (heldElsewhere[i] || _broker.IsClientConnected(row.Key.Namespace, row.Key.Owner, row.Key.ClientId))
                {
                    // The client connected again before the death was known: its will is not sent.
                    await _wills.RemoveTakenAsync(row, cancellationToken);
                    continue;
                }

                _waitingWills.Add((row, detected + TimeSpan.FromSeconds(row.Will.Delay)));
                waiting++;
            }
        }

        LogSucceeded(_logger, node, taken, waiting);
        await SendDueWillsAsync(cancellationToken);
    }

    private async Task SendDueWillsAsync(CancellationToken cancellationToken)
    {
        if (_waitingWills.Count == 0)
        {
            return;
        }

        var now = _time.GetUtcNow();
        List<WillRow>? due = null;
        for (var i = _waitingWills.Count - 1; i >= 0; i--)
        {
            if (_waitingWills[i].Due <= now)
            {
                (due ??= []).Add(_waitingWills[i].Row);
                _waitingWills.RemoveAt(i);
            }
        }

        if (due is null)
        {
            return;
        }

        due.Reverse();
        var keys = new List<SessionKey>(due.Count);
        foreach (var row in due)
        {
            keys.Add(row.Key);
        }

        var heldElsewhere = await HeldElsewhereAsync(keys, cancellationToken);
        for (var i = 0; i < due.Count; i++)
        {
            var row = due[i];
            var (ns, owner, clientId) = (row.Key.Namespace, row.Key.Owner, row.Key.ClientId);
            // Connected again within the delay (anywhere), or its row replaced or ended by such a connection: cancelled.
            var back = heldElsewhere[i] || _broker.IsClientConnected(ns, owner, clientId);
            if (!await _wills.RemoveTakenAsync(row, cancellationToken) || back)
            {
                continue;
            }

            var will = row.Will;
            var message = BrokerMessage.Create(ns, will.Topic, will.Payload, owner: null, will.QoS, will.Retain,
                will.Properties is { } properties ? PropertyCodec.DecodeMessageProperties(properties) : null, now, clientId, owner);
            try
            {
                _broker.RouteWillOfDeadNode(message);
            }
            finally
            {
                message.Release();
            }

            _willsSent.Add(1);
            LogWillSent(_logger, clientId, ns);
        }
    }

    /// <summary>For each key, whether a live node other than this one holds the client's session.</summary>
    private async Task<bool[]> HeldElsewhereAsync(List<SessionKey> keys, CancellationToken cancellationToken)
    {
        var held = new bool[keys.Count];
        var flat = new string[keys.Count * 3];
        for (var i = 0; i < keys.Count; i++)
        {
            flat[3 * i] = keys[i].Namespace;
            flat[(3 * i) + 1] = keys[i].Owner;
            flat[(3 * i) + 2] = keys[i].ClientId;
        }

        var asks = new List<Task<bool[]>>();
        foreach (var (address, member) in _membership.CurrentSnapshot.Members)
        {
            if (member.Status == SiloStatus.Active && !address.Equals(_local.SiloAddress))
            {
                asks.Add(_links.On(address).HoldsSessions(flat).WaitAsync(s_askTimeout, cancellationToken));
            }
        }

        // A node that does not answer fails the round, which is tried again: nothing is taken from a live node.
        foreach (var answer in await Task.WhenAll(asks))
        {
            for (var i = 0; i < held.Length && i < answer.Length; i++)
            {
                held[i] |= answer[i];
            }
        }

        return held;
    }

    [LoggerMessage(EventId = 2661, Level = LogLevel.Warning, Message = "Node {Node} is dead: this node, holding the event log lease, took over {Sessions} persistent session(s) and {Wills} will(s) to send")]
    private static partial void LogSucceeded(ILogger logger, string node, int sessions, int wills);

    [LoggerMessage(EventId = 2681, Level = LogLevel.Information, Message = "Node {Node} is seen dead at {SeenAt:O}: the delays of its clients' wills count from then")]
    private static partial void LogDeathSeen(ILogger logger, SiloAddress node, DateTime seenAt);

    [LoggerMessage(EventId = 2664, Level = LogLevel.Information, Message = "Persistent RPC calls of {WithCalls} device(s) taken back from the store by this node as the dead nodes' successor")]
    private static partial void LogCallsTaken(ILogger logger, int withCalls);

    [LoggerMessage(EventId = 2662, Level = LogLevel.Information, Message = "Client {ClientId} (namespace '{Ns}'): the will its dead node held was sent")]
    private static partial void LogWillSent(ILogger logger, string clientId, string ns);

    [LoggerMessage(EventId = 2663, Level = LogLevel.Warning, Message = "Taking over a dead node's duties failed; tried again in a second")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
