using Taihu.Platform.Events;

namespace Taihu.Platform.Tests;

/// <summary>The device directory's lookups by id (lightweight RPC's) and by row number (the event consumers'): within the tenant only, unchanged devices kept as they are, and a change seen at once.</summary>
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

        // Renamed where no signal reached this process (a node that was unreachable when told): seen once the cached
        // row is old.
        Assert.True(await Devices.UpdateDeviceAsync(device with { Name = "pump-3" }));
        Assert.Equal("pump-2", (await directory.GetAsync(tenant.Id, device.Id, default))!.Name);
        Time.Advance(PastLifetime);
        var renamed = await directory.GetAsync(tenant.Id, device.Id, default);
        Assert.Equal("pump-3", renamed!.Name);

        // Unchanged when read again after its lifetime: the same instance (no copy for the collector to promote).
        Time.Advance(PastLifetime);
        Assert.Same(renamed, await directory.GetAsync(tenant.Id, device.Id, default));
        Assert.True(await Devices.UpdateDeviceAsync(renamed with { Name = "pump-4" }));
        Assert.Same(renamed, await directory.GetAsync(tenant.Id, device.Id, default));
        Time.Advance(PastLifetime);
        Assert.Equal("pump-4", (await directory.GetAsync(tenant.Id, device.Id, default))!.Name);

        // Deleted: gone at once.
        Assert.True(await Devices.DeleteDeviceAsync(tenant.Id, device.Id));
        signal.NotifyDeviceChanged(device.Seq);
        Assert.Null(await directory.GetAsync(tenant.Id, device.Id, default));
    }

    private static readonly TimeSpan PastLifetime = DeviceDirectory.Lifetime + TimeSpan.FromSeconds(1);

    [Fact]
    public async Task DeviceDirectory_BySeq_KeepsAnUnchangedDevicesInstance_AndSeesAChangeAtOnce()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var signal = new EventSignal();
        var directory = new DeviceDirectory(Devices, Time, signal);

        var first = await directory.GetAsync(device.Seq, default);
        Assert.Equal(device.Name, first!.Name);
        Time.Advance(PastLifetime);
        // Read again past its lifetime, found unchanged: the same instance (nothing new for the collector to carry).
        Assert.Same(first, await directory.GetAsync(device.Seq, default));

        await Devices.UpdateDeviceAsync(first with { Name = first.Name + " (renamed)" });
        signal.NotifyDeviceChanged(device.Seq);
        Assert.Equal(first.Name + " (renamed)", (await directory.GetAsync(device.Seq, default))!.Name);
        Assert.Null(await directory.GetAsync(device.Seq + 1_000_000, default));
    }
}
