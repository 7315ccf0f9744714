using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Taihu.Platform.Audit;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Alarms;

/// <summary>
/// Alarms, SQL for SQLite and PostgreSQL alike (migration 9). Every query takes the tenant. The table's partial
/// unique index allows one alarm not cleared per originator and type; <see cref="InsertAsync"/> reports a clash
/// instead of throwing, so a writer that lost a race takes the existing alarm.
/// </summary>
public interface IAlarmStore
{
    /// <summary>
    /// Stores a new alarm, and <paramref name="audit"/> with it in one transaction; false when an active alarm of that
    /// originator and type exists already. A 404 problem when the originator device is gone. Changes of several
    /// devices that come together may share the transaction (<see cref="AlarmWriter"/>); each succeeds or fails alone.
    /// </summary>
    Task<bool> InsertAsync(Alarm alarm, AuditRecord? audit = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes every field of an existing alarm if its row is still at <see cref="Alarm.Version"/>, and moves the
    /// version on, with <paramref name="audit"/> in the same transaction; false when the alarm is gone or was changed
    /// since it was read.
    /// </summary>
    Task<bool> UpdateAsync(Alarm alarm, AuditRecord? audit = null, CancellationToken cancellationToken = default);

    Task<Alarm?> GetAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    Task<AlarmInfo?> GetInfoAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    /// <summary>The alarm of that originator and type that is not cleared, if any.</summary>
    Task<Alarm?> GetActiveAsync(Guid tenantId, Guid originatorId, string type, CancellationToken cancellationToken = default);

    Task<bool> DeleteAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    Task<Page<AlarmInfo>> QueryAsync(Guid tenantId, AlarmQuery query, CancellationToken cancellationToken = default);

    /// <summary>How many alarms pass the query's filters (its paging is ignored).</summary>
    Task<long> CountAsync(Guid tenantId, AlarmQuery query, CancellationToken cancellationToken = default);

    /// <summary>The highest severity among the alarms that pass the query's filters, or null for none.</summary>
    Task<AlarmSeverity?> HighestSeverityAsync(Guid tenantId, AlarmQuery query, CancellationToken cancellationToken = default);
}

public sealed class SqlAlarmStore(PlatformDatabase database, Events.EventSignal? signal = null) : IAlarmStore
{
    private const string Columns = "a.id, a.tenant_id, a.originator_id, a.type, a.severity, a.acknowledged, a.cleared, a.start_ts, a.end_ts, a.ack_ts, a.clear_ts, "
        + "a.assign_ts, a.assignee_id, a.details, a.propagate, a.propagate_to_owner, a.propagate_to_tenant, a.propagate_relation_types, a.created_time, a.version";

    private const string InfoColumns = Columns + ", d.name, d.label, u.email, u.first_name, u.last_name";

    private const string InfoFrom = "alarms a JOIN devices d ON d.id = a.originator_id LEFT JOIN users u ON u.id = a.assignee_id";

    private readonly AlarmWriter _writer = new(database, signal);

    // Both go through the batching writer (AlarmWriter): changes that come together share a transaction.
    public Task<bool> InsertAsync(Alarm alarm, AuditRecord? audit = null, CancellationToken cancellationToken = default) => _writer.InsertAsync(alarm, audit);

    public Task<bool> UpdateAsync(Alarm alarm, AuditRecord? audit = null, CancellationToken cancellationToken = default) => _writer.UpdateAsync(alarm, audit);

    public Task<Alarm?> GetAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) =>
        database.QuerySingleAsync($"SELECT {Columns} FROM alarms a WHERE a.id = @id AND a.tenant_id = @tenant", c =>
        {
            c.AddParameter("id", id.ToString());
            c.AddParameter("tenant", tenantId.ToString());
        }, Read, cancellationToken);

    public Task<AlarmInfo?> GetInfoAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) =>
        database.QuerySingleAsync($"SELECT {InfoColumns} FROM {InfoFrom} WHERE a.id = @id AND a.tenant_id = @tenant", c =>
        {
            c.AddParameter("id", id.ToString());
            c.AddParameter("tenant", tenantId.ToString());
        }, ReadInfo, cancellationToken);

    public Task<Alarm?> GetActiveAsync(Guid tenantId, Guid originatorId, string type, CancellationToken cancellationToken = default) =>
        database.QuerySingleAsync($"SELECT {Columns} FROM alarms a WHERE a.tenant_id = @tenant AND a.originator_id = @originator AND a.type = @type AND NOT a.cleared", c =>
        {
            c.AddParameter("tenant", tenantId.ToString());
            c.AddParameter("originator", originatorId.ToString());
            c.AddParameter("type", type);
        }, Read, cancellationToken);

    public async Task<bool> DeleteAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM alarms WHERE id = @id AND tenant_id = @tenant";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public Task<Page<AlarmInfo>> QueryAsync(Guid tenantId, AlarmQuery query, CancellationToken cancellationToken = default)
    {
        var where = Where(query, search: true);
        // Newest first unless asked otherwise, as ThingsBoard lists alarms; seq keeps alarms of one millisecond in order.
        var direction = query.Page.SortProperty is null || query.Page.Descending ? "DESC" : "ASC";
        var column = query.Page.SortProperty switch
        {
            "startTs" => "a.start_ts",
            "endTs" => "a.end_ts",
            "ackTs" => "a.ack_ts",
            "clearTs" => "a.clear_ts",
            "assignTs" => "a.assign_ts",
            "type" => "a.type",
            // Stored most severe first (CRITICAL = 0): "severity DESC" puts CRITICAL first, as ThingsBoard does.
            "severity" => "a.severity",
            "originatorName" or "originator" => "d.name",
            _ => "a.created_time",
        };
        var columnDirection = column == "a.severity" ? (direction == "DESC" ? "ASC" : "DESC") : direction;
        return database.QueryPageAsync(InfoColumns, InfoFrom, where, $"{column} {columnDirection}, a.seq {direction}", query.Page,
            c => BindFilter(c, tenantId, query), ReadInfo, cancellationToken);
    }

    public async Task<long> CountAsync(Guid tenantId, AlarmQuery query, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        return await Sql.CountAsync(connection, $"SELECT COUNT(*) FROM {InfoFrom}{Where(query, search: true)}", query.Page,
            c => BindFilter(c, tenantId, query), cancellationToken);
    }

    public async Task<AlarmSeverity?> HighestSeverityAsync(Guid tenantId, AlarmQuery query, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT MIN(a.severity) FROM {InfoFrom}{Where(query, search: false)}";
        BindFilter(command, tenantId, query);
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is null or DBNull ? null : (AlarmSeverity)Convert.ToInt32(value, CultureInfo.InvariantCulture);
    }

    private static string Where(AlarmQuery query, bool search)
    {
        var where = new StringBuilder(" WHERE a.tenant_id = @tenant");
        if (query.OriginatorId is not null)
        {
            where.Append(" AND a.originator_id = @originator");
        }

        if (query.Status.Cleared is not null)
        {
            where.Append(" AND a.cleared = @cleared");
        }

        if (query.Status.Acknowledged is not null)
        {
            where.Append(" AND a.acknowledged = @acknowledged");
        }

        if (query.AssigneeId is not null)
        {
            where.Append(" AND a.assignee_id = @assignee");
        }

        if (query.StartTime is not null)
        {
            where.Append(" AND a.created_time >= @startTime");
        }

        if (query.EndTime is not null)
        {
            where.Append(" AND a.created_time <= @endTime");
        }

        if (query.Severities is { Count: > 0 } severities)
        {
            where.Append(" AND a.severity IN (");
            for (var i = 0; i < severities.Count; i++)
            {
                where.Append(i == 0 ? "@s" : ", @s").Append(i.ToString(CultureInfo.InvariantCulture));
            }

            where.Append(')');
        }

        if (query.Types is { Count: > 0 } types)
        {
            where.Append(" AND a.type IN (");
            for (var i = 0; i < types.Count; i++)
            {
                where.Append(i == 0 ? "@t" : ", @t").Append(i.ToString(CultureInfo.InvariantCulture));
            }

            where.Append(')');
        }

        if (search && query.Page.LikePattern is not null)
        {
            where.Append(" AND (lower(a.type) LIKE @q ESCAPE '\\' OR lower(d.name) LIKE @q ESCAPE '\\' OR lower(")
                .Append(SeverityNameSql).Append(") LIKE @q ESCAPE '\\')");
        }

        return where.ToString();
    }

    private const string SeverityNameSql = "CASE a.severity WHEN 0 THEN 'CRITICAL' WHEN 1 THEN 'MAJOR' WHEN 2 THEN 'MINOR' WHEN 3 THEN 'WARNING' ELSE 'INDETERMINATE' END";

    private static void BindFilter(DbCommand command, Guid tenantId, AlarmQuery query)
    {
        command.AddParameter("tenant", tenantId.ToString());
        if (query.OriginatorId is { } originator)
        {
            command.AddParameter("originator", originator.ToString());
        }

        if (query.Status.Cleared is { } cleared)
        {
            command.AddParameter("cleared", cleared);
        }

        if (query.Status.Acknowledged is { } acknowledged)
        {
            command.AddParameter("acknowledged", acknowledged);
        }

        if (query.AssigneeId is { } assignee)
        {
            command.AddParameter("assignee", assignee.ToString());
        }

        if (query.StartTime is { } start)
        {
            command.AddParameter("startTime", start);
        }

        if (query.EndTime is { } end)
        {
            command.AddParameter("endTime", end);
        }

        if (query.Severities is { Count: > 0 } severities)
        {
            var i = 0;
            foreach (var severity in severities)
            {
                command.AddParameter("s" + i++.ToString(CultureInfo.InvariantCulture), (long)severity);
            }
        }

        if (query.Types is { Count: > 0 } types)
        {
            var i = 0;
            foreach (var type in types)
            {
                command.AddParameter("t" + i++.ToString(CultureInfo.InvariantCulture), type);
            }
        }
    }

    private static Alarm Read(DbDataReader r) => new(
        Guid.Parse(r.GetString(0)), Guid.Parse(r.GetString(1)), Guid.Parse(r.GetString(2)), r.GetString(3), (AlarmSeverity)Sql.GetInt(r, 4),
        Sql.GetBool(r, 5), Sql.GetBool(r, 6), Sql.GetInt64(r, 7), Sql.GetInt64(r, 8), Sql.GetInt64(r, 9), Sql.GetInt64(r, 10), Sql.GetInt64(r, 11),
        r.IsDBNull(12) ? null : Guid.Parse(r.GetString(12)), r.GetString(13), Sql.GetBool(r, 14), Sql.GetBool(r, 15), Sql.GetBool(r, 16),
        JsonSerializer.Deserialize(r.GetString(17), AlarmJsonContext.Default.StringArray) ?? [], Sql.GetInt64(r, 18)) { Version = Sql.GetInt64(r, 19) };

    private static AlarmInfo ReadInfo(DbDataReader r)
    {
        var alarm = Read(r);
        var assignee = alarm.AssigneeId is { } id && !r.IsDBNull(22)
            ? new AlarmAssignee(id, r.GetNullableString(23), r.GetNullableString(24), r.GetString(22))
            : null;
        return new AlarmInfo(alarm, r.GetString(20), r.GetNullableString(21), assignee);
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string[]))]
internal sealed partial class AlarmJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
