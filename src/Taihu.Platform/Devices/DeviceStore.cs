using System.Data.Common;
using System.Globalization;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Devices;

/// <summary>A credentials row as the device check needs it.</summary>
/// <param name="RateLimits">The publish limits of the device's profile, read with the credentials so a CONNECT costs one query.</param>
public sealed record StoredCredentials(Device Device, CredentialsType Type, string? ClientId, string? UserName, string? SecretHash, PublishRateLimits? RateLimits = null);

/// <summary>Devices, their profiles and credentials. Every call but the device check is scoped to one tenant.</summary>
public interface IDeviceStore
{
    Task CreateProfileAsync(DeviceProfile profile, CancellationToken cancellationToken = default);

    Task<DeviceProfile?> GetProfileAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    Task<DeviceProfile?> GetDefaultProfileAsync(Guid tenantId, CancellationToken cancellationToken = default);

    Task<DeviceProfile?> FindProfileByProvisionKeyAsync(string provisionKey, CancellationToken cancellationToken = default);

    Task<Page<DeviceProfile>> ListProfilesAsync(Guid tenantId, PageRequest request, CancellationToken cancellationToken = default);

    Task<bool> UpdateProfileAsync(DeviceProfile profile, CancellationToken cancellationToken = default);

    Task<bool> DeleteProfileAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    /// <summary>Creates the device and its credentials in one transaction; the row number is filled in.</summary>
    Task<Device> CreateDeviceAsync(Device device, DeviceCredentials credentials, string lookup, string? secretHash, CancellationToken cancellationToken = default);

    Task<bool> UpdateDeviceAsync(Device device, CancellationToken cancellationToken = default);

    Task<Device?> GetDeviceAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    Task<Device?> GetDeviceByNameAsync(Guid tenantId, string name, CancellationToken cancellationToken = default);

    Task<Page<Device>> ListDevicesAsync(Guid tenantId, PageRequest request, string? type = null, CancellationToken cancellationToken = default);

    Task<bool> DeleteDeviceAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    Task<DeviceCredentials?> GetCredentialsAsync(Guid tenantId, Guid deviceId, CancellationToken cancellationToken = default);

    Task<bool> SaveCredentialsAsync(Guid tenantId, DeviceCredentials credentials, string lookup, string? secretHash, CancellationToken cancellationToken = default);

    /// <summary>The device whose credentials have this lookup key (platform-wide: credentials are unique across tenants).</summary>
    Task<StoredCredentials?> FindByLookupAsync(string lookup, CancellationToken cancellationToken = default);

    /// <summary>
    /// Every device whose server attribute <c>active</c> is true, with its <c>lastConnectTime</c>,
    /// <c>lastDisconnectTime</c> and <c>lastActivityTime</c> (0 when absent): where connectivity stood when the
    /// server stopped, for the connectivity owner to start from.
    /// </summary>
    Task<IReadOnlyList<StoredConnectivity>> ListActiveDevicesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// The devices shown active whose row number leaves <paramref name="partition"/> when divided by
    /// <paramref name="partitions"/> (a cluster partition of the connectivity owners).
    /// </summary>
    Task<IReadOnlyList<StoredConnectivity>> ListActiveDevicesAsync(int partition, int partitions, CancellationToken cancellationToken = default);

    /// <summary>The device with this sequence number (the number its telemetry rows carry), of any tenant.</summary>
    Task<Device?> GetDeviceBySeqAsync(long seq, CancellationToken cancellationToken = default);
}

/// <summary>A device shown active in storage, with its last connect, disconnect and activity (ms; 0 when never).</summary>
public sealed record StoredConnectivity(Device Device, long LastConnect, long LastDisconnect, long LastActivity);

/// <summary>The SQL implementation, for SQLite and PostgreSQL alike.</summary>
/// <param name="found">Devices found by their credentials, kept (emptied after every change made here).</param>
public sealed class SqlDeviceStore(PlatformDatabase database, DeviceCredentialsCache? found = null) : IDeviceStore
{
    private const string DeviceColumns = "d.seq, d.id, d.tenant_id, d.name, d.type, d.label, d.profile_id, d.device_group, d.is_gateway, d.gateway_id, d.created_time";
    private const string ProfileColumns = "id, tenant_id, name, description, is_default, provision_type, provision_key, provision_secret, inactivity_timeout_ms, created_time, max_publish_rate, max_publish_bytes_rate, alarms";

    public async Task CreateProfileAsync(DeviceProfile profile, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO device_profiles ({ProfileColumns}) VALUES (@id, @tenant, @name, @description, @default, @ptype, @pkey, @psecret, @inactivity, @created, @rate, @byteRate, @alarms)";
        AddProfile(command, profile);
        command.AddParameter("created", profile.CreatedTime);
        await Sql.ExecuteUniqueAsync(command, $"A device profile named '{profile.Name}' already exists in this tenant, or the provision key cannot be used; choose another.", cancellationToken);
    }

    public Task<bool> UpdateProfileAsync(DeviceProfile profile, CancellationToken cancellationToken = default) => ForgettingFoundAsync(UpdateProfileCoreAsync(profile, cancellationToken));

    private async Task<bool> UpdateProfileCoreAsync(DeviceProfile profile, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE device_profiles SET name = @name, description = @description, is_default = @default, provision_type = @ptype,
                provision_key = @pkey, provision_secret = @psecret, inactivity_timeout_ms = @inactivity,
                max_publish_rate = @rate, max_publish_bytes_rate = @byteRate, alarms = @alarms
            WHERE id = @id AND tenant_id = @tenant
            """;
        AddProfile(command, profile);
        return await Sql.ExecuteUniqueAsync(command, $"A device profile named '{profile.Name}' already exists in this tenant, or the provision key cannot be used; choose another.", cancellationToken) > 0;
    }

    public Task<DeviceProfile?> GetProfileAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) =>
        QueryProfileAsync("id = @id AND tenant_id = @tenant", id.ToString(), tenantId, cancellationToken);

    public Task<DeviceProfile?> GetDefaultProfileAsync(Guid tenantId, CancellationToken cancellationToken = default) =>
        QueryProfileAsync("tenant_id = @tenant AND is_default = @id", true, tenantId, cancellationToken);

    public Task<DeviceProfile?> FindProfileByProvisionKeyAsync(string provisionKey, CancellationToken cancellationToken = default) =>
        QueryProfileAsync("provision_key = @id", provisionKey, null, cancellationToken);

    public Task<Page<DeviceProfile>> ListProfilesAsync(Guid tenantId, PageRequest request, CancellationToken cancellationToken = default)
    {
        var where = " WHERE tenant_id = @tenant" + (request.LikePattern is null ? "" : " AND lower(name) LIKE @q ESCAPE '\\'");
        var order = $"{(request.SortProperty == "createdTime" ? "created_time" : "name")} {(request.Descending ? "DESC" : "ASC")}, id";
        return database.QueryPageAsync(ProfileColumns, "device_profiles", where, order, request,
            c => c.AddParameter("tenant", tenantId.ToString()), ReadProfile, cancellationToken);
    }

    public Task<bool> DeleteProfileAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) => ForgettingFoundAsync(DeleteProfileCoreAsync(tenantId, id, cancellationToken));

    private async Task<bool> DeleteProfileCoreAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM device_profiles WHERE id = @id AND tenant_id = @tenant AND is_default = @false AND NOT EXISTS (SELECT 1 FROM devices WHERE profile_id = @id)";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        command.AddParameter("false", false);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<Device> CreateDeviceAsync(Device device, DeviceCredentials credentials, string lookup, string? secretHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        long seq;
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            // The profile must be the tenant's own: no row is inserted when it is not.
            command.CommandText = """
                INSERT INTO devices (id, tenant_id, name, type, label, profile_id, device_group, is_gateway, gateway_id, created_time)
                SELECT @id, @tenant, @name, @type, @label, @profile, @group, @gateway, @gatewayId, @created
                WHERE EXISTS (SELECT 1 FROM device_profiles p WHERE p.id = @profile AND p.tenant_id = @tenant)
                RETURNING seq
                """;
            AddDevice(command, device);
            command.AddParameter("created", device.CreatedTime);
            try
            {
                seq = await command.ExecuteScalarAsync(cancellationToken) is { } value and not DBNull
                    ? Convert.ToInt64(value, CultureInfo.InvariantCulture)
                    : throw PlatformException.NotFound("The device profile");
            }
            catch (DbException e) when (Sql.IsUniqueViolation(e))
            {
                throw PlatformException.Conflict($"A device named '{device.Name}' already exists.");
            }
        }

        await InsertCredentialsAsync(connection, transaction, credentials, lookup, secretHash, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return device with { Seq = seq };
    }

    public Task<bool> UpdateDeviceAsync(Device device, CancellationToken cancellationToken = default) => ForgettingFoundAsync(UpdateDeviceCoreAsync(device, cancellationToken));

    private async Task<bool> UpdateDeviceCoreAsync(Device device, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE devices SET name = @name, type = @type, label = @label, profile_id = @profile, device_group = @group,
                is_gateway = @gateway, gateway_id = @gatewayId
            WHERE id = @id AND tenant_id = @tenant
              AND EXISTS (SELECT 1 FROM device_profiles p WHERE p.id = @profile AND p.tenant_id = @tenant)
            """;
        AddDevice(command, device);
        try
        {
            return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
        }
        catch (DbException e) when (Sql.IsUniqueViolation(e))
        {
            throw PlatformException.Conflict($"A device named '{device.Name}' already exists.");
        }
    }

    public Task<Device?> GetDeviceAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) =>
        QueryDeviceAsync("d.id = @value AND d.tenant_id = @tenant", id.ToString(), tenantId, cancellationToken);

    public Task<Device?> GetDeviceByNameAsync(Guid tenantId, string name, CancellationToken cancellationToken = default) =>
        QueryDeviceAsync("d.name = @value AND d.tenant_id = @tenant", name, tenantId, cancellationToken);

    public Task<Page<Device>> ListDevicesAsync(Guid tenantId, PageRequest request, string? type = null, CancellationToken cancellationToken = default)
    {
        var where = " WHERE d.tenant_id = @tenant";
        if (request.LikePattern is not null)
        {
            where += " AND lower(d.name) LIKE @q ESCAPE '\\'";
        }

        if (type is not null)
        {
            where += " AND d.type = @type";
        }

        var direction = request.Descending ? "DESC" : "ASC";
        var order = request.SortProperty switch
        {
            "createdTime" => $"d.created_time {direction}",
            "type" => $"d.type {direction}",
            // The label may be NULL, which SQLite sorts first and PostgreSQL last: sorted by "has none" first, both
            // put devices without a label last going up and first going down, as PostgreSQL does by default.
            "label" => $"(d.label IS NULL) {direction}, d.label {direction}",
            _ => $"d.name {direction}",
        };
        return database.QueryPageAsync(DeviceColumns, "devices d", where, order + ", d.seq", request, c =>
        {
            c.AddParameter("tenant", tenantId.ToString());
            c.AddParameter("type", type);
        }, reader => ReadDevice(reader, 0), cancellationToken);
    }

    public Task<bool> DeleteDeviceAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) => ForgettingFoundAsync(DeleteDeviceCoreAsync(tenantId, id, cancellationToken));

    private async Task<bool> DeleteDeviceCoreAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            DELETE FROM ts_kv WHERE device_seq IN (SELECT seq FROM devices WHERE id = @id AND tenant_id = @tenant);
            DELETE FROM ts_latest WHERE device_seq IN (SELECT seq FROM devices WHERE id = @id AND tenant_id = @tenant);
            DELETE FROM ts_rollup_1m WHERE device_seq IN (SELECT seq FROM devices WHERE id = @id AND tenant_id = @tenant);
            DELETE FROM attributes WHERE device_seq IN (SELECT seq FROM devices WHERE id = @id AND tenant_id = @tenant);
            DELETE FROM device_credentials WHERE device_id IN (SELECT id FROM devices WHERE id = @id AND tenant_id = @tenant);
            """;
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        await command.ExecuteNonQueryAsync(cancellationToken);
        using var delete = connection.CreateCommand();
        delete.Transaction = transaction;
        delete.CommandText = "DELETE FROM devices WHERE id = @id AND tenant_id = @tenant";
        delete.AddParameter("id", id.ToString());
        delete.AddParameter("tenant", tenantId.ToString());
        var deleted = await delete.ExecuteNonQueryAsync(cancellationToken) > 0;
        await transaction.CommitAsync(cancellationToken);
        return deleted;
    }

    public async Task<DeviceCredentials?> GetCredentialsAsync(Guid tenantId, Guid deviceId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT c.credentials_type, c.credentials_id, c.client_id, c.user_name, c.certificate
            FROM device_credentials c JOIN devices d ON d.id = c.device_id
            WHERE c.device_id = @id AND d.tenant_id = @tenant
            """;
        command.AddParameter("id", deviceId.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        _ = DeviceCredentials.TryParseType(reader.GetString(0), out var type);
        return new DeviceCredentials(deviceId, type, reader.GetNullableString(1), reader.GetNullableString(2), reader.GetNullableString(3), reader.GetNullableString(4));
    }

    public Task<bool> SaveCredentialsAsync(Guid tenantId, DeviceCredentials credentials, string lookup, string? secretHash, CancellationToken cancellationToken = default) => ForgettingFoundAsync(SaveCredentialsCoreAsync(tenantId, credentials, lookup, secretHash, cancellationToken));

    private async Task<bool> SaveCredentialsCoreAsync(Guid tenantId, DeviceCredentials credentials, string lookup, string? secretHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = "DELETE FROM device_credentials WHERE device_id IN (SELECT id FROM devices WHERE id = @id AND tenant_id = @tenant)";
            delete.AddParameter("id", credentials.DeviceId.ToString());
            delete.AddParameter("tenant", tenantId.ToString());
            if (await delete.ExecuteNonQueryAsync(cancellationToken) == 0)
            {
                return false;
            }
        }

        await InsertCredentialsAsync(connection, transaction, credentials, lookup, secretHash, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>A change, then the devices kept by their credentials forgotten: after its commit (or its failure), so
    /// that a lookup that read the old rows is not kept.</summary>
    private async Task<bool> ForgettingFoundAsync(Task<bool> change)
    {
        try
        {
            return await change;
        }
        finally
        {
            found?.Clear();
        }
    }

    public async Task<StoredCredentials?> FindByLookupAsync(string lookup, CancellationToken cancellationToken = default)
    {
        if (found is not { Enabled: true } cache)
        {
            return await ReadByLookupAsync(lookup, cancellationToken);
        }

        if (cache.TryGet(lookup, out var known))
        {
            return known;
        }

        var generation = cache.Generation;
        var read = await ReadByLookupAsync(lookup, cancellationToken);
        if (read is not null)
        {
            cache.Add(lookup, read, generation);
        }

        return read;
    }

    private Task<StoredCredentials?> ReadByLookupAsync(string lookup, CancellationToken cancellationToken) => _byLookup.ReadAsync(lookup, cancellationToken);

    /// <summary>
    /// Credentials lookups of many CONNECTs at once go to the database in one statement (a connect storm after a
    /// cluster node died made one statement per CONNECT the limit); a lone lookup still goes at once.
    /// </summary>
    private readonly CoalescedReads<string, StoredCredentials> _byLookup = new((lookups, cancellationToken) => ReadManyByLookupAsync(database, lookups, cancellationToken),
        maxReading: 4, maxKeys: 512, StringComparer.Ordinal, stage: "read.credentials");

    private static async Task<IReadOnlyDictionary<string, StoredCredentials>> ReadManyByLookupAsync(PlatformDatabase database, IReadOnlyList<string> lookups, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        var list = new System.Text.StringBuilder();
        for (var i = 0; i < lookups.Count; i++)
        {
            list.Append(i == 0 ? "@l0" : $", @l{i}");
            command.AddParameter($"l{i}", lookups[i]);
        }

        command.CommandText = $"""
            SELECT {DeviceColumns}, c.credentials_type, c.client_id, c.user_name, c.secret_hash, p.max_publish_rate, p.max_publish_bytes_rate, c.lookup
            FROM device_credentials c JOIN devices d ON d.id = c.device_id LEFT JOIN device_profiles p ON p.id = d.profile_id
            WHERE c.lookup IN ({list})
            """;
        var found = new Dictionary<string, StoredCredentials>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            _ = DeviceCredentials.TryParseType(reader.GetString(11), out var type);
            found[reader.GetString(17)] = new StoredCredentials(ReadDevice(reader, 0), type, reader.GetNullableString(12), reader.GetNullableString(13), reader.GetNullableString(14),
                ReadRateLimits(reader, 15));
        }

        return found;
    }

    private static async Task InsertCredentialsAsync(DbConnection connection, DbTransaction transaction, DeviceCredentials credentials, string lookup, string? secretHash, CancellationToken cancellationToken)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO device_credentials (device_id, credentials_type, lookup, credentials_id, client_id, user_name, secret_hash, certificate)
            VALUES (@device, @type, @lookup, @cid, @client, @user, @secret, @certificate)
            """;
        command.AddParameter("device", credentials.DeviceId.ToString());
        command.AddParameter("type", DeviceCredentials.TypeName(credentials.Type));
        command.AddParameter("lookup", lookup);
        command.AddParameter("cid", credentials.CredentialsId);
        command.AddParameter("client", credentials.ClientId);
        command.AddParameter("user", credentials.UserName);
        command.AddParameter("secret", secretHash);
        command.AddParameter("certificate", credentials.CertificatePem);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (DbException e) when (Sql.IsUniqueViolation(e))
        {
            throw new CredentialsInUseException();
        }
    }

    public Task<IReadOnlyList<StoredConnectivity>> ListActiveDevicesAsync(CancellationToken cancellationToken = default) =>
        ListActiveDevicesAsync(0, 1, cancellationToken);

    public async Task<IReadOnlyList<StoredConnectivity>> ListActiveDevicesAsync(int partition, int partitions, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(partitions, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(partition);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(partition, partitions);
        static string Attribute(string key) =>
            $"(SELECT x.long_v FROM attributes x WHERE x.device_seq = d.seq AND x.scope = 'SERVER_SCOPE' AND x.key = '{key}')";
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT {DeviceColumns}, {Attribute("lastConnectTime")}, {Attribute("lastDisconnectTime")}, {Attribute("lastActivityTime")}
            FROM attributes a JOIN devices d ON d.seq = a.device_seq
            WHERE a.scope = 'SERVER_SCOPE' AND a.key = 'active' AND a.value_type = @type AND a.bool_v = @active{(partitions > 1 ? " AND d.seq % @partitions = @partition" : "")}
            ORDER BY d.seq
            """;
        if (partitions > 1)
        {
            command.AddParameter("partitions", (long)partitions);
            command.AddParameter("partition", (long)partition);
        }

        command.AddParameter("type", (int)Telemetry.DataType.Boolean);
        command.AddParameter("active", true);
        var result = new List<StoredConnectivity>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(new StoredConnectivity(ReadDevice(reader, 0),
                reader.IsDBNull(11) ? 0 : reader.GetInt64(11), reader.IsDBNull(12) ? 0 : reader.GetInt64(12), reader.IsDBNull(13) ? 0 : reader.GetInt64(13)));
        }

        return result;
    }

    public Task<Device?> GetDeviceBySeqAsync(long seq, CancellationToken cancellationToken = default) =>
        database.QuerySingleAsync($"SELECT {DeviceColumns} FROM devices d WHERE d.seq = @seq", command => command.AddParameter("seq", seq),
            reader => ReadDevice(reader, 0), cancellationToken);

    private Task<Device?> QueryDeviceAsync(string where, string value, Guid tenantId, CancellationToken cancellationToken) =>
        database.QuerySingleAsync($"SELECT {DeviceColumns} FROM devices d WHERE {where}", command =>
        {
            command.AddParameter("value", value);
            command.AddParameter("tenant", tenantId.ToString());
        }, reader => ReadDevice(reader, 0), cancellationToken);

    private Task<DeviceProfile?> QueryProfileAsync(string where, object value, Guid? tenantId, CancellationToken cancellationToken) =>
        database.QuerySingleAsync($"SELECT {ProfileColumns} FROM device_profiles WHERE {where}", command =>
        {
            command.AddParameter("id", value);
            command.AddParameter("tenant", tenantId?.ToString());
        }, ReadProfile, cancellationToken);

    private static Device ReadDevice(DbDataReader r, int o)
    {
        var gateway = r.GetNullableString(o + 9);
        return new Device(r.GetInt64(o), Guid.Parse(r.GetString(o + 1)), Guid.Parse(r.GetString(o + 2)), r.GetString(o + 3), r.GetString(o + 4),
            r.GetNullableString(o + 5), Guid.Parse(r.GetString(o + 6)), r.GetNullableString(o + 7), Sql.GetBool(r, o + 8),
            gateway is null ? null : Guid.Parse(gateway), r.GetInt64(o + 10));
    }

    private static DeviceProfile ReadProfile(DbDataReader r)
    {
        _ = DeviceProfile.TryParseProvisionType(r.GetString(5), out var provision);
        return new DeviceProfile(Guid.Parse(r.GetString(0)), Guid.Parse(r.GetString(1)), r.GetString(2), r.GetNullableString(3), Sql.GetBool(r, 4),
            provision, r.GetNullableString(6), r.GetNullableString(7), r.GetInt64(8), r.GetInt64(9), ReadRateLimits(r, 10),
            r.GetNullableString(12));
    }

    private static PublishRateLimits? ReadRateLimits(DbDataReader r, int o) => PublishRateLimits.Of(
        r.IsDBNull(o) ? null : Convert.ToInt32(r.GetValue(o), CultureInfo.InvariantCulture),
        r.IsDBNull(o + 1) ? null : Convert.ToInt64(r.GetValue(o + 1), CultureInfo.InvariantCulture));

    private static void AddDevice(DbCommand command, Device device)
    {
        command.AddParameter("id", device.Id.ToString());
        command.AddParameter("tenant", device.TenantId.ToString());
        command.AddParameter("name", device.Name);
        command.AddParameter("type", device.Type);
        command.AddParameter("label", device.Label);
        command.AddParameter("profile", device.ProfileId.ToString());
        command.AddParameter("group", device.Group);
        command.AddParameter("gateway", device.IsGateway);
        command.AddParameter("gatewayId", device.GatewayId?.ToString());
    }

    private static void AddProfile(DbCommand command, DeviceProfile profile)
    {
        command.AddParameter("id", profile.Id.ToString());
        command.AddParameter("tenant", profile.TenantId.ToString());
        command.AddParameter("name", profile.Name);
        command.AddParameter("description", profile.Description);
        command.AddParameter("default", profile.IsDefault);
        command.AddParameter("ptype", DeviceProfile.ProvisionTypeName(profile.ProvisionType));
        command.AddParameter("pkey", profile.ProvisionKey);
        command.AddParameter("psecret", profile.ProvisionSecret);
        command.AddParameter("inactivity", profile.InactivityTimeoutMs);
        command.AddParameter("rate", profile.RateLimits?.MessagesPerSecond);
        command.AddParameter("byteRate", profile.RateLimits?.BytesPerSecond);
        command.AddParameter("alarms", profile.AlarmsJson);
    }
}

/// <summary>
/// Credentials that another device holds. The answer is the same whichever tenant holds them and says nothing more;
/// since it still tells that they exist, the management API counts it as a failed device authentication of the
/// caller's address.
/// </summary>
public sealed class CredentialsInUseException() : PlatformException(409, 30, Text)
{
    /// <summary>The whole answer.</summary>
    public const string Text = "These credentials cannot be used; choose other ones.";
}
