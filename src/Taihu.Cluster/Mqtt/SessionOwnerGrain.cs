using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Runtime;

namespace Taihu.Cluster.Mqtt;

/// <summary>
/// Which node holds the MQTT session of one client (namespace, owner, client id), cluster-wide: one grain per
/// client, so claims for one client are made one at a time, in order.
/// </summary>
public interface ISessionOwnerGrain : IGrainWithStringKey
{
    /// <summary>
    /// <paramref name="node"/> holds the session from now on; the node that held it before, if another and alive,
    /// ends it there (its connection is closed with 0x8E) before this returns, and what it held comes back.
    /// </summary>
    Task<SessionHandover> Claim(SiloAddress node, string ns, string owner, string clientId);

    /// <summary>
    /// <paramref name="node"/>, succeeding the dead node <paramref name="dead"/>, holds the session from now on,
    /// unless another live node holds it (its client connected there since): then nothing changes and false comes back.
    /// </summary>
    Task<bool> ClaimForSuccessor(SiloAddress node, SiloAddress dead);
}

/// <summary>What a claim got from the node that held the session before.</summary>
/// <param name="Known">
/// A live node held it: the claiming node itself, or another that ended it (else: nobody known, a dead node, or no
/// answer in time).
/// </param>
/// <param name="Session">What the other node held of it, when it was persistent.</param>
[GenerateSerializer]
[Immutable]
public sealed record SessionHandover([property: Id(0)] bool Known, [property: Id(1)] TransferredSession? Session);

/// <summary>
/// Kept in memory only: if the node hosting this grain dies, the next claim finds no holder, and a connection still
/// open on a third node is not closed (see docs/scaling.md).
/// </summary>
internal sealed partial class SessionOwnerGrain(INodeLinkClient nodes, IClusterMembershipService membership, ILogger<SessionOwnerGrain> logger)
    : Grain, ISessionOwnerGrain
{
    /// <summary>How long the old node has to end the session before the new connection goes on without it.</summary>
    private static readonly TimeSpan s_endTimeout = TimeSpan.FromSeconds(5);

    private SiloAddress? _holder;

    /// <summary>The grain's key: each part with its length first, so that no client id can pass for another key.</summary>
    public static string KeyOf(string ns, string owner, string clientId) => $"{ns.Length}:{ns}{owner.Length}:{owner}{clientId}";

    private static readonly SessionHandover s_unknown = new(Known: false, Session: null);
    private static readonly SessionHandover s_same = new(Known: true, Session: null);

    public Task<bool> ClaimForSuccessor(SiloAddress node, SiloAddress dead)
    {
        if (_holder is { } holder && !holder.Equals(dead) && !holder.Equals(node) && membership.CurrentSnapshot.GetSiloStatus(holder) == SiloStatus.Active)
        {
            return Task.FromResult(false);
        }

        _holder = node;
        return Task.FromResult(true);
    }

    public async Task<SessionHandover> Claim(SiloAddress node, string ns, string owner, string clientId)
    {
        var previous = _holder;
        _holder = node;
        if (previous is null || membership.CurrentSnapshot.GetSiloStatus(previous) != SiloStatus.Active)
        {
            return s_unknown;
        }

        if (previous.Equals(node))
        {
            return s_same;
        }

        try
        {
            var session = await nodes.On(previous).EndSession(ns, owner, clientId).WaitAsync(s_endTimeout);
            return new SessionHandover(Known: true, session);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
        {
            LogEndFailed(logger, clientId, previous.ToString(), e.Message);
            return s_unknown;
        }
    }

    [LoggerMessage(EventId = 2615, Level = LogLevel.Warning, Message = "Client {ClientId}: the session on node {Node} could not be ended ({Error}); the new connection goes on")]
    private static partial void LogEndFailed(ILogger logger, string clientId, string node, string error);
}
