using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Taihu.Platform.Alarms;
using Taihu.Platform.Events;
using Taihu.Platform.Integrations;
using Taihu.Platform.Rpc;

namespace Taihu.Cluster.Devices;

/// <summary>
/// Tells every other active node of the integration changes made through this node (the registry the lease
/// holder fills and delivers by) and of each alarm created or changed here (for the live alarm subscribers there).
/// Each node's <see cref="NodeDeviceService"/> applies them there. Device and profile changes go through
/// <see cref="DevicesAcrossNodes"/>. A webhook's answer to a client-side RPC request that does not wait here (this
/// node holds the event log's lease and called the webhook) goes to every other node; the one it waits on takes it.
/// </summary>
/// <remarks>
/// Told after the change committed, one call per other node. An alarm change is not awaited; an integration change
/// is (the API call returns once every node has reloaded). A node that misses one (it was joining, or the call
/// failed) keeps its older copy until the next change; the integrations are re-read when a node takes the lease.
/// </remarks>
internal sealed partial class ChangesAcrossNodes(IntegrationRegistry integrations, AlarmFeed alarmFeed, ClientRpcRequests clientRpc, OnNode<INodeDeviceService> nodes,
    ILogger<ChangesAcrossNodes> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        integrations.TellOthers = () => TellOthersAsync(node => node.IntegrationsChanged());
        alarmFeed.TellOthers = AlarmChanged;
        clientRpc.TellOthers = ClientRpcAnswered;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        integrations.TellOthers = null;
        alarmFeed.TellOthers = null;
        clientRpc.TellOthers = null;
        return Task.CompletedTask;
    }

    private void AlarmChanged(AlarmChangeKind kind, Guid tenantId, Guid alarmId) => _ = TellOthersAsync(node => node.AlarmChanged((int)kind, tenantId, alarmId));

    private void ClientRpcAnswered(Guid eventId, byte[]? reply) => _ = TellOthersAsync(node => node.ClientRpcAnswered(eventId, reply));

    private async Task TellOthersAsync(Func<INodeDeviceService, Task> tell)
    {
        foreach (var node in nodes.Others())
        {
            try
            {
                await tell(node);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogTellFailed(logger, e);
            }
        }
    }

    [LoggerMessage(EventId = 2634, Level = LogLevel.Warning, Message = "Another node could not be told of a change made here; it keeps its older copy until the next change")]
    private static partial void LogTellFailed(ILogger logger, Exception exception);
}
