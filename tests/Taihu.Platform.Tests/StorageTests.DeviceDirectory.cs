using Taihu.Platform.Events;

namespace Taihu.Platform.Tests;

/// <summary>The device directory's lookups by id (lightweight RPC's): within the tenant only, and a change this process makes is seen at once.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task DeviceDirectory_ById_FindsOnlyTheTenantsOwn_AndFollowsChanges()
    {
        var tenant = await NewTenantAsync();
        var other = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        var device = await NewDeviceAsync(tenant.Id, profile.Id, name: "pump-1");
        var signal = new EventSignal();
        var directory = new DeviceDirectory(Devices, Time, signal);

        Assert.Equal("pump-1", (await directory.GetAsync(tenant.Id, device.Id, default))!.Name);
        Assert.Null(await directory.GetAsync(other.Id, device.Id, default));
        Assert.Null(await directory.GetAsync(tenant.Id, Guid.NewGuid(), default));

        // Renamed by this process (the device service tells the signal): seen at once.
        Assert.True(await Devices.UpdateDeviceAsync(device with { Name = "pump-2" }));
        signal.NotifyDeviceChanged(device.Seq);
        Assert.Equal("pump-2", (await directory.GetAsync(tenant.Id, device.Id, default))!.Name);

        // Renamed by another process sharing the database (no signal here): seen once the cached row is old.
        Assert.True(await Devices.UpdateDeviceAsync(device with { Name = "pump-3" }));
        Assert.Equal("pump-2", (await directory.GetAsync(tenant.Id, device.Id, default))!.Name);
        Time.Advance(TimeSpan.FromSeconds(31));
        var renamed = await directory.GetAsync(tenant.Id, device.Id, default);
        Assert.Equal("pump-3", renamed!.Name);

        // Unchanged when read again after its lifetime: the same instance (no copy for the collector to promote).
        Time.Advance(TimeSpan.FromSeconds(31));
        Assert.Same(renamed, await directory.GetAsync(tenant.Id, device.Id, default));
        Assert.True(await Devices.UpdateDeviceAsync(renamed with { Name = "pump-4" }));
        Assert.Same(renamed, await directory.GetAsync(tenant.Id, device.Id, default));
        Time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal("pump-4", (await directory.GetAsync(tenant.Id, device.Id, default))!.Name);

        // Deleted: gone at once.
        Assert.True(await Devices.DeleteDeviceAsync(tenant.Id, device.Id));
        signal.NotifyDeviceChanged(device.Seq);
        Assert.Null(await directory.GetAsync(tenant.Id, device.Id, default));
    }
}
