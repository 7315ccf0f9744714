using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Taihu.Cluster.Mqtt;

/// <summary>
/// Which node holds the MQTT session of each client (namespace, owner, client id), cluster-wide. The clients are
/// spread over <see cref="SessionRegistry.Partitions"/> grains by a hash of their key; each partition keeps its
/// clients' holders and makes the claims of one client one at a time, in order.
/// </summary>
public interface ISessionRegistryGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// <paramref name="node"/> holds the session from now on; the node that held it before, if another and alive,
    /// ends it there (its connection is closed with 0x8E) before this returns, and what it held comes back, with the
    /// number of this claim (for <see cref="Release"/>).
    /// </summary>
    Task<SessionHandover> Claim(SiloAddress node, string ns, string owner, string clientId);

    /// <summary>
    /// <paramref name="node"/>, succeeding the dead node <paramref name="dead"/>, holds the session from now on,
    /// unless another live node holds it (its client connected there since): then nothing changes and 0 comes back;
    /// else the number of this claim.
    /// </summary>
    Task<long> ClaimForSuccessor(SiloAddress node, SiloAddress dead, string ns, string owner, string clientId);

    /// <summary>The session that claim <paramref name="claim"/> gave <paramref name="node"/> has ended there: forgotten, unless claimed since.</summary>
    [OneWay]
    Task Release(SiloAddress node, string ns, string owner, string clientId, long claim);
}

/// <summary>What a claim got from the node that held the session before.</summary>
/// <param name="Known">
/// A live node held it: the claiming node itself, or another that ended it (else: nobody known, a dead node, or no
/// answer in time).
/// </param>
/// <param name="Session">What the other node held of it, when it was persistent.</param>
/// <param name="Claim">This claim's number, given back with <see cref="ISessionRegistryGrain.Release"/> when the session ends.</param>
[GenerateSerializer]
[Immutable]
public sealed record SessionHandover([property: Id(0)] bool Known, [property: Id(1)] TransferredSession? Session, [property: Id(2)] long Claim);

/// <summary>Where a client's entry in the session registry lives.</summary>
public static class SessionRegistry
{
    /// <summary>
    /// Grains the clients are spread over: enough to spread the claims of a connect storm over every node's cores,
    /// few enough that all of them are activated once, in the first seconds, and stay.
    /// </summary>
    public const int Partitions = 256;

    /// <summary>The client's key: each part with its length first, so that no client id can pass for another key.</summary>
    public static string KeyOf(string ns, string owner, string clientId) => $"{ns.Length}:{ns}{owner.Length}:{owner}{clientId}";

    /// <summary>The partition of a key, the same in every process (FNV-1a over its characters; a string's own hash differs per process).</summary>
    public static int PartitionOf(string key)
    {
        var hash = 2166136261u;
        foreach (var c in key)
        {
            hash = (hash ^ c) * 16777619u;
        }

        return (int)(hash % Partitions);
    }

    public static ISessionRegistryGrain For(IGrainFactory grains, string key) => grains.GetGrain<ISessionRegistryGrain>(PartitionOf(key));
}

/// <summary>
/// One partition of the session registry. Kept active for good (an idle grain collected after Orleans' 15 minutes
/// would forget the holders of clients connected longer than that), and in memory only: if the node hosting it dies,
/// its clients' next claims find no holder (see docs/scaling.md). Reentrant, so that a claim waiting for an old node
/// to end a session holds up only the claims of that client (<see cref="SessionHolders"/>).
/// </summary>
[Reentrant]
[KeepAlive]
internal sealed partial class SessionRegistryGrain(INodeLinkClient nodes, IClusterMembershipService membership, ILogger<SessionRegistryGrain> logger)
    : Grain, ISessionRegistryGrain
{
    /// <summary>How long the old node has to end the session before the new connection goes on without it.</summary>
    private static readonly TimeSpan s_endTimeout = TimeSpan.FromSeconds(5);

    private readonly SessionHolders _holders = new();

    public async Task<SessionHandover> Claim(SiloAddress node, string ns, string owner, string clientId)
    {
        var key = SessionRegistry.KeyOf(ns, owner, clientId);
        var entry = await _holders.TurnAsync(key);
        var previous = _holders.Take(entry, node, out var claim);
        if (previous is null || membership.CurrentSnapshot.GetSiloStatus(previous) != SiloStatus.Active)
        {
            SessionHolders.EndTurn(entry);
            return new SessionHandover(Known: false, Session: null, claim);
        }

        if (previous.Equals(node))
        {
            SessionHolders.EndTurn(entry);
            return new SessionHandover(Known: true, Session: null, claim);
        }

        try
        {
            var session = await nodes.On(previous).EndSession(ns, owner, clientId).WaitAsync(s_endTimeout);
            return new SessionHandover(Known: true, session, claim);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
        {
            LogEndFailed(logger, clientId, previous.ToString(), e.Message);
            return new SessionHandover(Known: false, Session: null, claim);
        }
        finally
        {
            SessionHolders.EndTurn(entry);
        }
    }

    public async Task<long> ClaimForSuccessor(SiloAddress node, SiloAddress dead, string ns, string owner, string clientId)
    {
        var key = SessionRegistry.KeyOf(ns, owner, clientId);
        var entry = await _holders.TurnAsync(key);
        try
        {
            if (entry.Holder is { } holder && !holder.Equals(dead) && !holder.Equals(node) && membership.CurrentSnapshot.GetSiloStatus(holder) == SiloStatus.Active)
            {
                return 0;
            }

            _holders.Take(entry, node, out var claim);
            return claim;
        }
        finally
        {
            SessionHolders.EndTurn(entry);
        }
    }

    public Task Release(SiloAddress node, string ns, string owner, string clientId, long claim)
    {
        _holders.Release(SessionRegistry.KeyOf(ns, owner, clientId), node, claim);
        return Task.CompletedTask;
    }

    [LoggerMessage(EventId = 2615, Level = LogLevel.Warning, Message = "Client {ClientId}: the session on node {Node} could not be ended ({Error}); the new connection goes on")]
    private static partial void LogEndFailed(ILogger logger, string clientId, string node, string error);
}

/// <summary>
/// The state of one registry partition: each client's holder and the number of the claim that made it, and whose
/// turn it is. Changed only by its grain, whose turns run one at a time; a claim that waits for an old node keeps
/// the turn of its client (<see cref="TurnAsync"/>) across that wait, so the claims of one client run in order while
/// the others go on.
/// </summary>
internal sealed class SessionHolders
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private long _lastClaim;

    internal sealed class Entry
    {
        public SiloAddress? Holder;
        public long Claim;

        /// <summary>Completed when the claim that has this client's turn ends; null when nobody has it.</summary>
        public TaskCompletionSource? Turn;

        /// <summary>Claims waiting for the turn (the entry stays while any does).</summary>
        public int Waiting;
    }

    /// <summary>Clients with an entry.</summary>
    public int Count => _entries.Count;

    /// <summary>The client's entry, once no other claim of it is under way: the caller has the turn until <see cref="EndTurn"/>.</summary>
    public async ValueTask<Entry> TurnAsync(string key)
    {
        if (!_entries.TryGetValue(key, out var entry))
        {
            entry = new Entry();
            _entries[key] = entry;
        }

        if (entry.Turn is null)
        {
            entry.Turn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return entry;
        }

        // Counted as waiting until the turn is ours, so that a release in between keeps the entry.
        entry.Waiting++;
        while (entry.Turn is { } busy)
        {
            await busy.Task;
        }

        entry.Turn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        entry.Waiting--;
        return entry;
    }

    /// <summary>Makes <paramref name="node"/> the holder under a new claim number; returns the holder before.</summary>
    public SiloAddress? Take(Entry entry, SiloAddress node, out long claim)
    {
        var previous = entry.Holder;
        entry.Holder = node;
        entry.Claim = claim = ++_lastClaim;
        return previous;
    }

    public static void EndTurn(Entry entry)
    {
        var turn = entry.Turn;
        entry.Turn = null;
        turn?.TrySetResult();
    }

    /// <summary>Forgets the holder when it is still <paramref name="node"/> under <paramref name="claim"/> and no claim is under way.</summary>
    public void Release(string key, SiloAddress node, long claim)
    {
        if (_entries.TryGetValue(key, out var entry) && entry.Turn is null && entry.Waiting == 0 && entry.Claim == claim && node.Equals(entry.Holder))
        {
            _entries.Remove(key);
        }
    }

    /// <summary>The holder of a client, or null.</summary>
    public SiloAddress? HolderOf(string key) => _entries.TryGetValue(key, out var entry) ? entry.Holder : null;
}
