using System.Data.Common;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Tenants;

/// <summary>A user row with the secrets the login path needs (never leaves the platform).</summary>
public sealed record UserSecrets(User User, string? PasswordHash, int TokenVersion, int FailedLogins, long LockedUntil);

/// <summary>Tenants, users and API keys.</summary>
public interface ITenantStore
{
    Task CreateTenantAsync(Tenant tenant, CancellationToken cancellationToken = default);

    Task<bool> UpdateTenantAsync(Tenant tenant, CancellationToken cancellationToken = default);

    Task<Tenant?> GetTenantAsync(Guid id, CancellationToken cancellationToken = default);

    Task<Page<Tenant>> ListTenantsAsync(PageRequest request, CancellationToken cancellationToken = default);

    Task<bool> DeleteTenantAsync(Guid id, CancellationToken cancellationToken = default);

    Task CreateUserAsync(User user, string? passwordHash, string? activationToken, CancellationToken cancellationToken = default);

    /// <summary>A user by id, only within <paramref name="tenantId"/> (null: system administrators).</summary>
    Task<User?> GetUserAsync(Guid id, Guid? tenantId, bool anyTenant = false, CancellationToken cancellationToken = default);

    Task<UserSecrets?> GetUserByEmailAsync(string email, CancellationToken cancellationToken = default);

    Task<UserSecrets?> GetUserSecretsAsync(Guid id, CancellationToken cancellationToken = default);

    Task<string?> GetActivationTokenAsync(Guid id, CancellationToken cancellationToken = default);

    Task<User?> ActivateAsync(string activationToken, string passwordHash, CancellationToken cancellationToken = default);

    Task<Page<User>> ListUsersAsync(Guid? tenantId, PageRequest request, CancellationToken cancellationToken = default);

    Task<bool> DeleteUserAsync(Guid id, Guid? tenantId, CancellationToken cancellationToken = default);

    Task RecordLoginAsync(Guid id, int failedLogins, long lockedUntil, CancellationToken cancellationToken = default);

    Task SetPasswordAsync(Guid id, string passwordHash, CancellationToken cancellationToken = default);

    /// <summary>Ends every token of the user: the token version moves on and its refresh tokens are forgotten.</summary>
    Task BumpTokenVersionAsync(Guid id, CancellationToken cancellationToken = default);

    /// <summary>Remembers a refresh token that may be exchanged once (and drops the user's expired ones).</summary>
    Task AddRefreshTokenAsync(string tokenId, Guid userId, long expiresTime, long now, CancellationToken cancellationToken = default);

    /// <summary>Uses up a refresh token: true for the one caller that removes it, false when it was already used or revoked.</summary>
    Task<bool> ConsumeRefreshTokenAsync(string tokenId, Guid userId, CancellationToken cancellationToken = default);

    Task<bool> AnySysAdminAsync(CancellationToken cancellationToken = default);

    /// <summary>The user's additional info (a JSON object, ThingsBoard's <c>additionalInfo</c>), or null.</summary>
    Task<string?> GetUserAdditionalInfoAsync(Guid id, CancellationToken cancellationToken = default);

    /// <summary>Replaces the user's additional info; false when there is no such user.</summary>
    Task<bool> SetUserAdditionalInfoAsync(Guid id, string? json, CancellationToken cancellationToken = default);

    Task CreateApiKeyAsync(Guid id, Guid tenantId, string name, Authority authority, string keyHash, long createdTime, CancellationToken cancellationToken = default);

    Task<Caller?> FindApiKeyAsync(string keyHash, CancellationToken cancellationToken = default);

    /// <summary>The tenant's API keys (never their keys, which are stored only as hashes), by name.</summary>
    Task<Page<ApiKey>> ListApiKeysAsync(Guid tenantId, PageRequest request, CancellationToken cancellationToken = default);

    /// <summary>Removes an API key of the tenant: the next request with it is refused. False when there is none.</summary>
    Task<bool> DeleteApiKeyAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default);

    Task<string?> GetSettingAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Stores the setting unless one exists; returns the value that is kept.</summary>
    Task<string> GetOrAddSettingAsync(string name, string value, CancellationToken cancellationToken = default);
}

/// <summary>The SQL implementation, for SQLite and PostgreSQL alike.</summary>
/// <param name="devicesFound">Devices kept by their credentials: a tenant deleted takes its devices with it.</param>
public sealed class SqlTenantStore(PlatformDatabase database, Devices.DeviceCredentialsCache? devicesFound = null) : ITenantStore
{
    private const string UserColumns = "id, tenant_id, email, authority, first_name, last_name, created_time, password_hash, token_version, failed_logins, locked_until";

    public async Task CreateTenantAsync(Tenant tenant, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO tenants (id, title, created_time, ttl_days) VALUES (@id, @title, @created, @ttl)";
        command.AddParameter("id", tenant.Id.ToString());
        command.AddParameter("title", tenant.Title);
        command.AddParameter("created", tenant.CreatedTime);
        command.AddParameter("ttl", tenant.TtlDays);
        await Sql.ExecuteUniqueAsync(command, $"A tenant named '{tenant.Title}' already exists.", cancellationToken);
    }

    public async Task<bool> UpdateTenantAsync(Tenant tenant, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE tenants SET title = @title, ttl_days = @ttl WHERE id = @id";
        command.AddParameter("id", tenant.Id.ToString());
        command.AddParameter("title", tenant.Title);
        command.AddParameter("ttl", tenant.TtlDays);
        return await Sql.ExecuteUniqueAsync(command, $"A tenant named '{tenant.Title}' already exists.", cancellationToken) > 0;
    }

    public async Task<Tenant?> GetTenantAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, title, created_time, ttl_days FROM tenants WHERE id = @id";
        command.AddParameter("id", id.ToString());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadTenant(reader) : null;
    }

    public Task<Page<Tenant>> ListTenantsAsync(PageRequest request, CancellationToken cancellationToken = default)
    {
        var where = request.LikePattern is null ? "" : " WHERE lower(title) LIKE @q ESCAPE '\\'";
        var order = request.SortProperty == "createdTime" ? "created_time" : "title";
        return database.QueryPageAsync("id, title, created_time, ttl_days", "tenants", where, $"{order} {(request.Descending ? "DESC" : "ASC")}, id",
            request, _ => { }, ReadTenant, cancellationToken);
    }

    public async Task<bool> DeleteTenantAsync(Guid id, CancellationToken cancellationToken = default)
    {
        try
        {
            return await DeleteTenantCoreAsync(id, cancellationToken);
        }
        finally
        {
            devicesFound?.Clear();
        }
    }

    private async Task<bool> DeleteTenantCoreAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        // Telemetry and attributes are keyed by device number, not by a foreign key: delete them first.
        command.CommandText = """
            DELETE FROM ts_kv WHERE device_seq IN (SELECT seq FROM devices WHERE tenant_id = @id);
            DELETE FROM ts_latest WHERE device_seq IN (SELECT seq FROM devices WHERE tenant_id = @id);
            DELETE FROM ts_rollup_1m WHERE device_seq IN (SELECT seq FROM devices WHERE tenant_id = @id);
            DELETE FROM attributes WHERE device_seq IN (SELECT seq FROM devices WHERE tenant_id = @id);
            DELETE FROM device_credentials WHERE device_id IN (SELECT id FROM devices WHERE tenant_id = @id);
            DELETE FROM devices WHERE tenant_id = @id;
            DELETE FROM device_profiles WHERE tenant_id = @id;
            DELETE FROM refresh_tokens WHERE user_id IN (SELECT id FROM users WHERE tenant_id = @id);
            DELETE FROM users WHERE tenant_id = @id;
            DELETE FROM api_keys WHERE tenant_id = @id;
            DELETE FROM mqtt_users WHERE tenant_id = @id;
            """;
        command.AddParameter("id", id.ToString());
        await command.ExecuteNonQueryAsync(cancellationToken);
        using var delete = connection.CreateCommand();
        delete.Transaction = transaction;
        delete.CommandText = "DELETE FROM tenants WHERE id = @id";
        delete.AddParameter("id", id.ToString());
        var deleted = await delete.ExecuteNonQueryAsync(cancellationToken) > 0;
        await transaction.CommitAsync(cancellationToken);
        return deleted;
    }

    public async Task CreateUserAsync(User user, string? passwordHash, string? activationToken, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO users (id, tenant_id, email, authority, first_name, last_name, password_hash, activation_token, created_time)
            VALUES (@id, @tenant, @email, @authority, @first, @last, @hash, @activation, @created)
            """;
        command.AddParameter("id", user.Id.ToString());
        command.AddParameter("tenant", user.TenantId?.ToString());
        command.AddParameter("email", user.Email.ToLowerInvariant());
        command.AddParameter("authority", User.AuthorityName(user.Authority));
        command.AddParameter("first", user.FirstName);
        command.AddParameter("last", user.LastName);
        command.AddParameter("hash", passwordHash);
        command.AddParameter("activation", activationToken);
        command.AddParameter("created", user.CreatedTime);
        await Sql.ExecuteUniqueAsync(command, "This e-mail address cannot be used for a new user.", cancellationToken);
    }

    public async Task<User?> GetUserAsync(Guid id, Guid? tenantId, bool anyTenant = false, CancellationToken cancellationToken = default)
    {
        var secrets = await QueryUserAsync(anyTenant
            ? "id = @id"
            : tenantId is null ? "id = @id AND tenant_id IS NULL" : "id = @id AND tenant_id = @tenant", id.ToString(), tenantId, cancellationToken);
        return secrets?.User;
    }

    public Task<UserSecrets?> GetUserByEmailAsync(string email, CancellationToken cancellationToken = default) =>
        QueryUserAsync("email = @id", email.ToLowerInvariant(), null, cancellationToken);

    public Task<UserSecrets?> GetUserSecretsAsync(Guid id, CancellationToken cancellationToken = default) =>
        QueryUserAsync("id = @id", id.ToString(), null, cancellationToken);

    public async Task<string?> GetActivationTokenAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT activation_token FROM users WHERE id = @id";
        command.AddParameter("id", id.ToString());
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public async Task<User?> ActivateAsync(string activationToken, string passwordHash, CancellationToken cancellationToken = default)
    {
        // The token is random and looked up by equality: a wrong one finds nothing.
        var secrets = await QueryUserAsync("activation_token = @id", activationToken, null, cancellationToken);
        if (secrets is null)
        {
            return null;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE users SET password_hash = @hash, activation_token = NULL WHERE id = @id AND activation_token = @token";
        command.AddParameter("hash", passwordHash);
        command.AddParameter("id", secrets.User.Id.ToString());
        command.AddParameter("token", activationToken);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 0 ? null : secrets.User with { Activated = true };
    }

    public Task<Page<User>> ListUsersAsync(Guid? tenantId, PageRequest request, CancellationToken cancellationToken = default)
    {
        var where = tenantId is null ? " WHERE tenant_id IS NULL" : " WHERE tenant_id = @tenant";
        if (request.LikePattern is not null)
        {
            where += " AND lower(email) LIKE @q ESCAPE '\\'";
        }

        var order = $"{(request.SortProperty == "createdTime" ? "created_time" : "email")} {(request.Descending ? "DESC" : "ASC")}, id";
        return database.QueryPageAsync($"{UserColumns}, activation_token, additional_info", "users", where, order, request,
            c => c.AddParameter("tenant", tenantId?.ToString()), reader => ReadUser(reader).User, cancellationToken);
    }

    public async Task<bool> DeleteUserAsync(Guid id, Guid? tenantId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = tenantId is null ? "DELETE FROM users WHERE id = @id" : "DELETE FROM users WHERE id = @id AND tenant_id = @tenant";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId?.ToString());
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0)
        {
            return false;
        }

        using var tokens = connection.CreateCommand();
        tokens.CommandText = "DELETE FROM refresh_tokens WHERE user_id = @id";
        tokens.AddParameter("id", id.ToString());
        await tokens.ExecuteNonQueryAsync(cancellationToken);
        return true;
    }

    public async Task RecordLoginAsync(Guid id, int failedLogins, long lockedUntil, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE users SET failed_logins = @failed, locked_until = @locked WHERE id = @id";
        command.AddParameter("id", id.ToString());
        command.AddParameter("failed", failedLogins);
        command.AddParameter("locked", lockedUntil);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task SetPasswordAsync(Guid id, string passwordHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE users SET password_hash = @hash, token_version = token_version + 1 WHERE id = @id";
        command.AddParameter("id", id.ToString());
        command.AddParameter("hash", passwordHash);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task BumpTokenVersionAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE users SET token_version = token_version + 1 WHERE id = @id";
        command.AddParameter("id", id.ToString());
        await command.ExecuteNonQueryAsync(cancellationToken);
        using var tokens = connection.CreateCommand();
        tokens.CommandText = "DELETE FROM refresh_tokens WHERE user_id = @id";
        tokens.AddParameter("id", id.ToString());
        await tokens.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task AddRefreshTokenAsync(string tokenId, Guid userId, long expiresTime, long now, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using (var expired = connection.CreateCommand())
        {
            expired.CommandText = "DELETE FROM refresh_tokens WHERE user_id = @user AND expires_time <= @now";
            expired.AddParameter("user", userId.ToString());
            expired.AddParameter("now", now);
            await expired.ExecuteNonQueryAsync(cancellationToken);
        }

        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO refresh_tokens (jti, user_id, expires_time) VALUES (@jti, @user, @expires)";
        command.AddParameter("jti", tokenId);
        command.AddParameter("user", userId.ToString());
        command.AddParameter("expires", expiresTime);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<bool> ConsumeRefreshTokenAsync(string tokenId, Guid userId, CancellationToken cancellationToken = default)
    {
        // One statement: of two exchanges racing, exactly one deletes the row.
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM refresh_tokens WHERE jti = @jti AND user_id = @user";
        command.AddParameter("jti", tokenId);
        command.AddParameter("user", userId.ToString());
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<bool> AnySysAdminAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM users WHERE authority = 'SYS_ADMIN'";
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture) > 0;
    }

    public async Task<string?> GetUserAdditionalInfoAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT additional_info FROM users WHERE id = @id";
        command.AddParameter("id", id.ToString());
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public async Task<bool> SetUserAdditionalInfoAsync(Guid id, string? json, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE users SET additional_info = @info WHERE id = @id";
        command.AddParameter("id", id.ToString());
        command.AddParameter("info", json);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task CreateApiKeyAsync(Guid id, Guid tenantId, string name, Authority authority, string keyHash, long createdTime, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO api_keys (id, tenant_id, name, authority, key_hash, created_time) VALUES (@id, @tenant, @name, @authority, @hash, @created)";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        command.AddParameter("name", name);
        command.AddParameter("authority", User.AuthorityName(authority));
        command.AddParameter("hash", keyHash);
        command.AddParameter("created", createdTime);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<Caller?> FindApiKeyAsync(string keyHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, tenant_id, authority, name FROM api_keys WHERE key_hash = @hash";
        command.AddParameter("hash", keyHash);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken) || !User.TryParseAuthority(reader.GetString(2), out var authority))
        {
            return null;
        }

        return new Caller(Guid.Parse(reader.GetString(0)), Guid.Parse(reader.GetString(1)), authority, "api key " + reader.GetString(3));
    }

    public Task<Page<ApiKey>> ListApiKeysAsync(Guid tenantId, PageRequest request, CancellationToken cancellationToken = default)
    {
        var where = " WHERE tenant_id = @tenant";
        if (request.LikePattern is not null)
        {
            where += " AND lower(name) LIKE @q ESCAPE '\\'";
        }

        var order = $"{(request.SortProperty == "createdTime" ? "created_time" : "name")} {(request.Descending ? "DESC" : "ASC")}, id";
        return database.QueryPageAsync("id, tenant_id, name, authority, created_time", "api_keys", where, order, request,
            c => c.AddParameter("tenant", tenantId.ToString()), reader =>
            {
                _ = User.TryParseAuthority(reader.GetString(3), out var authority);
                return new ApiKey(Guid.Parse(reader.GetString(0)), Guid.Parse(reader.GetString(1)), reader.GetString(2), authority, reader.GetInt64(4));
            }, cancellationToken);
    }

    public async Task<bool> DeleteApiKeyAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM api_keys WHERE id = @id AND tenant_id = @tenant";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<string?> GetSettingAsync(string name, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT value FROM settings WHERE name = @name";
        command.AddParameter("name", name);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public async Task<string> GetOrAddSettingAsync(string name, string value, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using (var insert = connection.CreateCommand())
        {
            insert.CommandText = "INSERT INTO settings (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING";
            insert.AddParameter("name", name);
            insert.AddParameter("value", value);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT value FROM settings WHERE name = @name";
        command.AddParameter("name", name);
        return (string)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private Task<UserSecrets?> QueryUserAsync(string where, string id, Guid? tenantId, CancellationToken cancellationToken) =>
        database.QuerySingleAsync($"SELECT {UserColumns}, activation_token, additional_info FROM users WHERE {where}", command =>
        {
            command.AddParameter("id", id);
            command.AddParameter("tenant", tenantId?.ToString());
        }, ReadUser, cancellationToken);

    private static UserSecrets ReadUser(DbDataReader reader)
    {
        _ = User.TryParseAuthority(reader.GetString(3), out var authority);
        var tenant = reader.GetNullableString(1);
        var user = new User(Guid.Parse(reader.GetString(0)), tenant is null ? null : Guid.Parse(tenant), reader.GetString(2), authority,
            reader.GetNullableString(4), reader.GetNullableString(5), reader.GetInt64(6), reader.IsDBNull(11))
        {
            Preferences = UserPreferences.FromAdditionalInfo(reader.GetNullableString(12)),
        };
        return new UserSecrets(user, reader.GetNullableString(7), Sql.GetInt(reader, 8), Sql.GetInt(reader, 9), reader.GetInt64(10));
    }

    private static Tenant ReadTenant(DbDataReader reader) =>
        new(Guid.Parse(reader.GetString(0)), reader.GetString(1), reader.GetInt64(2), reader.IsDBNull(3) ? null : Sql.GetInt(reader, 3));
}
