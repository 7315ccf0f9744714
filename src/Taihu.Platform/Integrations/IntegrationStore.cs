using System.Data.Common;
using System.Globalization;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Integrations;

/// <summary>An event waiting in an integration's outbox, with its delivery attempts so far.</summary>
public sealed record OutboxRow(long Seq, Guid IntegrationId, string DeviceId, string DeviceName, string DeviceType, string EventType, byte[] Body,
    long CreatedTime, int Attempts, long FirstAttempt, long NextAttempt, int LastStatus, string? LastError);

/// <summary>An event given up on: the reason, the attempts, the last HTTP status (0 when none).</summary>
public sealed record DeadLetter(Guid Id, Guid IntegrationId, string DeviceId, string DeviceName, string EventType, byte[] Body, long CreatedTime,
    string Reason, int Attempts, int LastStatus, long DeadTime);

/// <summary>What the outbox and the dead letters of one integration hold now.</summary>
public sealed record OutboxStats(long OutboxSize, long Retrying, long Dead, long? OldestCreatedTime, string? LastError);

/// <summary>Integrations, their outbox and their dead letters, on SQLite and PostgreSQL alike.</summary>
public sealed class SqlIntegrationStore(PlatformDatabase database)
{
    public const string NameConflict = "An integration of this tenant already has this name.";
    private const string Columns = "id, tenant_id, name, type, enabled, configuration, created_time";
    private const string OutboxColumns = "seq, integration_id, device_id, device_name, device_type, event_type, body, created_time, attempts, first_attempt, next_attempt, last_status, last_error";
    private const string DeadColumns = "id, integration_id, device_id, device_name, event_type, body, created_time, reason, attempts, last_status, dead_time";

    public PlatformDatabase Database => database;

    public async Task CreateAsync(Integration integration, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(integration);
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO integrations (id, tenant_id, name, type, enabled, configuration, created_time) VALUES (@id, @tenant, @name, @type, @enabled, @conf, @created)";
        Bind(command, integration);
        command.AddParameter("created", integration.CreatedTime);
        await Sql.ExecuteUniqueAsync(command, NameConflict, cancellationToken);
    }

    /// <summary>Replaces name, type, enabled and configuration; false when it is not the tenant's.</summary>
    public async Task<bool> UpdateAsync(Integration integration, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(integration);
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE integrations SET name = @name, type = @type, enabled = @enabled, configuration = @conf WHERE id = @id AND tenant_id = @tenant";
        Bind(command, integration);
        return await Sql.ExecuteUniqueAsync(command, NameConflict, cancellationToken) > 0;
    }

    public Task<Integration?> GetAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default) =>
        database.QuerySingleAsync($"SELECT {Columns} FROM integrations WHERE id = @id AND tenant_id = @tenant", c =>
        {
            c.AddParameter("id", id.ToString());
            c.AddParameter("tenant", tenantId.ToString());
        }, Read, cancellationToken);

    public Task<Page<Integration>> ListAsync(Guid tenantId, PageRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var where = " WHERE tenant_id = @tenant" + (request.LikePattern is null ? "" : " AND LOWER(name) LIKE @q ESCAPE '\\'");
        var order = request.SortProperty switch
        {
            "createdTime" => "created_time",
            "type" => "type",
            _ => "name",
        } + (request.Descending ? " DESC" : "") + ", id";
        return database.QueryPageAsync(Columns, "integrations", where, order, request, c => c.AddParameter("tenant", tenantId.ToString()), Read, cancellationToken);
    }

    /// <summary>Every integration of every tenant (the consumer's and the delivery's view).</summary>
    public async Task<IReadOnlyList<Integration>> ListAllAsync(CancellationToken cancellationToken = default) =>
        await database.QueryListAsync($"SELECT {Columns} FROM integrations ORDER BY created_time, id", static _ => { }, Read, cancellationToken);

    public async Task<bool> DeleteAsync(Guid id, Guid tenantId, CancellationToken cancellationToken = default) =>
        await database.ExecuteAsync("DELETE FROM integrations WHERE id = @id AND tenant_id = @tenant", c =>
        {
            c.AddParameter("id", id.ToString());
            c.AddParameter("tenant", tenantId.ToString());
        }, cancellationToken) > 0;

    /// <summary>The outbox size of every integration.</summary>
    public async Task<Dictionary<Guid, long>> CountOutboxesAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT integration_id, COUNT(*) FROM integration_outbox GROUP BY integration_id";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var counts = new Dictionary<Guid, long>();
        while (await reader.ReadAsync(cancellationToken))
        {
            counts[Guid.Parse(reader.GetString(0))] = Sql.GetInt64(reader, 1);
        }

        return counts;
    }

    /// <summary>A command inserting an outbox row, to be reused for a whole batch in the caller's transaction.</summary>
    public static DbCommand PrepareOutboxInsert(DbConnection connection, DbTransaction transaction)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO integration_outbox (integration_id, device_id, device_name, device_type, event_type, body, created_time, attempts, first_attempt, next_attempt, last_status, last_error)
            VALUES (@i, @d, @dn, @dt, @e, @b, @c, 0, 0, 0, 0, NULL)
            """;
        foreach (var name in (string[])["i", "d", "dn", "dt", "e", "b", "c"])
        {
            command.AddParameter(name, null);
        }

        return command;
    }

    /// <summary>A command inserting a dead letter (same parameters as the outbox insert, plus reason and time).</summary>
    public static DbCommand PrepareDeadLetterInsert(DbConnection connection, DbTransaction? transaction)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO integration_dead_letters (id, integration_id, device_id, device_name, device_type, event_type, body, created_time, reason, attempts, last_status, dead_time)
            VALUES (@id, @i, @d, @dn, @dt, @e, @b, @c, @r, @a, @s, @t)
            """;
        foreach (var name in (string[])["id", "i", "d", "dn", "dt", "e", "b", "c", "r", "a", "s", "t"])
        {
            command.AddParameter(name, null);
        }

        return command;
    }

    public static void SetRow(DbCommand command, Guid integrationId, string deviceId, string deviceName, string deviceType, string eventType, byte[] body, long createdTime)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Parameters["@i"].Value = integrationId.ToString();
        command.Parameters["@d"].Value = deviceId;
        command.Parameters["@dn"].Value = deviceName;
        command.Parameters["@dt"].Value = deviceType;
        command.Parameters["@e"].Value = eventType;
        command.Parameters["@b"].Value = body;
        command.Parameters["@c"].Value = createdTime;
    }

    public static void SetDead(DbCommand command, string reason, int attempts, int lastStatus, long deadTime)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Parameters["@id"].Value = Guid.NewGuid().ToString();
        command.Parameters["@r"].Value = reason;
        command.Parameters["@a"].Value = attempts;
        command.Parameters["@s"].Value = lastStatus;
        command.Parameters["@t"].Value = deadTime;
    }

    /// <summary>
    /// The first waiting event of each device (a device's later events wait behind it), soonest due first.
    /// </summary>
    public async Task<IReadOnlyList<OutboxRow>> ReadHeadsAsync(Guid integrationId, int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT {OutboxColumns} FROM integration_outbox
            WHERE seq IN (SELECT MIN(seq) FROM integration_outbox WHERE integration_id = @i GROUP BY device_id)
            ORDER BY next_attempt, seq LIMIT @limit
            """;
        return await ReadOutboxRowsAsync(command, integrationId, limit, cancellationToken);
    }

    /// <summary>
    /// The oldest waiting rows of the integration, in seq order: each device's rows among them are its oldest, so the
    /// first of each is the device's head. Cheap (an index range), unlike <see cref="ReadHeadsAsync"/>.
    /// </summary>
    public async Task<IReadOnlyList<OutboxRow>> ReadOldestAsync(Guid integrationId, int limit, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {OutboxColumns} FROM integration_outbox WHERE integration_id = @i ORDER BY seq LIMIT @limit";
        return await ReadOutboxRowsAsync(command, integrationId, limit, cancellationToken);
    }

    private static async Task<IReadOnlyList<OutboxRow>> ReadOutboxRowsAsync(System.Data.Common.DbCommand command, Guid integrationId, int limit, CancellationToken cancellationToken)
    {
        command.AddParameter("i", integrationId.ToString());
        command.AddParameter("limit", limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<OutboxRow>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(ReadOutbox(reader));
        }

        return rows;
    }

    /// <summary>Deletes delivered rows in one statement and counts them as sent, in one transaction.</summary>
    public async Task DeleteOutboxAsync(Guid integrationId, IReadOnlyList<long> seqs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(seqs);
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            // One parameter holding every seq, not a parameter each: Microsoft.Data.Sqlite binds and checks named
            // parameters by searching the statement's list, so 2,000 of them cost the square (4 million compares a
            // delete), and on the loaded 2-core machine a delete of 2,000 rows took about a second, which held a
            // webhook's catch-up at exactly 2,000 events/s for seconds at a time (docs/benchmarks.md).
            if (database.Provider == StorageProvider.PostgreSql)
            {
                command.CommandText = "DELETE FROM integration_outbox WHERE seq = ANY(@s)";
                command.AddParameter("s", seqs is long[] array ? array : [.. seqs]);
            }
            else
            {
                var list = new System.Text.StringBuilder(2 + (seqs.Count * 8)).Append('[');
                for (var i = 0; i < seqs.Count; i++)
                {
                    list.Append(i == 0 ? "" : ",").Append(Invariant(seqs[i]));
                }

                command.CommandText = "DELETE FROM integration_outbox WHERE seq IN (SELECT value FROM json_each(@s))";
                command.AddParameter("s", list.Append(']').ToString());
            }

            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        await CountAsync(connection, transaction, integrationId, seqs.Count, 0, 0, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Adds to an integration's stored counters (sent, failed attempts, dead-lettered) in the caller's transaction.</summary>
    public static async Task CountAsync(DbConnection connection, DbTransaction transaction, Guid integrationId, long sent, long failed, long dead, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "UPDATE integrations SET sent = sent + @s, failed = failed + @f, dead = dead + @d WHERE id = @i";
        command.AddParameter("s", sent);
        command.AddParameter("f", failed);
        command.AddParameter("d", dead);
        command.AddParameter("i", integrationId.ToString());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Every integration's stored counters: sent, failed attempts, dead-lettered (since it was created).</summary>
    public async Task<Dictionary<Guid, (long Sent, long Failed, long Dead)>> LoadCountersAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, sent, failed, dead FROM integrations";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var counters = new Dictionary<Guid, (long, long, long)>();
        while (await reader.ReadAsync(cancellationToken))
        {
            counters[Guid.Parse(reader.GetString(0))] = (Sql.GetInt64(reader, 1), Sql.GetInt64(reader, 2), Sql.GetInt64(reader, 3));
        }

        return counters;
    }

    /// <summary>Records a failed attempt and when the next one is due, and counts it as failed, in one transaction.</summary>
    public async Task RetryLaterAsync(Guid integrationId, long seq, int attempts, long firstAttempt, long nextAttempt, int lastStatus, string? lastError, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await CountAsync(connection, transaction, integrationId, 0, 1, 0, cancellationToken);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "UPDATE integration_outbox SET attempts = @a, first_attempt = @f, next_attempt = @n, last_status = @s, last_error = @e WHERE seq = @seq";
        command.AddParameter("a", attempts);
        command.AddParameter("f", firstAttempt);
        command.AddParameter("n", nextAttempt);
        command.AddParameter("s", lastStatus);
        command.AddParameter("e", lastError);
        command.AddParameter("seq", seq);
        await command.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// Moves an outbox row to the dead letters and counts it (and its last attempt as failed when
    /// <paramref name="failedAttempt"/>), in one transaction.
    /// </summary>
    public async Task DeadLetterAsync(OutboxRow row, string reason, int attempts, int lastStatus, long deadTime, bool failedAttempt = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(row);
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await CountAsync(connection, transaction, row.IntegrationId, 0, failedAttempt ? 1 : 0, 1, cancellationToken);
        using (var insert = PrepareDeadLetterInsert(connection, transaction))
        {
            SetRow(insert, row.IntegrationId, row.DeviceId, row.DeviceName, row.DeviceType, row.EventType, row.Body, row.CreatedTime);
            SetDead(insert, reason, attempts, lastStatus, deadTime);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }

        using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = "DELETE FROM integration_outbox WHERE seq = @s";
            delete.AddParameter("s", row.Seq);
            await delete.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    public Task<Page<DeadLetter>> ListDeadLettersAsync(Guid integrationId, PageRequest request, CancellationToken cancellationToken = default) =>
        database.QueryPageAsync(DeadColumns, "integration_dead_letters", " WHERE integration_id = @i", "seq", request,
            c => c.AddParameter("i", integrationId.ToString()), ReadDead, cancellationToken);

    /// <summary>
    /// Puts dead letters back at the end of the outbox (one, or all when <paramref name="deadLetterId"/> is null),
    /// with their attempts reset. Returns how many.
    /// </summary>
    public async Task<int> ReplayAsync(Guid integrationId, Guid? deadLetterId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var filter = deadLetterId is null ? "integration_id = @i" : "integration_id = @i AND id = @id";
        int moved;
        using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = $"""
                INSERT INTO integration_outbox (integration_id, device_id, device_name, device_type, event_type, body, created_time, attempts, first_attempt, next_attempt, last_status, last_error)
                SELECT integration_id, device_id, device_name, device_type, event_type, body, created_time, 0, 0, 0, 0, NULL
                FROM integration_dead_letters WHERE {filter} ORDER BY seq
                """;
            insert.AddParameter("i", integrationId.ToString());
            if (deadLetterId is { } one)
            {
                insert.AddParameter("id", one.ToString());
            }

            moved = await insert.ExecuteNonQueryAsync(cancellationToken);
        }

        using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = $"DELETE FROM integration_dead_letters WHERE {filter}";
            delete.AddParameter("i", integrationId.ToString());
            if (deadLetterId is { } one)
            {
                delete.AddParameter("id", one.ToString());
            }

            await delete.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
        return moved;
    }

    public async Task<OutboxStats> StatsAsync(Guid integrationId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT (SELECT COUNT(*) FROM integration_outbox WHERE integration_id = @i),
                   (SELECT COUNT(*) FROM integration_outbox WHERE integration_id = @i AND attempts > 0),
                   (SELECT COUNT(*) FROM integration_dead_letters WHERE integration_id = @i),
                   (SELECT MIN(created_time) FROM integration_outbox WHERE integration_id = @i),
                   (SELECT last_error FROM integration_outbox WHERE integration_id = @i AND attempts > 0 ORDER BY seq LIMIT 1)
            """;
        command.AddParameter("i", integrationId.ToString());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new OutboxStats(Sql.GetInt64(reader, 0), Sql.GetInt64(reader, 1), Sql.GetInt64(reader, 2), reader.IsDBNull(3) ? null : Sql.GetInt64(reader, 3), reader.GetNullableString(4));
    }

    private static void Bind(DbCommand command, Integration integration)
    {
        command.AddParameter("id", integration.Id.ToString());
        command.AddParameter("tenant", integration.TenantId.ToString());
        command.AddParameter("name", integration.Name);
        command.AddParameter("type", Integration.TypeName(integration.Type));
        command.AddParameter("enabled", integration.Enabled);
        command.AddParameter("conf", integration.Configuration.ToJson());
    }

    private static Integration Read(DbDataReader r) => new(Guid.Parse(r.GetString(0)), Guid.Parse(r.GetString(1)), r.GetString(2),
        Integration.ParseType(r.GetString(3)) ?? IntegrationType.Http, Sql.GetBool(r, 4), IntegrationConfiguration.FromJson(r.GetString(5)), Sql.GetInt64(r, 6));

    private static OutboxRow ReadOutbox(DbDataReader r) => new(Sql.GetInt64(r, 0), Guid.Parse(r.GetString(1)), r.GetString(2), r.GetString(3), r.GetString(4),
        r.GetString(5), (byte[])r.GetValue(6), Sql.GetInt64(r, 7), Sql.GetInt(r, 8), Sql.GetInt64(r, 9), Sql.GetInt64(r, 10), Sql.GetInt(r, 11), r.GetNullableString(12));

    private static DeadLetter ReadDead(DbDataReader r) => new(Guid.Parse(r.GetString(0)), Guid.Parse(r.GetString(1)), r.GetString(2), r.GetString(3), r.GetString(4),
        (byte[])r.GetValue(5), Sql.GetInt64(r, 6), r.GetString(7), Sql.GetInt(r, 8), Sql.GetInt(r, 9), Sql.GetInt64(r, 10));

    internal static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
