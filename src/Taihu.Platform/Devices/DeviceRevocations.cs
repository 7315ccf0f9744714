namespace Taihu.Platform.Devices;

/// <summary>
/// Told when the connections of a device (or of every device of a tenant) must end: the device was deleted, its
/// credentials changed, it was taken away from a gateway, or its tenant is being deleted. The MQTT broker's
/// connections are closed by <see cref="DeviceService.DisconnectDevice"/> directly; the listeners of other protocols
/// (HJ 212, JT/T 808, CoAP) register here and close what they hold for the device. A separate object so that
/// device state never references connections and the device service need not know which listeners run.
/// </summary>
public sealed class DeviceRevocations
{
    /// <summary>Raised on the thread of the REST call that revoked; handlers only abort and forget, never wait.</summary>
    public event Action<DeviceRevocation>? Revoked;

    public void Revoke(DeviceRevocation revocation) => Revoked?.Invoke(revocation);
}

/// <summary>The device <see cref="DeviceId"/>, or every device of tenant <see cref="TenantId"/>, lost its connections for <see cref="Reason"/>.</summary>
public readonly record struct DeviceRevocation(Guid? DeviceId, Guid? TenantId, string Reason)
{
    public bool Covers(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return DeviceId == device.Id || (TenantId is { } tenant && tenant == device.TenantId);
    }
}
