using System.Data.Common;
using Taihu.Platform.Storage;

namespace Taihu.Platform.BrokerUsers;

/// <summary>
/// A broker user of a tenant (managed through the API): it connects with its user name and password into the
/// tenant's namespace and has the rights of its rules there (never <c>$</c> topics, so never a device's).
/// </summary>
public sealed record TenantBrokerUser(Guid Id, Guid TenantId, string UserName, IReadOnlyList<TopicRule> Rules, long CreatedTime)
{
    /// <summary>Rules as stored: one <c>access filter</c> a line, as in an ACL file.</summary>
    public static string FormatRules(IReadOnlyList<TopicRule> rules) =>
        string.Join('\n', rules.Select(r => $"{AccessName(r.Rights)} {r.Filter}"));

    public static IReadOnlyList<TopicRule> ParseRules(string text) =>
        text.Length == 0 ? [] : [.. text.Split('\n').Select(line =>
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            return new TopicRule(ParseAccess(line[..space]) ?? TopicRights.Deny, line[(space + 1)..]);
        })];

    public static string AccessName(TopicRights rights) => rights switch
    {
        TopicRights.Read => "read",
        TopicRights.Write => "write",
        TopicRights.ReadWrite => "readwrite",
        _ => "deny",
    };

    public static TopicRights? ParseAccess(string? name) => name switch
    {
        "read" => TopicRights.Read,
        "write" => TopicRights.Write,
        "readwrite" => TopicRights.ReadWrite,
        "deny" => TopicRights.Deny,
        _ => null,
    };
}

/// <summary>Tenants' broker users.</summary>
public interface ITenantBrokerUserStore
{
    Task CreateAsync(TenantBrokerUser user, string passwordHash, CancellationToken cancellationToken = default);

    /// <summary>Replaces the rules, and the password hash when one is given; false when the user is not in the tenant.</summary>
    Task<bool> UpdateAsync(Guid id, Guid tenantId, IReadOnlyList<TopicRule> rules, string? passwordHash, CancellationToken cancellationToken = default);

    Task<TenantBrokerUser?> GetAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<TenantBrokerUser>> ListAsync(Guid tenantId, CancellationToken cancellationToken = default);

    Task<bool> DeleteAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default);

    /// <summary>The user with this name in any tenant, with its password hash (the CONNECT path).</summary>
    Task<(TenantBrokerUser User, string PasswordHash)?> FindByUserNameAsync(string userName, CancellationToken cancellationToken = default);
}

/// <summary>The SQL implementation, for SQLite and PostgreSQL alike.</summary>
public sealed class SqlTenantBrokerUserStore(PlatformDatabase database) : ITenantBrokerUserStore
{
    private const string Columns = "id, tenant_id, user_name, rules, created_time, password_hash";

    /// <summary>The same answer whoever holds the name, as for device credentials: a clash must not say who.</summary>
    public const string Conflict = "These credentials cannot be used; choose other ones.";

    public async Task CreateAsync(TenantBrokerUser user, string passwordHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO mqtt_users (id, tenant_id, user_name, password_hash, rules, created_time)
            VALUES (@id, @tenant, @name, @hash, @rules, @created)
            """;
        command.AddParameter("id", user.Id.ToString());
        command.AddParameter("tenant", user.TenantId.ToString());
        command.AddParameter("name", user.UserName);
        command.AddParameter("hash", passwordHash);
        command.AddParameter("rules", TenantBrokerUser.FormatRules(user.Rules));
        command.AddParameter("created", user.CreatedTime);
        await Sql.ExecuteUniqueAsync(command, Conflict, cancellationToken);
    }

    public async Task<bool> UpdateAsync(Guid id, Guid tenantId, IReadOnlyList<TopicRule> rules, string? passwordHash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE mqtt_users SET rules = @rules, password_hash = COALESCE(@hash, password_hash) WHERE id = @id AND tenant_id = @tenant";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        command.AddParameter("rules", TenantBrokerUser.FormatRules(rules));
        command.AddParameter("hash", passwordHash);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<TenantBrokerUser?> GetAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM mqtt_users WHERE id = @id AND tenant_id = @tenant";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    public async Task<IReadOnlyList<TenantBrokerUser>> ListAsync(Guid tenantId, CancellationToken cancellationToken = default) =>
        await database.QueryListAsync($"SELECT {Columns} FROM mqtt_users WHERE tenant_id = @tenant ORDER BY user_name",
            c => c.AddParameter("tenant", tenantId.ToString()), Read, cancellationToken);

    public async Task<bool> DeleteAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default) =>
        await database.ExecuteAsync("DELETE FROM mqtt_users WHERE id = @id AND tenant_id = @tenant", c =>
        {
            c.AddParameter("id", id.ToString());
            c.AddParameter("tenant", tenantId.ToString());
        }, cancellationToken) > 0;

    public async Task<(TenantBrokerUser User, string PasswordHash)?> FindByUserNameAsync(string userName, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM mqtt_users WHERE user_name = @name";
        command.AddParameter("name", userName);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (Read(reader), reader.GetString(5)) : null;
    }

    private static TenantBrokerUser Read(DbDataReader reader) =>
        new(Guid.Parse(reader.GetString(0)), Guid.Parse(reader.GetString(1)), reader.GetString(2), TenantBrokerUser.ParseRules(reader.GetString(3)), Sql.GetInt64(reader, 4));
}
