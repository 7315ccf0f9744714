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

/// <summary>A session a node holds, with the number of the claim that gave it to the node.</summary>
[GenerateSerializer]
[Immutable]
public readonly record struct HeldSession([property: Id(0)] string Namespace, [property: Id(1)] string Owner, [property: Id(2)] string ClientId, [property: Id(3)] long Claim);

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

    private const uint FnvOffset = 2166136261u;
    private const uint FnvPrime = 16777619u;

    /// <summary>The partition of a key, the same in every process (FNV-1a over its characters; a string's own hash differs per process).</summary>
    public static int PartitionOf(string key) => (int)(Fnv(FnvOffset, key) % Partitions);

    /// <summary>The partition of the client's key (<see cref="KeyOf"/>), without making the key.</summary>
    public static int PartitionOf(string ns, string owner, string clientId)
    {
        Span<char> digits = stackalloc char[11];
        var hash = FnvOffset;
        ns.Length.TryFormat(digits, out var written, provider: System.Globalization.CultureInfo.InvariantCulture);
        hash = Fnv(Fnv(Fnv(hash, digits[..written]), ":"), ns);
        owner.Length.TryFormat(digits, out written, provider: System.Globalization.CultureInfo.InvariantCulture);
        hash = Fnv(Fnv(Fnv(hash, digits[..written]), ":"), owner);
        return (int)(Fnv(hash, clientId) % Partitions);
    }

    private static uint Fnv(uint hash, ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            hash = (hash ^ c) * FnvPrime;
        }

        return hash;
    }

    /// <summary>
    /// The sessions a node holds, sorted by partition in one pass: when a node dies, every partition it hosted is
    /// activated again at once and asks each live node for its own share, so one pass answers them all.
    /// </summary>
    public static HeldSession[][] ByPartition(IEnumerable<(string Namespace, string Owner, string ClientId, long Claim)> held)
    {
        var lists = new List<HeldSession>?[Partitions];
        foreach (var (ns, owner, clientId, claim) in held)
        {
            (lists[PartitionOf(ns, owner, clientId)] ??= []).Add(new HeldSession(ns, owner, clientId, claim));
        }

        var result = new HeldSession[Partitions][];
        for (var i = 0; i < Partitions; i++)
        {
            result[i] = lists[i] is { } list ? [.. list] : [];
        }

        return result;
    }

    /// <summary>The partition grain of the client (its key is not made: a connect on a cluster node only needs its hash).</summary>
    public static ISessionRegistryGrain For(IGrainFactory grains, string ns, string owner, string clientId) =>
        grains.GetGrain<ISessionRegistryGrain>(PartitionOf(ns, owner, clientId));
}

/// <summary>
/// One partition of the session registry. Kept active for good (an idle grain collected after Orleans' 15 minutes
/// would forget the holders of clients connected longer than that), and in memory only: when the node hosting it
/// dies, the partition is activated again on another node at its next call, and first asks every live node which of
/// its clients' sessions that node holds (<see cref="INodeLinkService.SessionsIn"/>), so that a client connected to a
/// live node is still known there. Reentrant, so that a claim waiting for an old node to end a session holds up
/// only the claims of that client (<see cref="SessionHolders"/>).
/// </summary>
[Reentrant]
[KeepAlive]
internal sealed partial class SessionRegistryGrain(INodeLinkClient nodes, IClusterMembershipService membership, TimeProvider time, ILogger<SessionRegistryGrain> logger)
    : Grain, ISessionRegistryGrain
{
    /// <summary>How long the old node has to end the session before the new connection goes on without it.</summary>
    private static readonly TimeSpan s_endTimeout = TimeSpan.FromSeconds(5);

    // Claim numbers go on from the time of the activation, so that a number given by an earlier activation of this
    // partition (on a node since dead) is not given again, and an old session's release cannot match a new claim.
    private readonly SessionHolders _holders = new(time.GetUtcNow().UtcTicks);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var partition = (int)this.GetPrimaryKeyLong();
        var asks = new List<(SiloAddress Node, Task<HeldSession[]> Held)>();
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active)
            {
                asks.Add((member.SiloAddress, nodes.On(member.SiloAddress).SessionsIn(partition).WaitAsync(s_endTimeout, cancellationToken)));
            }
        }

        var restored = 0;
        foreach (var (node, ask) in asks)
        {
            try
            {
                foreach (var held in await ask)
                {
                    _holders.Restore(SessionRegistry.KeyOf(held.Namespace, held.Owner, held.ClientId), node, held.Claim);
                    restored++;
                }
            }
            catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
            {
                LogAskFailed(logger, partition, node.ToString(), e.Message);
            }
        }

        if (restored > 0)
        {
            LogRestored(logger, partition, restored, asks.Count);
        }
    }

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

    [LoggerMessage(EventId = 2666, Level = LogLevel.Warning, Message = "Session registry partition {Partition}: node {Node} did not say which sessions it holds ({Error}); its clients' next claims there will not end them")]
    private static partial void LogAskFailed(ILogger logger, int partition, string node, string error);

    [LoggerMessage(EventId = 2667, Level = LogLevel.Information, Message = "Session registry partition {Partition} activated: {Count} session(s) held on {Nodes} node(s) taken back")]
    private static partial void LogRestored(ILogger logger, int partition, int count, int nodes);
}

/// <summary>
/// The state of one registry partition: each client's holder and the number of the claim that made it, and whose
/// turn it is. Changed only by its grain, whose turns run one at a time; a claim that waits for an old node keeps
/// the turn of its client (<see cref="TurnAsync"/>) across that wait, so the claims of one client run in order while
/// the others go on.
/// </summary>
/// <param name="lastClaim">The claim numbers given start after this one.</param>
internal sealed class SessionHolders(long lastClaim = 0)
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private long _lastClaim = lastClaim;

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

    /// <summary>
    /// At activation: <paramref name="node"/> says it holds the client's session under <paramref name="claim"/>. Two
    /// nodes that both say so (a takeover under way when the partition was lost) leave the later claim's node.
    /// </summary>
    public void Restore(string key, SiloAddress node, long claim)
    {
        if (_entries.TryGetValue(key, out var entry) && entry.Claim > claim)
        {
            return;
        }

        _entries[key] = new Entry { Holder = node, Claim = claim };
        _lastClaim = Math.Max(_lastClaim, claim);
    }

    /// <summary>The holder of a client, or null.</summary>
    public SiloAddress? HolderOf(string key) => _entries.TryGetValue(key, out var entry) ? entry.Holder : null;
}
