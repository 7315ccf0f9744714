using Taihu.Platform.Devices;

namespace Taihu.Cluster.Devices;

/// <summary>
/// <see cref="IDevicesElsewhere"/> on a cluster node: each change is one call to every other active node's
/// <see cref="INodeDeviceService"/>, not waited for (a one-way call; a node that misses one because it is joining
/// reads the device from the database when it next needs it).
/// </summary>
internal sealed class DevicesAcrossNodes(OnNode<INodeDeviceService> nodes) : IDevicesElsewhere
{
    public void DeviceChanged(long deviceSeq)
    {
        foreach (var node in nodes.Others())
        {
            _ = node.DeviceChanged(deviceSeq);
        }
    }

    public void ProfileChanged(Guid profileId)
    {
        foreach (var node in nodes.Others())
        {
            _ = node.ProfileChanged(profileId);
        }
    }

    public void DisconnectDevice(Guid deviceId, string reason)
    {
        foreach (var node in nodes.Others())
        {
            _ = node.DisconnectDevice(deviceId, reason);
        }
    }

    public void DisconnectTenant(Guid tenantId, string reason)
    {
        foreach (var node in nodes.Others())
        {
            _ = node.DisconnectTenant(tenantId, reason);
        }
    }
}
