using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>A tenant id never reaches another tenant's rows, whatever else the call names.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Isolation_DevicesAndCredentials()
    {
        var (mine, myProfile, myDevice) = await NewTenantWithDeviceAsync("shared-name");
        var (theirs, theirProfile, theirDevice) = await NewTenantWithDeviceAsync("shared-name");
        var theirCredentials = await Devices.GetCredentialsAsync(theirs.Id, theirDevice.Id);

        Assert.Null(await Devices.GetDeviceAsync(mine.Id, theirDevice.Id));
        Assert.Equal(myDevice, await Devices.GetDeviceByNameAsync(mine.Id, "shared-name"));
        Assert.Equal([myDevice.Id], (await Devices.ListDevicesAsync(mine.Id, new PageRequest())).Data.Select(d => d.Id));
        Assert.Equal([myDevice.Id], (await Devices.ListDevicesAsync(mine.Id, new PageRequest(TextSearch: "shared"), type: "default")).Data.Select(d => d.Id));
        Assert.Null(await Devices.GetCredentialsAsync(mine.Id, theirDevice.Id));

        // Writes naming their device with my tenant change nothing.
        Assert.False(await Devices.UpdateDeviceAsync(theirDevice with { TenantId = mine.Id, Name = "stolen" }));
        Assert.False(await Devices.DeleteDeviceAsync(mine.Id, theirDevice.Id));
        var replacement = new DeviceCredentials(theirDevice.Id, CredentialsType.AccessToken, "hijack", null, null, null);
        Assert.False(await Devices.SaveCredentialsAsync(mine.Id, replacement, "t:hijack", null));
        Assert.Null(await Devices.FindByLookupAsync("t:hijack"));

        Assert.Equal(theirDevice, await Devices.GetDeviceAsync(theirs.Id, theirDevice.Id));
        Assert.Equal(theirCredentials, await Devices.GetCredentialsAsync(theirs.Id, theirDevice.Id));
        Assert.NotNull(await Devices.GetProfileAsync(theirs.Id, theirProfile.Id));
        Assert.NotNull(await Devices.GetProfileAsync(mine.Id, myProfile.Id));
    }

    [Fact]
    public async Task Isolation_ADeviceCannotUseAnotherTenantsProfile()
    {
        var (mine, myProfile, myDevice) = await NewTenantWithDeviceAsync();
        var theirs = await NewTenantAsync();
        var theirProfile = await NewProfileAsync(theirs.Id, "theirs");

        var e = await Assert.ThrowsAsync<PlatformException>(() => NewDeviceAsync(mine.Id, theirProfile.Id, "borrower", token: "borrower-token"));
        Assert.Equal(404, e.Status);
        Assert.Null(await Devices.GetDeviceByNameAsync(mine.Id, "borrower"));
        Assert.Null(await Devices.FindByLookupAsync("t:borrower-token"));

        Assert.False(await Devices.UpdateDeviceAsync(myDevice with { ProfileId = theirProfile.Id, Name = "renamed" }));
        Assert.Equal(myDevice, await Devices.GetDeviceAsync(mine.Id, myDevice.Id));
        Assert.Equal(myProfile.Id, (await Devices.GetDeviceAsync(mine.Id, myDevice.Id))!.ProfileId);
        Assert.True(await Devices.DeleteProfileAsync(theirs.Id, theirProfile.Id));
    }

    [Fact]
    public async Task Isolation_Profiles()
    {
        var (mine, _, _) = await NewTenantWithDeviceAsync();
        var theirs = await NewTenantAsync();
        var theirDefault = await NewProfileAsync(theirs.Id, "their-default", isDefault: true);
        var theirSpare = await NewProfileAsync(theirs.Id, "their-spare");

        Assert.Null(await Devices.GetProfileAsync(mine.Id, theirSpare.Id));
        Assert.NotEqual(theirDefault.Id, (await Devices.GetDefaultProfileAsync(mine.Id))!.Id);
        Assert.DoesNotContain((await Devices.ListProfilesAsync(mine.Id, new PageRequest())).Data, p => p.TenantId != mine.Id);
        Assert.False(await Devices.UpdateProfileAsync(theirSpare with { TenantId = mine.Id, Name = "stolen" }));
        Assert.False(await Devices.DeleteProfileAsync(mine.Id, theirSpare.Id));
        Assert.Equal(theirSpare, await Devices.GetProfileAsync(theirs.Id, theirSpare.Id));
        var empty = await NewTenantAsync();
        Assert.Null(await Devices.GetDefaultProfileAsync(empty.Id));
        Assert.Empty((await Devices.ListProfilesAsync(empty.Id, new PageRequest())).Data);
    }

    [Fact]
    public async Task Isolation_Users()
    {
        var mine = await NewTenantAsync();
        var theirs = await NewTenantAsync();
        var theirUser = new User(Guid.NewGuid(), theirs.Id, "their@example.com", Authority.TenantAdmin, null, null, T0, true);
        await Tenants.CreateUserAsync(theirUser, "h", null);

        Assert.Null(await Tenants.GetUserAsync(theirUser.Id, mine.Id));
        Assert.Empty((await Tenants.ListUsersAsync(mine.Id, new PageRequest())).Data);
        Assert.Empty((await Tenants.ListUsersAsync(mine.Id, new PageRequest(TextSearch: "their"))).Data);
        Assert.Equal(0, (await Tenants.ListUsersAsync(mine.Id, new PageRequest())).TotalElements);
        Assert.False(await Tenants.DeleteUserAsync(theirUser.Id, mine.Id));
        Assert.NotNull(await Tenants.GetUserAsync(theirUser.Id, theirs.Id));
    }

    [Fact]
    public async Task Isolation_RetentionOfOneTenant_KeepsAnothersData()
    {
        var (mine, _, myDevice) = await NewTenantWithDeviceAsync();
        var (_, _, theirDevice) = await NewTenantWithDeviceAsync();
        const long Cut = T0 - (T0 % 60_000);
        await Telemetry.WriteAsync([Point(myDevice, "v", Cut - 10, 1L), Point(theirDevice, "v", Cut - 10, 1L)]);

        Assert.Equal(1, await Telemetry.DeleteOlderThanAsync(mine.Id, Cut));
        Assert.Equal(0, await Telemetry.DeleteOlderThanAsync(Guid.NewGuid(), long.MaxValue));
        Assert.Single(await Telemetry.GetHistoryAsync(theirDevice.Seq, "v", 0, long.MaxValue, 10, SortOrder.Ascending));
    }

    [Fact]
    public async Task Isolation_DeletingATenant_LeavesTheOthersAudit()
    {
        var mine = await NewTenantAsync();
        var theirs = await NewTenantAsync();
        await Audit.WriteAsync(TenantAdmin(theirs.Id), "ADDED", "DEVICE", null, "theirs");
        await Tenants.DeleteTenantAsync(mine.Id);
        Assert.Single((await Audit.ListAsync(theirs.Id, new PageRequest())).Data);
    }
}
