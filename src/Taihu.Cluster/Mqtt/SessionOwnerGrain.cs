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
    /// ends it there (its connection is closed with 0x8E) before this returns.
    /// </summary>
    Task Claim(SiloAddress node, string ns, string owner, string clientId);
}

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

    public async Task Claim(SiloAddress node, string ns, string owner, string clientId)
    {
        var previous = _holder;
        _holder = node;
        if (previous is null || previous.Equals(node) || membership.CurrentSnapshot.GetSiloStatus(previous) != SiloStatus.Active)
        {
            return;
        }

        try
        {
            await nodes.On(previous).EndSession(ns, owner, clientId).WaitAsync(s_endTimeout);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
        {
            LogEndFailed(logger, clientId, previous.ToString(), e.Message);
        }
    }

    [LoggerMessage(EventId = 2615, Level = LogLevel.Warning, Message = "Client {ClientId}: the session on node {Node} could not be ended ({Error}); the new connection goes on")]
    private static partial void LogEndFailed(ILogger logger, string clientId, string node, string error);
}
