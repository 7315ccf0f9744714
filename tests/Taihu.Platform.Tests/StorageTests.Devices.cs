using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>Device profiles, devices and their credentials.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Profile_RoundTrips_AndUpdates()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, "thermostats", isDefault: true, provisionKey: "pk-1");

        Assert.Equal(profile, await Devices.GetProfileAsync(tenant.Id, profile.Id));
        Assert.Equal(profile, await Devices.GetDefaultProfileAsync(tenant.Id));
        Assert.Equal(profile, await Devices.FindProfileByProvisionKeyAsync("pk-1"));
        Assert.Null(await Devices.FindProfileByProvisionKeyAsync("pk-2"));

        var changed = profile with
        {
            Name = "heaters", Description = "all heaters", IsDefault = false, ProvisionType = ProvisionType.CheckPreProvisionedDevices,
            ProvisionKey = null, ProvisionSecret = null, InactivityTimeoutMs = 5_000,
        };
        Assert.True(await Devices.UpdateProfileAsync(changed));
        Assert.Equal(changed, await Devices.GetProfileAsync(tenant.Id, profile.Id));
        Assert.Null(await Devices.GetDefaultProfileAsync(tenant.Id));
        Assert.Null(await Devices.FindProfileByProvisionKeyAsync("pk-1"));
    }

    [Fact]
    public async Task Profile_AlarmRules_AreStoredAsSaved_ReplacedAndRemoved()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, "air");
        Assert.Null((await Devices.GetProfileAsync(tenant.Id, profile.Id))!.AlarmsJson);

        var withRules = profile with { AlarmsJson = AlarmRuleParserTests.ThingsBoardAlarms };
        Assert.True(await Devices.UpdateProfileAsync(withRules));
        var read = await Devices.GetProfileAsync(tenant.Id, profile.Id);
        Assert.Equal(AlarmRuleParserTests.ThingsBoardAlarms, read!.AlarmsJson);
        Assert.Equal(2, Rules.AlarmRuleParser.Parse(read.AlarmsJson).Count);
        Assert.Equal(AlarmRuleParserTests.ThingsBoardAlarms, (await Devices.ListProfilesAsync(tenant.Id, new PageRequest(10, 0))).Data.Single(p => p.Id == profile.Id).AlarmsJson);

        var created = new DeviceProfile(Guid.NewGuid(), tenant.Id, "created with rules", null, false, ProvisionType.Disabled, null, null, 1000, T0, null, "[]");
        await Devices.CreateProfileAsync(created);
        Assert.Equal(created, await Devices.GetProfileAsync(tenant.Id, created.Id));

        Assert.True(await Devices.UpdateProfileAsync(withRules with { AlarmsJson = null }));
        Assert.Null((await Devices.GetProfileAsync(tenant.Id, profile.Id))!.AlarmsJson);
    }

    [Fact]
    public async Task Profile_NameIsUniquePerTenant_ProvisionKeyAcrossTenants()
    {
        var a = await NewTenantAsync();
        var b = await NewTenantAsync();
        await NewProfileAsync(a.Id, "sensors", provisionKey: "shared-key");
        await NewProfileAsync(b.Id, "sensors");

        Assert.Equal(409, (await Assert.ThrowsAsync<PlatformException>(() => NewProfileAsync(a.Id, "sensors"))).Status);
        Assert.Equal(409, (await Assert.ThrowsAsync<PlatformException>(() => NewProfileAsync(b.Id, "other", provisionKey: "shared-key"))).Status);
        var existing = await NewProfileAsync(b.Id, "third");
        Assert.Equal(409, (await Assert.ThrowsAsync<PlatformException>(() => Devices.UpdateProfileAsync(existing with { Name = "sensors" }))).Status);
    }

    [Fact]
    public async Task Profile_Delete_RefusesTheDefaultAndOneInUse()
    {
        var tenant = await NewTenantAsync();
        var defaultProfile = await NewProfileAsync(tenant.Id, "default", isDefault: true);
        var used = await NewProfileAsync(tenant.Id, "used");
        var unused = await NewProfileAsync(tenant.Id, "unused");
        await NewDeviceAsync(tenant.Id, used.Id);

        Assert.False(await Devices.DeleteProfileAsync(tenant.Id, defaultProfile.Id));
        Assert.False(await Devices.DeleteProfileAsync(tenant.Id, used.Id));
        Assert.True(await Devices.DeleteProfileAsync(tenant.Id, unused.Id));
        Assert.Null(await Devices.GetProfileAsync(tenant.Id, unused.Id));
        Assert.NotNull(await Devices.GetProfileAsync(tenant.Id, defaultProfile.Id));
        Assert.NotNull(await Devices.GetProfileAsync(tenant.Id, used.Id));
    }

    [Fact]
    public async Task Device_RoundTrips_WithItsRowNumber()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        var gateway = await NewDeviceAsync(tenant.Id, profile.Id, "gw");
        gateway = gateway with { IsGateway = true, Label = "roof", Group = "north" };
        Assert.True(await Devices.UpdateDeviceAsync(gateway));
        var child = await NewDeviceAsync(tenant.Id, profile.Id, "child", type: "thermometer");
        child = child with { GatewayId = gateway.Id };
        Assert.True(await Devices.UpdateDeviceAsync(child));

        Assert.True(gateway.Seq > 0);
        Assert.NotEqual(gateway.Seq, child.Seq);
        Assert.Equal(gateway, await Devices.GetDeviceAsync(tenant.Id, gateway.Id));
        Assert.Equal(child, await Devices.GetDeviceAsync(tenant.Id, child.Id));
        Assert.Equal(child, await Devices.GetDeviceByNameAsync(tenant.Id, "child"));
        Assert.Null(await Devices.GetDeviceByNameAsync(tenant.Id, "CHILD"));
        Assert.False(await Devices.UpdateDeviceAsync(child with { Id = Guid.NewGuid() }));
    }

    [Fact]
    public async Task Device_NameIsUniquePerTenant()
    {
        var a = await NewTenantAsync();
        var b = await NewTenantAsync();
        var profileA = await NewProfileAsync(a.Id);
        var profileB = await NewProfileAsync(b.Id);
        await NewDeviceAsync(a.Id, profileA.Id, "meter-1");
        await NewDeviceAsync(b.Id, profileB.Id, "meter-1");
        var second = await NewDeviceAsync(a.Id, profileA.Id, "meter-2");

        Assert.Equal(409, (await Assert.ThrowsAsync<PlatformException>(() => NewDeviceAsync(a.Id, profileA.Id, "meter-1"))).Status);
        Assert.Equal(409, (await Assert.ThrowsAsync<PlatformException>(() => Devices.UpdateDeviceAsync(second with { Name = "meter-1" }))).Status);
        Assert.Equal(2, (await Devices.ListDevicesAsync(a.Id, new PageRequest())).TotalElements);
    }

    [Fact]
    public async Task Credentials_AreUniqueAcrossTenants_AndAFailedCreateLeavesNoDevice()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var other = await NewTenantAsync();
        var otherProfile = await NewProfileAsync(other.Id);
        var token = (await Devices.GetCredentialsAsync(tenant.Id, device.Id))!.CredentialsId!;

        var e = await Assert.ThrowsAsync<CredentialsInUseException>(() => NewDeviceAsync(other.Id, otherProfile.Id, "copycat", token: token));
        Assert.Equal(409, e.Status);
        // Device and credentials are one transaction: the device row went with the refused credentials.
        Assert.Null(await Devices.GetDeviceByNameAsync(other.Id, "copycat"));
        Assert.Equal(0, (await Devices.ListDevicesAsync(other.Id, new PageRequest())).TotalElements);
        Assert.Equal(device.Id, (await Devices.FindByLookupAsync("t:" + token))!.Device.Id);
    }

    [Fact]
    public async Task Credentials_LookedUpByManyAtOnce_EachFindsItsOwnDevice_AndAnUnknownOneNothing()
    {
        // A connect storm: the lookups that come while others run are read in one statement; each must still get
        // its own device (and an unknown token none), as one at a time would.
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        var devices = new List<(Device Device, string Token)>();
        for (var i = 0; i < 40; i++)
        {
            var token = $"storm-token-{i}";
            devices.Add((await NewDeviceAsync(tenant.Id, profile.Id, $"storm-{i}", token: token), token));
        }

        DevicesFound.Clear();
        var lookups = new List<Task<StoredCredentials?>>();
        for (var round = 0; round < 3; round++)
        {
            foreach (var (_, token) in devices)
            {
                lookups.Add(Task.Run(() => Devices.FindByLookupAsync("t:" + token)));
                lookups.Add(Task.Run(() => Devices.FindByLookupAsync("t:unknown-" + token)));
            }

            DevicesFound.Clear();
        }

        var found = await Task.WhenAll(lookups);
        for (var i = 0; i < found.Length; i += 2)
        {
            var expected = devices[(i / 2) % devices.Count].Device;
            Assert.Equal(expected.Id, found[i]!.Device.Id);
            Assert.Equal(CredentialsType.AccessToken, found[i]!.Type);
            Assert.Null(found[i + 1]);
        }
    }

    [Fact]
    public async Task Credentials_LookupFindsTheDevice_WithTypeAndSecret()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        var device = new Device(0, Guid.NewGuid(), tenant.Id, "basic", "default", null, profile.Id, null, false, null, T0);
        var credentials = new DeviceCredentials(device.Id, CredentialsType.MqttBasic, "client-1", "client-1", "user-1", null);
        device = await Devices.CreateDeviceAsync(device, credentials, "u:user-1", "pbkdf2-hash");

        var found = await Devices.FindByLookupAsync("u:user-1");
        Assert.NotNull(found);
        Assert.Equal(device, found.Device);
        Assert.Equal(CredentialsType.MqttBasic, found.Type);
        Assert.Equal("client-1", found.ClientId);
        Assert.Equal("user-1", found.UserName);
        Assert.Equal("pbkdf2-hash", found.SecretHash);
        Assert.Equal(credentials, await Devices.GetCredentialsAsync(tenant.Id, device.Id));
        Assert.Null(await Devices.FindByLookupAsync("u:user-2"));
    }

    [Fact]
    public async Task ProfileRateLimits_RoundTrip_AndComeWithTheCredentialsLookup()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        Assert.Null((await Devices.GetProfileAsync(tenant.Id, profile.Id))!.RateLimits);
        var device = await NewDeviceAsync(tenant.Id, profile.Id, token: "limited-token");
        Assert.Null((await Devices.FindByLookupAsync("t:limited-token"))!.RateLimits);

        var limited = profile with { RateLimits = new PublishRateLimits(100, 5_000_000_000) };
        Assert.True(await Devices.UpdateProfileAsync(limited));
        Assert.Equal(limited, await Devices.GetProfileAsync(tenant.Id, profile.Id));
        var found = await Devices.FindByLookupAsync("t:limited-token");
        Assert.Equal(device.Id, found!.Device.Id);
        Assert.Equal(new PublishRateLimits(100, 5_000_000_000), found.RateLimits);

        Assert.True(await Devices.UpdateProfileAsync(profile with { RateLimits = new PublishRateLimits(null, 0) }));
        Assert.Equal(new PublishRateLimits(null, 0), (await Devices.FindByLookupAsync("t:limited-token"))!.RateLimits);
    }

    [Fact]
    public async Task Credentials_Save_ReplacesTheOldLookup()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var oldToken = (await Devices.GetCredentialsAsync(tenant.Id, device.Id))!.CredentialsId!;
        var replacement = new DeviceCredentials(device.Id, CredentialsType.X509Certificate, "thumbprint", null, null, "-----BEGIN CERTIFICATE-----");
        Assert.NotNull(await Devices.FindByLookupAsync("t:" + oldToken)); // kept by the cache from here

        Assert.True(await Devices.SaveCredentialsAsync(tenant.Id, replacement, "x:thumbprint", null));

        Assert.Null(await Devices.FindByLookupAsync("t:" + oldToken));
        Assert.Equal(device.Id, (await Devices.FindByLookupAsync("x:thumbprint"))!.Device.Id);
        Assert.Equal(replacement, await Devices.GetCredentialsAsync(tenant.Id, device.Id));
    }

    [Fact]
    public async Task Credentials_ADeviceFound_IsKeptForItsLifetime_AndForgottenOnAnyChange()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(tenant.Id, profile.Id);
        var token = (await Devices.GetCredentialsAsync(tenant.Id, device.Id))!.CredentialsId!;
        Assert.Equal(device.Id, (await Devices.FindByLookupAsync("t:" + token))!.Device.Id);

        // Taken away behind the store's back: what was found stays found until its 30 s are up...
        await DeleteCredentialsRowAsync(device.Id);
        Time.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal(device.Id, (await Devices.FindByLookupAsync("t:" + token))!.Device.Id);
        Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(await Devices.FindByLookupAsync("t:" + token));

        // ...or any change made through the store, of any device: renaming another one forgets it at once.
        var otherToken = (await Devices.GetCredentialsAsync(tenant.Id, other.Id))!.CredentialsId!;
        Assert.NotNull(await Devices.FindByLookupAsync("t:" + otherToken));
        await DeleteCredentialsRowAsync(other.Id);
        Assert.NotNull(await Devices.FindByLookupAsync("t:" + otherToken));
        Assert.True(await Devices.UpdateDeviceAsync(device with { Name = UniqueName("renamed") }));
        Assert.Null(await Devices.FindByLookupAsync("t:" + otherToken));
    }

    private async Task DeleteCredentialsRowAsync(Guid deviceId)
    {
        await using var connection = await Database.OpenAsync();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM device_credentials WHERE device_id = @id";
        command.AddParameter("id", deviceId.ToString());
        Assert.Equal(1, await command.ExecuteNonQueryAsync());
    }

    [Fact]
    public async Task Credentials_SaveThatCollides_KeepsTheOldOnes()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        var taken = await NewDeviceAsync(tenant.Id, profile.Id, token: "taken");
        var before = await Devices.GetCredentialsAsync(tenant.Id, device.Id);

        var e = await Assert.ThrowsAsync<CredentialsInUseException>(() =>
            Devices.SaveCredentialsAsync(tenant.Id, new DeviceCredentials(device.Id, CredentialsType.AccessToken, "taken", null, null, null), "t:taken", null));
        Assert.Equal(409, e.Status);
        Assert.Equal(before, await Devices.GetCredentialsAsync(tenant.Id, device.Id));
        Assert.Equal(taken.Id, (await Devices.FindByLookupAsync("t:taken"))!.Device.Id);
    }

    [Fact]
    public async Task Device_Delete_RemovesCredentialsTelemetryAndAttributes()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        var keep = await NewDeviceAsync(tenant.Id, profile.Id);
        var token = (await Devices.GetCredentialsAsync(tenant.Id, device.Id))!.CredentialsId!;
        await Telemetry.WriteAsync([Point(device, "t", T0, 1L), Point(keep, "t", T0, 2L)]);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Client, [new AttributeEntry("fw", T0, KvValue.Of("1.0"))]);
        Assert.NotNull(await Devices.FindByLookupAsync("t:" + token)); // kept by the cache from here

        Assert.True(await Devices.DeleteDeviceAsync(tenant.Id, device.Id));
        Assert.False(await Devices.DeleteDeviceAsync(tenant.Id, device.Id));

        Assert.Null(await Devices.GetDeviceAsync(tenant.Id, device.Id));
        Assert.Null(await Devices.GetCredentialsAsync(tenant.Id, device.Id));
        Assert.Null(await Devices.FindByLookupAsync("t:" + token));
        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "t", 0, long.MaxValue, 10, SortOrder.Ascending));
        Assert.Empty(await Attributes.GetAsync(device.Seq, AttributeScope.Client, null));
        Assert.Single(await Telemetry.GetLatestAsync(keep.Seq, null));

        // The token is free again.
        await NewDeviceAsync(tenant.Id, profile.Id, token: token);
    }

    [Fact]
    public async Task Device_List_FiltersByType_AndSorts()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        await NewDeviceAsync(tenant.Id, profile.Id, "c-meter", type: "meter", label: "l2", createdTime: T0 + 1);
        await NewDeviceAsync(tenant.Id, profile.Id, "a-meter", type: "meter", label: "l3", createdTime: T0 + 3);
        await NewDeviceAsync(tenant.Id, profile.Id, "b-valve", type: "valve", label: "l1", createdTime: T0 + 2);

        static string[] Names(Page<Device> page) => page.Data.Select(d => d.Name).ToArray();
        Assert.Equal(["a-meter", "b-valve", "c-meter"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest())));
        Assert.Equal(["c-meter", "b-valve", "a-meter"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest(Descending: true))));
        Assert.Equal(["c-meter", "b-valve", "a-meter"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest(SortProperty: "createdTime"))));
        Assert.Equal(["b-valve", "c-meter", "a-meter"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest(SortProperty: "label"))));
        // Ties keep the order of creation.
        Assert.Equal(["c-meter", "a-meter", "b-valve"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest(SortProperty: "type"))));
        // Without a label a device sorts last going up and first going down, as PostgreSQL orders NULL by default.
        await NewDeviceAsync(tenant.Id, profile.Id, "d-unlabelled", type: "other", label: null, createdTime: T0 + 4);
        Assert.Equal(["b-valve", "c-meter", "a-meter", "d-unlabelled"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest(SortProperty: "label"))));
        Assert.Equal(["d-unlabelled", "a-meter", "c-meter", "b-valve"], Names(await Devices.ListDevicesAsync(tenant.Id, new PageRequest(SortProperty: "label", Descending: true))));
        var meters = await Devices.ListDevicesAsync(tenant.Id, new PageRequest(), type: "meter");
        Assert.Equal(["a-meter", "c-meter"], Names(meters));
        Assert.Equal(2, meters.TotalElements);
        Assert.Empty((await Devices.ListDevicesAsync(tenant.Id, new PageRequest(), type: "none")).Data);
    }
}
