using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;

namespace Taihu.Platform.Storage;

/// <summary>
/// The platform's database: opens connections of the configured provider and brings the schema up to date on
/// start. Every store takes one of these; nothing else knows which database it is.
/// </summary>
public sealed class PlatformDatabase : IDisposable
{
    public PlatformDatabase(SqlDialect dialect) => Dialect = dialect;

    public SqlDialect Dialect { get; }

    public StorageProvider Provider => Dialect.Provider;

    /// <summary>The database the options name; SQLite files go to <paramref name="dataDirectory"/>.</summary>
    public static PlatformDatabase Create(StorageOptions options, string dataDirectory)
    {
        if (options.Provider == StorageProvider.PostgreSql)
        {
            if (string.IsNullOrWhiteSpace(options.ConnectionString))
            {
                throw new InvalidOperationException("Storage:ConnectionString is required when Storage:Provider is PostgreSql.");
            }

            return new PlatformDatabase(new PostgresDialect(options.ConnectionString));
        }

        var connectionString = options.ConnectionString;
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            PrivateDataDirectory.Ensure(dataDirectory);
            PrivateDataDirectory.CreatePrivateFile(SqliteDialect.FilePath(dataDirectory));
            connectionString = SqliteDialect.FileConnectionString(dataDirectory);
        }

        return new PlatformDatabase(new SqliteDialect(connectionString, options.SqliteDurability));
    }

    /// <summary>
    /// A turn at SQLite's one write lock, handed out in the order asked (a no-op on PostgreSQL, which has no such
    /// lock): taken around a write transaction, after the connection is open and before BEGIN. SQLite's busy
    /// handler, which a writer otherwise waits in, sleeps between tries and is not fair: ingest, which begins its
    /// next batch as soon as the last commits, held an alarm's transaction back for hundreds of milliseconds. With
    /// turns, a writer waits behind at most the transactions that asked before it. Taken by the writers that write
    /// while devices send: ingest's batches, the alarm writer, the rules' state snapshots, the integrations' outbox,
    /// attribute writes (connectivity's every second) and the event log's pruning; a writer that holds SQLite's lock
    /// without a turn makes the one holding the turn sleep in the busy handler, and everyone behind it wait (issue 12).
    /// Other writers (the API's) still meet the busy handler.
    /// </summary>
    public async ValueTask<WriteTurn> TakeWriteTurnAsync(CancellationToken cancellationToken = default)
    {
        if (Provider != StorageProvider.Sqlite)
        {
            return default;
        }

        await _writeTurn.WaitAsync(cancellationToken);
        return new WriteTurn(_writeTurn);
    }

    private readonly SemaphoreSlim _writeTurn = new(1, 1);

    /// <summary>
    /// Pages written to SQLite's WAL, counted by the telemetry writer, after which it checkpoints the WAL
    /// (<see cref="CheckpointIfDueAsync"/>); SQLite's own automatic checkpoint is set four times as far (SqliteDialect),
    /// as a backstop only. (Tests set it low.)
    /// </summary>
    public int WalPagesPerCheckpoint { get; set; } = 10_000;

    private long _walPages;

    /// <summary>
    /// Adds the pages <paramref name="connection"/> wrote to the WAL since it was last counted (SQLite; nothing on
    /// PostgreSQL). Called by the telemetry writer after its commit, on its own connection.
    /// </summary>
    public void CountWalPages(DbConnection connection)
    {
        if (connection is Microsoft.Data.Sqlite.SqliteConnection { Handle: { } handle })
        {
            _ = SQLitePCL.raw.sqlite3_db_status(handle, SQLitePCL.raw.SQLITE_DBSTATUS_CACHE_WRITE, out var written, out _, 1);
            Interlocked.Add(ref _walPages, written);
        }
    }

    /// <summary>
    /// Checkpoints SQLite's WAL (passively: no writer waits for it) once <see cref="WalPagesPerCheckpoint"/> pages were
    /// counted since the last time. The telemetry writer calls it between batches, after its commit has been told to
    /// the event log's readers and with no write turn held. SQLite's automatic checkpoint ran inside whichever commit
    /// crossed the threshold, mostly ingest's, which held the write turn meanwhile: an alarm waiting for the turn
    /// waited for the checkpoint (the slow alarms of issue 12), and the event log's readers heard of the commit only
    /// after it. The writer that appends most is the one that checkpoints, between its own appends, so a checkpoint
    /// usually finds no newer frame and SQLite starts the WAL again from its beginning.
    /// </summary>
    public async ValueTask CheckpointIfDueAsync(CancellationToken cancellationToken = default)
    {
        if (Provider != StorageProvider.Sqlite || Volatile.Read(ref _walPages) < WalPagesPerCheckpoint)
        {
            return;
        }

        Interlocked.Exchange(ref _walPages, 0);
        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        await using var connection = await OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA wal_checkpoint(PASSIVE);";
        await command.ExecuteNonQueryAsync(cancellationToken);
        StageTimings.Since("checkpoint", stage);
    }

    /// <summary>An open connection, with the provider's per-connection settings applied.</summary>
    public async ValueTask<DbConnection> OpenAsync(CancellationToken cancellationToken = default)
    {
        var connection = Dialect.CreateConnection();
        try
        {
            await connection.OpenAsync(cancellationToken);
            if (Dialect.OnOpen is { } setup && Dialect.NeedsSetUp(connection))
            {
                using var command = connection.CreateCommand();
                command.CommandText = setup;
                await command.ExecuteNonQueryAsync(cancellationToken);
                Dialect.SetUp(connection);
            }

            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>The first row of a query read by <paramref name="read"/>, or null when there is none.</summary>
    public async Task<T?> QuerySingleAsync<T>(string sql, Action<DbCommand> bind, Func<DbDataReader, T> read, CancellationToken cancellationToken)
        where T : class
    {
        await using var connection = await OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        bind(command);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? read(reader) : null;
    }

    /// <summary>Every row of a query, each read by <paramref name="read"/>.</summary>
    public async Task<List<T>> QueryListAsync<T>(string sql, Action<DbCommand> bind, Func<DbDataReader, T> read, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        bind(command);
        var list = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(read(reader));
        }

        return list;
    }

    /// <summary>Runs one statement on a connection of its own; returns the rows it changed.</summary>
    public async Task<int> ExecuteAsync(string sql, Action<DbCommand> bind, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        bind(command);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// One page of a list: <c>SELECT {columns} FROM {from}{where} ORDER BY {orderBy} LIMIT/OFFSET</c> and the
    /// count of the whole list. <paramref name="bind"/> adds the filter's parameters; paging and search (@q) are added here.
    /// </summary>
    public async Task<Page<T>> QueryPageAsync<T>(string columns, string from, string where, string orderBy, PageRequest request,
        Action<DbCommand> bind, Func<DbDataReader, T> read, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        var total = await Sql.CountAsync(connection, $"SELECT COUNT(*) FROM {from}{where}", request, bind, cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {columns} FROM {from}{where} ORDER BY {orderBy} LIMIT @limit OFFSET @offset";
        Sql.AddPaging(command, request);
        bind(command);
        var list = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(read(reader));
        }

        return Page.From(list, total, request);
    }

    /// <summary>Applies the migration steps not yet applied, each in its own transaction. Returns how many ran.</summary>
    public async Task<int> MigrateAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        if (Provider == StorageProvider.Sqlite)
        {
            await ExecuteAsync(connection, null, "PRAGMA journal_mode=WAL;", cancellationToken);
        }

        // Two nodes starting together: one migrates, the other waits and then finds the step applied. The table
        // of applied steps is made under the same lock: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against
        // itself in two sessions at once (one of them fails on a duplicate type name).
        await using (var setup = await connection.BeginTransactionAsync(cancellationToken))
        {
            await LockForMigrationAsync(connection, setup, cancellationToken);
            await ExecuteAsync(connection, setup,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_time BIGINT NOT NULL);",
                cancellationToken);
            await setup.CommitAsync(cancellationToken);
        }

        var applied = 0;
        foreach (var (version, name, sql) in Migrations.Steps)
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await LockForMigrationAsync(connection, transaction, cancellationToken);

            using (var check = connection.CreateCommand())
            {
                check.Transaction = transaction;
                check.CommandText = "SELECT COUNT(*) FROM schema_migrations WHERE version = @v";
                check.AddParameter("v", version);
                if (Convert.ToInt64(await check.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture) > 0)
                {
                    continue;
                }
            }

            await ExecuteAsync(connection, transaction, Expand(sql), cancellationToken);
            using (var record = connection.CreateCommand())
            {
                record.Transaction = transaction;
                record.CommandText = "INSERT INTO schema_migrations (version, name, applied_time) VALUES (@v, @n, @t)";
                record.AddParameter("v", version);
                record.AddParameter("n", name);
                record.AddParameter("t", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                await record.ExecuteNonQueryAsync(cancellationToken);
            }

            await transaction.CommitAsync(cancellationToken);
            applied++;
        }

        return applied;
    }

    private Task LockForMigrationAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken) =>
        Dialect.MigrationLock is { } sql ? ExecuteAsync(connection, transaction, sql, cancellationToken) : Task.CompletedTask;

    private string Expand(string sql) => sql
        .Replace("{id}", Dialect.AutoIdColumn, StringComparison.Ordinal)
        .Replace("{blob}", Dialect.BlobType, StringComparison.Ordinal)
        .Replace("{bool}", Dialect.BooleanType, StringComparison.Ordinal)
        .Replace("{double}", Dialect.DoubleType, StringComparison.Ordinal)
        .Replace("{clustered}", Dialect.ClusteredTable, StringComparison.Ordinal);

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public void Dispose()
    {
        (Dialect as IDisposable)?.Dispose();
        _writeTurn.Dispose();
    }
}

/// <summary>A turn at the write lock (<see cref="PlatformDatabase.TakeWriteTurnAsync"/>); disposing it passes the turn on.</summary>
public readonly struct WriteTurn(SemaphoreSlim? turn) : IDisposable
{
    public void Dispose() => turn?.Release();
}

/// <summary>Small conveniences over ADO.NET commands.</summary>
public static class DbCommandExtensions
{
    /// <summary>Adds a parameter; text that a provider cannot store is refused (<see cref="Sql.RequireStorableText"/>).</summary>
    public static DbParameter AddParameter(this DbCommand command, string name, object? value)
    {
        Sql.RequireStorableText(value as string);
        var parameter = command.CreateParameter();
        parameter.ParameterName = Prefixed(name);
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return parameter;
    }

    // Named as the statements write them (@name). Microsoft.Data.Sqlite looks a bare name up four times on every
    // execution (as is, then with each of @, $ and :), making a string and a UTF-8 copy each time: eleven
    // parameters of an audit row cost about eighty allocations. Npgsql takes either form.
    private static readonly ConcurrentDictionary<string, string> PrefixedNames = new(StringComparer.Ordinal);

    private static string Prefixed(string name) =>
        name.Length > 0 && name[0] is '@' or '$' or ':' ? name : PrefixedNames.GetOrAdd(name, static n => "@" + n);

    public static string? GetNullableString(this DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public static long? GetNullableInt64(this DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetInt64(ordinal);
}
