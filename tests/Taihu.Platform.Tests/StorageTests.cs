using Microsoft.Extensions.Time.Testing;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>
/// The storage suite: every test runs once on SQLite and once on PostgreSQL (the two subclasses), each on a
/// fresh, migrated database of its own. The tests only use the public store interfaces, so what passes here is
/// what the services get on either provider. The areas live in the partial files beside this one.
/// </summary>
public abstract partial class StorageTests : IAsyncLifetime
{
    /// <summary>2023-11-14T22:13:20Z, a round start for the fake clock.</summary>
    protected const long T0 = 1_700_000_000_000;

    private int _names;

    protected FakeTimeProvider Time { get; } = new(DateTimeOffset.FromUnixTimeMilliseconds(T0));

    protected PlatformDatabase Database { get; private set; } = null!;

    protected ITenantStore Tenants { get; private set; } = null!;

    protected IDeviceStore Devices { get; private set; } = null!;

    protected DeviceCredentialsCache DevicesFound { get; private set; } = null!;

    protected ITelemetryStore Telemetry { get; private set; } = null!;

    protected IAttributeStore Attributes { get; private set; } = null!;

    protected IAuditLog Audit { get; private set; } = null!;

    /// <summary>A new, empty database of the provider under test (not migrated).</summary>
    protected abstract Task<PlatformDatabase> CreateDatabaseAsync();

    /// <summary>Removes what <see cref="CreateDatabaseAsync"/> made; the database is already disposed.</summary>
    protected abstract Task DropDatabaseAsync();

    public async Task InitializeAsync()
    {
        Database = await CreateDatabaseAsync();
        Assert.Equal(Migrations.Steps.Length, await Database.MigrateAsync());
        // Devices found by their credentials are kept as a server keeps them: every test of a change reads through it.
        DevicesFound = new DeviceCredentialsCache(Time, 1000, TimeSpan.FromSeconds(30));
        Tenants = new SqlTenantStore(Database, DevicesFound);
        Devices = new SqlDeviceStore(Database, DevicesFound);
        Telemetry = new SqlTelemetryStore(Database);
        Attributes = new SqlAttributeStore(Database);
        Audit = new SqlAuditLog(Database, Time);
    }

    public async Task DisposeAsync()
    {
        if (Audit is not null)
        {
            // Entries appended without a wait (RPC_CALL drafts) are written by the audit log's writer in the order
            // queued: one entry waited for after them means they are written before the database goes away.
            try
            {
                await Audit.WriteAsync(new Caller(Guid.Empty, null, Authority.SysAdmin, "test"), "TEST_END", null, null, null);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A test that broke the database has already failed for it.
            }
        }

        Database?.Dispose();
        await DropDatabaseAsync();
    }

    protected string UniqueName(string prefix) => $"{prefix}-{Interlocked.Increment(ref _names):D3}";

    protected async Task<Tenant> NewTenantAsync(string? title = null, int? ttlDays = null)
    {
        var tenant = new Tenant(Guid.NewGuid(), title ?? UniqueName("tenant"), T0, ttlDays);
        await Tenants.CreateTenantAsync(tenant);
        return tenant;
    }

    protected async Task<DeviceProfile> NewProfileAsync(Guid tenantId, string? name = null, bool isDefault = false, string? provisionKey = null, long createdTime = T0)
    {
        var profile = new DeviceProfile(Guid.NewGuid(), tenantId, name ?? UniqueName("profile"), null, isDefault,
            provisionKey is null ? ProvisionType.Disabled : ProvisionType.AllowCreateNewDevices, provisionKey, provisionKey is null ? null : "secret",
            DeviceProfile.DefaultInactivityTimeoutMs, createdTime);
        await Devices.CreateProfileAsync(profile);
        return profile;
    }

    /// <summary>A device with an access token; the token's lookup is <c>t:{token}</c> so tests can find it again.</summary>
    protected async Task<Device> NewDeviceAsync(Guid tenantId, Guid profileId, string? name = null, string type = "default", string? label = null,
        string? token = null, long createdTime = T0)
    {
        var device = new Device(0, Guid.NewGuid(), tenantId, name ?? UniqueName("device"), type, label, profileId, null, false, null, createdTime);
        token ??= Guid.NewGuid().ToString("N");
        var credentials = new DeviceCredentials(device.Id, CredentialsType.AccessToken, token, null, null, null);
        return await Devices.CreateDeviceAsync(device, credentials, "t:" + token, null);
    }

    /// <summary>A tenant with a default profile and one device.</summary>
    protected async Task<(Tenant Tenant, DeviceProfile Profile, Device Device)> NewTenantWithDeviceAsync(string? deviceName = null)
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, "default", isDefault: true);
        var device = await NewDeviceAsync(tenant.Id, profile.Id, deviceName);
        return (tenant, profile, device);
    }

    protected static Caller TenantAdmin(Guid tenantId, string name = "admin@example.com") => new(Guid.NewGuid(), tenantId, Authority.TenantAdmin, name);

    protected static Caller SysAdmin(string name = "sysadmin@example.com") => new(Guid.NewGuid(), null, Authority.SysAdmin, name);

    protected static DevicePoint Point(Device device, string key, long ts, KvValue value) => new(device.Seq, new TelemetryPoint(key, ts, value));

    protected static DevicePoint Point(Device device, string key, long ts, long value) => Point(device, key, ts, KvValue.Of(value));

    protected static DevicePoint Point(Device device, string key, long ts, double value) => Point(device, key, ts, KvValue.Of(value));
}
