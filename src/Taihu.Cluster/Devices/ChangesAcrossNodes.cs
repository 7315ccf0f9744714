using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Taihu.Platform.Alarms;
using Taihu.Platform.Events;
using Taihu.Platform.Integrations;

namespace Taihu.Cluster.Devices;

/// <summary>
/// Tells every other active node of the changes made through this node that nodes keep in memory: a device
/// profile (its alarm rules, which the node holding the event log lease runs), a device (the device caches, the
/// rules' per-device state), the integrations (the registry the lease holder fills and delivers by); and of each
/// alarm created or changed here, for the live alarm subscribers there. Each node's <see cref="NodeDeviceService"/>
/// applies them there as if made there, without passing them on.
/// </summary>
/// <remarks>
/// Told after the change committed, one call per other node. A profile, device or alarm change is not awaited by the API
/// call that made it (events right after it may still meet the older copy on the lease holder); an integration
/// change is (the call returns once every node has reloaded). A node that misses one (it was joining, or the call
/// failed) keeps its older copy until that copy's own expiry (the device cache's 30 s) or the next change; the
/// rules and the integrations re-read everything when a node takes the lease.
/// </remarks>
internal sealed partial class ChangesAcrossNodes(EventSignal signal, IntegrationRegistry integrations, AlarmFeed alarmFeed, IClusterMembershipService membership,
    ILocalSiloDetails self,
    OnNode<INodeDeviceService> nodes, ILogger<ChangesAcrossNodes> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        signal.ProfileChangedHere += ProfileChanged;
        signal.DeviceChangedHere += DeviceChanged;
        integrations.TellOthers = () => TellOthersAsync(node => node.IntegrationsChanged());
        alarmFeed.TellOthers = AlarmChanged;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        signal.ProfileChangedHere -= ProfileChanged;
        signal.DeviceChangedHere -= DeviceChanged;
        integrations.TellOthers = null;
        alarmFeed.TellOthers = null;
        return Task.CompletedTask;
    }

    private void ProfileChanged(Guid profileId) => _ = TellOthersAsync(node => node.ProfileChanged(profileId));

    private void DeviceChanged(long deviceSeq) => _ = TellOthersAsync(node => node.DeviceChanged(deviceSeq));

    private void AlarmChanged(AlarmChangeKind kind, Guid tenantId, Guid alarmId) => _ = TellOthersAsync(node => node.AlarmChanged((int)kind, tenantId, alarmId));

    private async Task TellOthersAsync(Func<INodeDeviceService, Task> tell)
    {
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status != SiloStatus.Active || member.SiloAddress.Equals(self.SiloAddress))
            {
                continue;
            }

            try
            {
                await tell(nodes.At(member.SiloAddress));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogTellFailed(logger, e, member.SiloAddress.ToString());
            }
        }
    }

    [LoggerMessage(EventId = 2634, Level = LogLevel.Warning, Message = "Node {Node} could not be told of a change made here; it keeps its older copy until that expires")]
    private static partial void LogTellFailed(ILogger logger, Exception exception, string node);
}
