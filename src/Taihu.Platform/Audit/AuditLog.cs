using System.Data.Common;
using System.Globalization;
using Taihu.Platform.Storage;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Audit;

/// <summary>One change made by a user or an API key: who, what, when, on which entity, and how it ended.</summary>
public sealed record AuditEntry(
    Guid Id, Guid? TenantId, Guid? UserId, string? UserName, string ActionType, string? EntityType, string? EntityId,
    string? EntityName, bool Success, string? FailureDetails, long CreatedTime);

/// <summary>The audit trail: written on every change, read with paging, always within one tenant.</summary>
public interface IAuditLog
{
    Task WriteAsync(Caller caller, string actionType, string? entityType, string? entityId, string? entityName, string? failure = null, CancellationToken cancellationToken = default);

    /// <summary>Entries of <paramref name="tenantId"/> (null: the system administrators' own), newest first.</summary>
    Task<Page<AuditEntry>> ListAsync(Guid? tenantId, PageRequest request, long? startTime = null, long? endTime = null, CancellationToken cancellationToken = default);
}

/// <summary>The SQL implementation, for SQLite and PostgreSQL alike.</summary>
public sealed class SqlAuditLog(PlatformDatabase database, TimeProvider time) : IAuditLog
{
    public async Task WriteAsync(Caller caller, string actionType, string? entityType, string? entityId, string? entityName, string? failure = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO audit_log (id, tenant_id, user_id, user_name, action_type, entity_type, entity_id, entity_name, action_status, action_failure_details, created_time)
            VALUES (@id, @tenant, @user, @name, @action, @etype, @eid, @ename, @status, @failure, @created)
            """;
        command.AddParameter("id", Guid.CreateVersion7().ToString());
        command.AddParameter("tenant", caller.TenantId?.ToString());
        command.AddParameter("user", caller.UserId.ToString());
        command.AddParameter("name", caller.Name);
        command.AddParameter("action", actionType);
        command.AddParameter("etype", entityType);
        command.AddParameter("eid", entityId);
        command.AddParameter("ename", entityName);
        command.AddParameter("status", failure is null ? "SUCCESS" : "FAILURE");
        command.AddParameter("failure", failure);
        command.AddParameter("created", time.GetUtcNow().ToUnixTimeMilliseconds());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<Page<AuditEntry>> ListAsync(Guid? tenantId, PageRequest request, long? startTime = null, long? endTime = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        var where = (tenantId is null ? " WHERE tenant_id IS NULL" : " WHERE tenant_id = @tenant") + " AND created_time >= @start AND created_time <= @end";
        if (request.LikePattern is not null)
        {
            where += " AND (lower(entity_name) LIKE @q ESCAPE '\\' OR lower(action_type) LIKE @q ESCAPE '\\' OR lower(user_name) LIKE @q ESCAPE '\\')";
        }

        long total;
        using (var count = connection.CreateCommand())
        {
            count.CommandText = "SELECT COUNT(*) FROM audit_log" + where;
            AddFilter(count, tenantId, request, startTime, endTime);
            total = Convert.ToInt64(await count.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
        }

        // Entries of one millisecond keep the order they were written in, whichever way the list runs.
        var direction = request.Descending || request.SortProperty is null ? "DESC" : "ASC";
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT id, tenant_id, user_id, user_name, action_type, entity_type, entity_id, entity_name, action_status, action_failure_details, created_time
            FROM audit_log{where} ORDER BY created_time {direction}, seq {direction} LIMIT @limit OFFSET @offset
            """;
        AddFilter(command, tenantId, request, startTime, endTime);
        command.AddParameter("limit", (long)request.Limit);
        command.AddParameter("offset", request.Offset);
        var list = new List<AuditEntry>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(Read(reader));
        }

        return Page.From(list, total, request);
    }

    private static void AddFilter(DbCommand command, Guid? tenantId, PageRequest request, long? startTime, long? endTime)
    {
        command.AddParameter("tenant", tenantId?.ToString());
        command.AddParameter("start", startTime ?? 0L);
        command.AddParameter("end", endTime ?? long.MaxValue);
        if (request.LikePattern is { } pattern)
        {
            command.AddParameter("q", pattern);
        }
    }

    private static AuditEntry Read(DbDataReader r)
    {
        static Guid? G(string? s) => s is null ? null : Guid.Parse(s);
        return new AuditEntry(Guid.Parse(r.GetString(0)), G(r.GetNullableString(1)), G(r.GetNullableString(2)), r.GetNullableString(3), r.GetString(4),
            r.GetNullableString(5), r.GetNullableString(6), r.GetNullableString(7), r.GetString(8) == "SUCCESS", r.GetNullableString(9), r.GetInt64(10));
    }
}
