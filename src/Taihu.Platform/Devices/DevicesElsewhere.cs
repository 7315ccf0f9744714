namespace Taihu.Platform.Devices;

/// <summary>
/// What one node of a cluster changes about devices that the other nodes must hear of: their caches of devices
/// and profiles, and the connections of a device whose credentials changed or that was deleted (which may be
/// connected to any node). A single server has none; a cluster node registers one (Taihu.Cluster). Each call tells
/// every other node and does not wait for them.
/// </summary>
public interface IDevicesElsewhere
{
    /// <summary>A device changed or was deleted (<see cref="Events.EventSignal.DeviceChanged"/> on the other nodes).</summary>
    void DeviceChanged(long deviceSeq);

    /// <summary>A device profile changed or was deleted (<see cref="Events.EventSignal.ProfileChanged"/> on the other nodes).</summary>
    void ProfileChanged(Guid profileId);

    /// <summary>The other nodes close the device's connections (<see cref="DeviceService.DisconnectDeviceHere"/>).</summary>
    void DisconnectDevice(Guid deviceId, string reason);

    /// <summary>The other nodes close the connections of every device of the tenant (<see cref="DeviceService.DisconnectTenantHere"/>).</summary>
    void DisconnectTenant(Guid tenantId, string reason);
}
