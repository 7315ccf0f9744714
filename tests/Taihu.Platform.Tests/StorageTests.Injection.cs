using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>Text that looks like SQL is data: stored and returned verbatim, and harmless.</summary>
public abstract partial class StorageTests
{
    public static TheoryData<string> HostileText() =>
    [
        "x'); DROP TABLE devices;--",
        "'; DELETE FROM tenants WHERE '1'='1",
        "\" OR 1=1 --",
        "Robert'); DROP TABLE ts_kv; --",
        "$1 @id :name ? %s {0}",
        "back\\slash \\' \\\" \\\\",
        "/* comment */ -- line",
        "ünïcødé ☃ 𝄞 中文",
    ];

    [Theory]
    [MemberData(nameof(HostileText))]
    public async Task Injection_TenantsUsersAndSettings_StoreTextVerbatim(string text)
    {
        var tenant = await NewTenantAsync(text);
        Assert.Equal(text, (await Tenants.GetTenantAsync(tenant.Id))!.Title);
        Assert.Equal(text, Assert.Single((await Tenants.ListTenantsAsync(new PageRequest(TextSearch: text))).Data).Title);

        var user = new User(Guid.NewGuid(), tenant.Id, "u@example.com", Authority.TenantAdmin, text, text, T0, false);
        await Tenants.CreateUserAsync(user, text, text);
        Assert.Equal(user with { Activated = false }, await Tenants.GetUserAsync(user.Id, tenant.Id));
        Assert.Equal(text, (await Tenants.GetUserSecretsAsync(user.Id))!.PasswordHash);
        Assert.NotNull(await Tenants.ActivateAsync(text, "h"));
        Assert.Null(await Tenants.GetUserByEmailAsync(text));

        await Tenants.CreateApiKeyAsync(Guid.NewGuid(), tenant.Id, text, Authority.Viewer, text, T0);
        Assert.Equal("api key " + text, (await Tenants.FindApiKeyAsync(text))!.Name);

        Assert.Equal(text, await Tenants.GetOrAddSettingAsync(text, text));
        Assert.Equal(text, await Tenants.GetSettingAsync(text));

        await AssertSchemaIntactAsync();
    }

    [Theory]
    [MemberData(nameof(HostileText))]
    public async Task Injection_DevicesAndProfiles_StoreTextVerbatim(string text)
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, text, provisionKey: text);
        Assert.Equal(profile, await Devices.FindProfileByProvisionKeyAsync(text));

        var device = await NewDeviceAsync(tenant.Id, profile.Id, text, type: text, label: text, token: text);
        device = device with { Group = text };
        Assert.True(await Devices.UpdateDeviceAsync(device));
        Assert.Equal(device, await Devices.GetDeviceAsync(tenant.Id, device.Id));
        Assert.Equal(device, await Devices.GetDeviceByNameAsync(tenant.Id, text));
        Assert.Equal(device, (await Devices.FindByLookupAsync("t:" + text))!.Device);
        Assert.Equal(device, Assert.Single((await Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: text), type: text)).Data));
        Assert.Equal(profile, Assert.Single((await Devices.ListProfilesAsync(tenant.Id, new PageRequest(TextSearch: text))).Data));

        await AssertSchemaIntactAsync();
    }

    [Theory]
    [MemberData(nameof(HostileText))]
    public async Task Injection_TelemetryAttributesAndAudit_StoreTextVerbatim(string text)
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, text, T0, KvValue.Of(text)), Point(device, "json", T0, KvValue.OfJson("\"" + text.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""))]);
        Assert.Equal(KvValue.Of(text), Assert.Single(await Telemetry.GetLatestAsync(device.Seq, [text])).Value);
        Assert.Equal(KvValue.Of(text), Assert.Single(await Telemetry.GetHistoryAsync(device.Seq, text, 0, long.MaxValue, 10, SortOrder.Ascending)).Value);
        Assert.Contains(text, await new SqlTelemetryStore(Database).GetKeysAsync(device.Seq));
        Assert.Equal(KvValue.Of(1L), Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, text, T0, T0 + 1, 1, Aggregation.Count)).Value);
        Assert.Equal(1, await Telemetry.DeleteAsync(device.Seq, [text], 0, long.MaxValue));

        await Attributes.SaveAsync(device.Seq, AttributeScope.Shared, [new AttributeEntry(text, T0, KvValue.Of(text))]);
        Assert.Equal([new AttributeEntry(text, T0, KvValue.Of(text))], await Attributes.GetAsync(device.Seq, AttributeScope.Shared, [text]));
        Assert.Equal(1, await Attributes.DeleteAsync(device.Seq, AttributeScope.Shared, [text]));

        await Audit.WriteAsync(TenantAdmin(tenant.Id, text), text, text, text, text, text);
        var entry = Assert.Single((await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: text))).Data);
        Assert.Equal((text, text, text, text, text, text), (entry.UserName, entry.ActionType, entry.EntityType, entry.EntityId, entry.EntityName, entry.FailureDetails));

        await AssertSchemaIntactAsync();
    }

    [Fact]
    public async Task Injection_NulCharacter_IsRefusedAlikeOnBothProviders()
    {
        // PostgreSQL cannot store U+0000 in TEXT and SQLite can: both refuse it, as a bad request, and keep nothing.
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        async Task AssertBadRequest(Func<Task> call) => Assert.Equal(400, (await Assert.ThrowsAsync<PlatformException>(call)).Status);

        await AssertBadRequest(() => NewTenantAsync("nul\0tenant"));
        await AssertBadRequest(() => NewDeviceAsync(tenant.Id, profile.Id, "nul\0name"));
        await AssertBadRequest(() => NewDeviceAsync(tenant.Id, profile.Id, "fine", token: "nul\0token"));
        await AssertBadRequest(() => Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: "\0")));
        await AssertBadRequest(() => Telemetry.WriteAsync([Point(device, "ok", T0, 1L), Point(device, "nul\0key", T0, 1L)]));
        await AssertBadRequest(() => Telemetry.WriteAsync([Point(device, "ok", T0, 1L), Point(device, "text", T0, KvValue.Of("nul\0value"))]));
        await AssertBadRequest(() => Attributes.SaveAsync(device.Seq, AttributeScope.Shared, [new AttributeEntry("a", T0, KvValue.OfJson("\"\0\""))]));

        Assert.Equal(1, (await Tenants.ListTenantsAsync(new PageRequest())).TotalElements);
        Assert.Equal([device.Id], (await Devices.ListDevicesAsync(tenant.Id, new PageRequest())).Data.Select(d => d.Id));
        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Empty(await Attributes.GetAsync(device.Seq, AttributeScope.Shared, null));
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public async Task Injection_NonFiniteNumbers_AreRefusedAlikeOnBothProviders(double number)
    {
        // SQLite refuses NaN and PostgreSQL keeps it; JSON cannot carry any of them. Both refuse, keeping nothing.
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var write = await Assert.ThrowsAsync<PlatformException>(() => Telemetry.WriteAsync([Point(device, "ok", T0, 1.0), Point(device, "bad", T0, number)]));
        Assert.Equal(400, write.Status);
        Assert.Contains("'bad'", write.Message, StringComparison.Ordinal);
        var save = await Assert.ThrowsAsync<PlatformException>(() => Attributes.SaveAsync(device.Seq, AttributeScope.Server, [new AttributeEntry("bad", T0, KvValue.Of(number))]));
        Assert.Equal(400, save.Status);

        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Empty(await Attributes.GetAsync(device.Seq, AttributeScope.Server, null));
    }

    /// <summary>Every table is still there and still holds the rows the test made.</summary>
    private async Task AssertSchemaIntactAsync()
    {
        await using var connection = await Database.OpenAsync();
        foreach (var table in new[] { "tenants", "users", "api_keys", "device_profiles", "devices", "device_credentials", "ts_keys", "ts_kv", "ts_latest", "attributes", "audit_log", "settings" })
        {
            using var command = connection.CreateCommand();
            command.CommandText = $"SELECT COUNT(*) FROM {table}";
            Assert.True(Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture) >= 0);
        }

        Assert.NotEmpty((await Tenants.ListTenantsAsync(new PageRequest())).Data);
    }
}
