using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>Tenants, users, API keys and settings.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Tenant_RoundTrips_AndUpdates()
    {
        var tenant = await NewTenantAsync("Acme", ttlDays: 30);
        Assert.Equal(tenant, await Tenants.GetTenantAsync(tenant.Id));

        var renamed = tenant with { Title = "Acme Ltd", TtlDays = null };
        Assert.True(await Tenants.UpdateTenantAsync(renamed));
        Assert.Equal(renamed, await Tenants.GetTenantAsync(tenant.Id));

        Assert.False(await Tenants.UpdateTenantAsync(renamed with { Id = Guid.NewGuid() }));
        Assert.Null(await Tenants.GetTenantAsync(Guid.NewGuid()));
    }

    [Fact]
    public async Task WritesForADeletedTenant_FailAsForeignKeyViolations_WhichTheApiAnswers404()
    {
        // A request authenticated just before its tenant was deleted may still write: the refusal must be
        // recognisable (the API turns it into 404, not 500).
        var tenant = await NewTenantAsync();
        Assert.True(await Tenants.DeleteTenantAsync(tenant.Id));
        var key = await Assert.ThrowsAnyAsync<System.Data.Common.DbException>(() =>
            Tenants.CreateApiKeyAsync(Guid.NewGuid(), tenant.Id, "late", Authority.Operator, "hash-" + Guid.NewGuid().ToString("N"), T0));
        Assert.True(Sql.IsForeignKeyViolation(key));
        var user = await Assert.ThrowsAnyAsync<System.Data.Common.DbException>(() =>
            Tenants.CreateUserAsync(new User(Guid.NewGuid(), tenant.Id, $"late-{Guid.NewGuid():N}@example.com", Authority.Viewer, null, null, T0, true), null, null));
        Assert.True(Sql.IsForeignKeyViolation(user));
    }

    [Fact]
    public async Task Tenant_TitleIsUnique_OnCreateAndUpdate()
    {
        await NewTenantAsync("Acme");
        var other = await NewTenantAsync("Globex");

        var create = await Assert.ThrowsAsync<PlatformException>(() => NewTenantAsync("Acme"));
        Assert.Equal(409, create.Status);
        var update = await Assert.ThrowsAsync<PlatformException>(() => Tenants.UpdateTenantAsync(other with { Title = "Acme" }));
        Assert.Equal(409, update.Status);
        Assert.Equal("Globex", (await Tenants.GetTenantAsync(other.Id))!.Title);
    }

    [Fact]
    public async Task Tenant_Delete_RemovesWhatItOwns_AndNothingElse()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        var (otherTenant, _, otherDevice) = await NewTenantWithDeviceAsync();
        await Tenants.CreateUserAsync(NewUser(tenant.Id, "a@example.com"), "hash", null);
        await Tenants.CreateUserAsync(NewUser(otherTenant.Id, "b@example.com"), "hash", null);
        await Tenants.CreateApiKeyAsync(Guid.NewGuid(), tenant.Id, "key", Authority.Operator, "keyhash", T0);
        await Telemetry.WriteAsync([Point(device, "temp", T0, 1L), Point(otherDevice, "temp", T0, 2L)]);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Server, [new AttributeEntry("a", T0, KvValue.Of(1L))]);
        await Attributes.SaveAsync(otherDevice.Seq, AttributeScope.Server, [new AttributeEntry("a", T0, KvValue.Of(2L))]);
        var lookup = "t:" + (await Devices.GetCredentialsAsync(tenant.Id, device.Id))!.CredentialsId;
        Assert.NotNull(await Devices.FindByLookupAsync(lookup));

        Assert.True(await Tenants.DeleteTenantAsync(tenant.Id));

        Assert.Null(await Tenants.GetTenantAsync(tenant.Id));
        Assert.Null(await Devices.GetDeviceAsync(tenant.Id, device.Id));
        Assert.Null(await Devices.GetProfileAsync(tenant.Id, profile.Id));
        Assert.Null(await Devices.FindByLookupAsync(lookup));
        Assert.Null(await Tenants.GetUserByEmailAsync("a@example.com"));
        Assert.Null(await Tenants.FindApiKeyAsync("keyhash"));
        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "temp", 0, long.MaxValue, 10, SortOrder.Ascending));
        Assert.Empty(await Attributes.GetAsync(device.Seq, AttributeScope.Server, null));

        Assert.NotNull(await Tenants.GetTenantAsync(otherTenant.Id));
        Assert.NotNull(await Devices.GetDeviceAsync(otherTenant.Id, otherDevice.Id));
        Assert.NotNull(await Tenants.GetUserByEmailAsync("b@example.com"));
        Assert.Single(await Telemetry.GetLatestAsync(otherDevice.Seq, null));
        Assert.Single(await Attributes.GetAsync(otherDevice.Seq, AttributeScope.Server, null));
    }

    [Fact]
    public async Task Tenant_DeleteOfUnknownId_ReturnsFalse()
    {
        await NewTenantAsync();
        Assert.False(await Tenants.DeleteTenantAsync(Guid.NewGuid()));
    }

    [Fact]
    public async Task User_RoundTrips_WithSecrets()
    {
        var tenant = await NewTenantAsync();
        var user = NewUser(tenant.Id, "Jane.Doe@Example.com") with { FirstName = "Jane", LastName = "Doe" };
        await Tenants.CreateUserAsync(user, "pw-hash", null);

        // E-mail addresses are kept and matched in lower case.
        var expected = user with { Email = "jane.doe@example.com", Activated = true };
        Assert.Equal(expected, await Tenants.GetUserAsync(user.Id, tenant.Id));
        var secrets = await Tenants.GetUserByEmailAsync("JANE.DOE@example.COM");
        Assert.NotNull(secrets);
        Assert.Equal(expected, secrets.User);
        Assert.Equal("pw-hash", secrets.PasswordHash);
        Assert.Equal(0, secrets.TokenVersion);
        Assert.Equal(0, secrets.FailedLogins);
        Assert.Equal(0, secrets.LockedUntil);
        Assert.Equal(secrets, await Tenants.GetUserSecretsAsync(user.Id));
    }

    [Fact]
    public async Task User_EmailIsUniqueAcrossTenants_IgnoringCase()
    {
        var a = await NewTenantAsync();
        var b = await NewTenantAsync();
        await Tenants.CreateUserAsync(NewUser(a.Id, "ops@example.com"), null, "token-1");

        var e = await Assert.ThrowsAsync<PlatformException>(() => Tenants.CreateUserAsync(NewUser(b.Id, "OPS@example.com"), null, "token-2"));
        Assert.Equal(409, e.Status);
    }

    [Fact]
    public async Task User_Activation_SetsPasswordOnce()
    {
        var tenant = await NewTenantAsync();
        var user = NewUser(tenant.Id, "new@example.com");
        await Tenants.CreateUserAsync(user, null, "activation-token");

        Assert.False((await Tenants.GetUserAsync(user.Id, tenant.Id))!.Activated);
        Assert.Equal("activation-token", await Tenants.GetActivationTokenAsync(user.Id));
        Assert.Null(await Tenants.ActivateAsync("wrong-token", "hash"));

        var activated = await Tenants.ActivateAsync("activation-token", "hash");
        Assert.NotNull(activated);
        Assert.True(activated.Activated);
        Assert.True((await Tenants.GetUserAsync(user.Id, tenant.Id))!.Activated);
        Assert.Equal("hash", (await Tenants.GetUserSecretsAsync(user.Id))!.PasswordHash);
        Assert.Null(await Tenants.GetActivationTokenAsync(user.Id));

        // The token is used up.
        Assert.Null(await Tenants.ActivateAsync("activation-token", "other"));
        Assert.Equal("hash", (await Tenants.GetUserSecretsAsync(user.Id))!.PasswordHash);
    }

    [Fact]
    public async Task User_LoginCounters_PasswordAndTokenVersion()
    {
        var tenant = await NewTenantAsync();
        var user = NewUser(tenant.Id, "u@example.com");
        await Tenants.CreateUserAsync(user, "h1", null);

        await Tenants.RecordLoginAsync(user.Id, 3, T0 + 60_000);
        var secrets = (await Tenants.GetUserSecretsAsync(user.Id))!;
        Assert.Equal(3, secrets.FailedLogins);
        Assert.Equal(T0 + 60_000, secrets.LockedUntil);

        await Tenants.SetPasswordAsync(user.Id, "h2");
        await Tenants.BumpTokenVersionAsync(user.Id);
        secrets = (await Tenants.GetUserSecretsAsync(user.Id))!;
        Assert.Equal("h2", secrets.PasswordHash);
        Assert.Equal(2, secrets.TokenVersion);
    }

    [Fact]
    public async Task User_SysAdmins_AreSeparateFromTenants()
    {
        var tenant = await NewTenantAsync();
        Assert.False(await Tenants.AnySysAdminAsync());
        var admin = NewUser(null, "root@example.com") with { Authority = Authority.SysAdmin };
        await Tenants.CreateUserAsync(admin, "h", null);
        var member = NewUser(tenant.Id, "member@example.com");
        await Tenants.CreateUserAsync(member, "h", null);

        Assert.True(await Tenants.AnySysAdminAsync());
        Assert.NotNull(await Tenants.GetUserAsync(admin.Id, null));
        Assert.Null(await Tenants.GetUserAsync(admin.Id, tenant.Id));
        Assert.Null(await Tenants.GetUserAsync(member.Id, null));
        Assert.NotNull(await Tenants.GetUserAsync(member.Id, null, anyTenant: true));

        var sysadmins = await Tenants.ListUsersAsync(null, new PageRequest());
        Assert.Equal([admin.Id], sysadmins.Data.Select(u => u.Id));
        var members = await Tenants.ListUsersAsync(tenant.Id, new PageRequest());
        Assert.Equal([member.Id], members.Data.Select(u => u.Id));
    }

    [Fact]
    public async Task User_Delete_IsScopedToTheTenant()
    {
        var a = await NewTenantAsync();
        var b = await NewTenantAsync();
        var user = NewUser(a.Id, "x@example.com");
        await Tenants.CreateUserAsync(user, null, null);

        Assert.False(await Tenants.DeleteUserAsync(user.Id, b.Id));
        Assert.NotNull(await Tenants.GetUserAsync(user.Id, a.Id));
        Assert.True(await Tenants.DeleteUserAsync(user.Id, a.Id));
        Assert.Null(await Tenants.GetUserAsync(user.Id, a.Id));
        Assert.False(await Tenants.DeleteUserAsync(user.Id, a.Id));
    }

    [Fact]
    public async Task ApiKey_IsFoundByItsHash()
    {
        var tenant = await NewTenantAsync();
        var id = Guid.NewGuid();
        await Tenants.CreateApiKeyAsync(id, tenant.Id, "ingest", Authority.Operator, "sha256-of-key", T0);

        Assert.Equal(new Caller(id, tenant.Id, Authority.Operator, "api key ingest"), await Tenants.FindApiKeyAsync("sha256-of-key"));
        Assert.Null(await Tenants.FindApiKeyAsync("sha256-of-other"));
        Assert.Null(await Tenants.FindApiKeyAsync("SHA256-OF-KEY"));
    }

    [Fact]
    public async Task Settings_FirstValueIsKept()
    {
        Assert.Null(await Tenants.GetSettingAsync("jwt.signingKey"));
        Assert.Equal("first", await Tenants.GetOrAddSettingAsync("jwt.signingKey", "first"));
        Assert.Equal("first", await Tenants.GetOrAddSettingAsync("jwt.signingKey", "second"));
        Assert.Equal("first", await Tenants.GetSettingAsync("jwt.signingKey"));
    }

    private static User NewUser(Guid? tenantId, string email) =>
        new(Guid.NewGuid(), tenantId, email, Authority.TenantAdmin, null, null, T0, Activated: true);
}
