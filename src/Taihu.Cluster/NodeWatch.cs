using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Services;
using Taihu.Cluster.Devices;

namespace Taihu.Cluster;

/// <summary>What a node answers another node's watch with: that it is there (<see cref="NodeWatch"/>).</summary>
public interface INodeWatchService : IGrainService
{
    Task Ping();
}

/// <summary>A GrainService of its own, so that a ping never waits behind the turns of the node's other services.</summary>
[Reentrant]
internal sealed class NodeWatchService(GrainId id, Silo silo, ILoggerFactory loggerFactory)
    : GrainService(id, silo, loggerFactory), INodeWatchService
{
    public Task Ping() => Task.CompletedTask;
}

/// <summary>
/// Declares dead, at once, a node whose process is gone from a machine that still answers: each node pings every
/// other active node every <see cref="ClusterNodeOptions.PeerCheckInterval"/>, and when a ping fails or takes too
/// long, tries a plain TCP connection to that node's silo port. Refused twice in a row (nothing listens there, so
/// the process that was that node is not running) makes this node tell Orleans that the other node is dead
/// (<see cref="IClusterMembershipService.TryKill"/>), which writes it into the membership table and tells the others.
/// </summary>
/// <remarks>
/// <para>
/// Orleans' own failure detection needs several missed probes of several nodes (about 8 s with its defaults on
/// loopback), and a killed node's devices wait that long for everything its grains held. A refused connection is
/// proof, not suspicion: a process that is alive, however slow or paused, keeps its listening socket, and the kernel
/// accepts connections into its backlog even while the process is stopped. A port that does not answer at all (a
/// machine lost from the network, a firewall that drops) proves nothing and is left to Orleans' probes, as is every
/// other failure. A node started again on the same address is a new generation: its port accepts, so nothing is
/// declared here, and Orleans retires the old generation itself when the new one joins.
/// </para>
/// <para>One loop owns the watch; it checks the other nodes of a round together and waits for them before the next round.</para>
/// </remarks>
internal sealed partial class NodeWatch(IClusterMembershipService membership, ILocalSiloDetails self, OnNode<INodeWatchService> nodes,
    IOptions<ClusterNodeOptions> options, TimeProvider time, ILogger<NodeWatch> logger) : BackgroundService
{
    /// <summary>How long apart the two connection attempts that must both be refused are.</summary>
    private static readonly TimeSpan s_confirmDelay = TimeSpan.FromMilliseconds(200);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.PeerCheckInterval;
        if (interval <= TimeSpan.Zero)
        {
            return;
        }

        // A ping may take two intervals before the port is tried: a loaded node answers late, and trying its port
        // costs it an accepted connection that closes at once.
        var timeout = interval * 2;
        using var timer = new PeriodicTimer(interval, time);
        var checks = new List<Task>();
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var snapshot = membership.CurrentSnapshot;
            if (!snapshot.Members.TryGetValue(self.SiloAddress, out var me) || me.Status != SiloStatus.Active)
            {
                continue;
            }

            checks.Clear();
            foreach (var member in snapshot.Members.Values)
            {
                if (member.Status == SiloStatus.Active && !member.SiloAddress.Equals(self.SiloAddress))
                {
                    checks.Add(CheckAsync(member.SiloAddress, timeout, stoppingToken));
                }
            }

            await Task.WhenAll(checks);
        }
    }

    private async Task CheckAsync(SiloAddress node, TimeSpan timeout, CancellationToken stoppingToken)
    {
        // Whatever goes wrong here is this node's business only: a watch that failed must not stop the node (a
        // cancellation at the node's stop ends the loop).
        try
        {
            await nodes.At(node).Ping().WaitAsync(timeout, time, stoppingToken);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            // Failed or late: is anything listening on its port at all?
        }

        try
        {
            if (!await PeerPort.RefusesAsync(node.Endpoint, timeout, stoppingToken))
            {
                return;
            }

            await Task.Delay(s_confirmDelay, time, stoppingToken);
            if (!await PeerPort.RefusesAsync(node.Endpoint, timeout, stoppingToken)
                || !membership.CurrentSnapshot.Members.TryGetValue(node, out var member) || member.Status != SiloStatus.Active)
            {
                return;
            }

            LogRefused(logger, node);
            if (!await membership.TryKill(node))
            {
                LogNotDeclared(logger, node);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            LogNotDeclaredError(logger, e, node);
        }
    }

    [LoggerMessage(EventId = 2668, Level = LogLevel.Warning, Message = "Node {Node} does not answer and its port refuses connections (its process is gone): declared dead now, without waiting for the probes")]
    private static partial void LogRefused(ILogger logger, SiloAddress node);

    [LoggerMessage(EventId = 2669, Level = LogLevel.Information, Message = "Node {Node} refuses connections, but membership did not take it as dead now (another node may have declared it already); the probes decide")]
    private static partial void LogNotDeclared(ILogger logger, SiloAddress node);

    [LoggerMessage(EventId = 2670, Level = LogLevel.Warning, Message = "Node {Node} refuses connections, but declaring it dead failed; the probes decide")]
    private static partial void LogNotDeclaredError(ILogger logger, Exception error, SiloAddress node);
}

/// <summary>Whether a node's port is there at all.</summary>
internal static class PeerPort
{
    /// <summary>
    /// True only when a TCP connection to <paramref name="endpoint"/> is refused (nothing listens there). A connection
    /// that is accepted (closed again at once), one that does not answer within <paramref name="timeout"/>, and any
    /// other error give false: they do not prove that the process is gone.
    /// </summary>
    public static async Task<bool> RefusesAsync(IPEndPoint endpoint, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await socket.ConnectAsync(endpoint, limit.Token);
            return false;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode == SocketError.ConnectionRefused;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }
}
