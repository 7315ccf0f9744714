using System.Data.Common;
using System.Globalization;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Events;

/// <summary>One row of the event log as read back.</summary>
public readonly record struct EventLogRow(long Position, EventLogKind Kind, byte[] Body, long CreatedTime = 0);

/// <summary>
/// The event log: what rules and integrations must see of every commit, written in the same transaction as the
/// data (the points of a telemetry batch, an attribute change, an alarm change), so that a crash right after a commit
/// loses none of it. Each consumer reads the log from its own durable position (<c>event_cursors</c>); rows every
/// consumer has passed are pruned.
/// </summary>
/// <remarks>
/// Positions are only handed out in commit order if appends do not commit out of order: SQLite has one writer at
/// a time, and on PostgreSQL an append first takes a transaction-scoped advisory lock, held until the commit, so
/// that a reader never sees position 11 committed while 10 is still in flight (and moves past 10 for ever). The
/// append is the last statement of its transaction, to hold that lock briefly.
/// </remarks>
public static class EventLog
{
    /// <summary>The advisory lock of appends on PostgreSQL (the migration's is 7243190).</summary>
    private const long AppendLock = 7243191;

    /// <summary>Appends a row in the caller's transaction and returns its position.</summary>
    public static async Task<long> AppendAsync(PlatformDatabase database, DbConnection connection, DbTransaction transaction, EventLogKind kind, byte[] body,
        long createdTime, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentNullException.ThrowIfNull(connection);
        if (database.Provider == StorageProvider.PostgreSql)
        {
            using var lockCommand = connection.CreateCommand();
            lockCommand.Transaction = transaction;
            lockCommand.CommandText = $"SELECT pg_advisory_xact_lock({AppendLock})";
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }

        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "INSERT INTO event_log (kind, created_time, body) VALUES (@k, @t, @b) RETURNING seq";
        command.AddParameter("k", (int)kind);
        command.AddParameter("t", createdTime);
        command.AddParameter("b", body);
        var position = await command.ExecuteScalarAsync(cancellationToken);
        return Convert.ToInt64(position, CultureInfo.InvariantCulture);
    }

    /// <summary>Rows after <paramref name="after"/>, in order, at most <paramref name="limit"/>.</summary>
    public static async Task<IReadOnlyList<EventLogRow>> ReadAsync(PlatformDatabase database, long after, int limit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(database);
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT seq, kind, body, created_time FROM event_log WHERE seq > @after ORDER BY seq LIMIT @limit";
        command.AddParameter("after", after);
        command.AddParameter("limit", limit);
        var rows = new List<EventLogRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new EventLogRow(Sql.GetInt64(reader, 0), (EventLogKind)Sql.GetInt(reader, 1), (byte[])reader.GetValue(2), Sql.GetInt64(reader, 3)));
        }

        return rows;
    }

    /// <summary>The newest position, or 0 when the log is empty.</summary>
    public static async Task<long> LastPositionAsync(PlatformDatabase database, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(database);
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT MAX(seq) FROM event_log";
        var found = await command.ExecuteScalarAsync(cancellationToken);
        return found is null or DBNull ? 0 : Convert.ToInt64(found, CultureInfo.InvariantCulture);
    }

    /// <summary>A consumer's durable position, or null when it has none yet.</summary>
    public static async Task<long?> LoadCursorAsync(PlatformDatabase database, string consumer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(database);
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT position FROM event_cursors WHERE consumer = @c";
        command.AddParameter("c", consumer);
        var found = await command.ExecuteScalarAsync(cancellationToken);
        return found is null or DBNull ? null : Convert.ToInt64(found, CultureInfo.InvariantCulture);
    }

    /// <summary>Records a consumer's position in the caller's transaction (with what the consumer did with the events).</summary>
    public static async Task SaveCursorAsync(DbConnection connection, DbTransaction? transaction, string consumer, long position, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO event_cursors (consumer, position) VALUES (@c, @p)
            ON CONFLICT (consumer) DO UPDATE SET position = excluded.position
            """;
        command.AddParameter("c", consumer);
        command.AddParameter("p", position);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Rows deleted per transaction when pruning.</summary>
    private const int PruneRowsPerTransaction = 16;

    /// <summary>
    /// Deletes the rows every one of <paramref name="consumers"/> has passed (none while one of them has no position
    /// yet). The newest row is always kept, so that SQLite never hands out a position again. The rows go a few at a
    /// time, each few in a transaction of its own taken in its write turn: a row holds a whole batch of telemetry, and
    /// one DELETE of every row passed held SQLite's write lock for up to a second under load, while ingest and the
    /// alarm writer slept in SQLite's busy handler (issue 12).
    /// </summary>
    public static async Task<int> PruneAsync(PlatformDatabase database, IReadOnlyCollection<string> consumers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentNullException.ThrowIfNull(consumers);
        if (consumers.Count == 0)
        {
            return 0;
        }

        long? oldest = null;
        foreach (var consumer in consumers)
        {
            var position = await LoadCursorAsync(database, consumer, cancellationToken);
            if (position is null)
            {
                return 0;
            }

            oldest = oldest is null ? position : Math.Min(oldest.Value, position.Value);
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            DELETE FROM event_log WHERE seq < @p AND seq < (SELECT MAX(seq) FROM event_log)
                AND seq < (SELECT MIN(seq) FROM event_log) + {PruneRowsPerTransaction}
            """;
        command.AddParameter("p", oldest!.Value);
        var total = 0;
        while (true)
        {
            int deleted;
            var stage = System.Diagnostics.Stopwatch.GetTimestamp();
            using (await database.TakeWriteTurnAsync(cancellationToken))
            {
                deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            }

            StageTimings.Since("prune", stage);
            StageTimings.Record("prune.rows", deleted);
            if (deleted == 0)
            {
                return total;
            }

            total += deleted;
        }
    }
}
