using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Taihu.Platform.Storage;

/// <summary>SQLite through Microsoft.Data.Sqlite: one file, WAL, pooled connections.</summary>
public sealed class SqliteDialect(string connectionString, SqliteDurability durability) : SqlDialect
{
    // 16 MiB of page cache per connection (SQLite's default is 2 MiB): the time-series indexes are hot. The WAL is
    // checkpointed every 10,000 pages (40 MiB) instead of SQLite's 1,000: a checkpoint writes each page once however
    // often the WAL holds it, and telemetry from many devices rewrites the same hot pages (latest values, rollups,
    // the newest page of each series) in every commit. Measured with the live benchmark (1,000 devices paced at 20
    // msg/s each, so every commit touches pages of hundreds of devices): 4,200 to 5,100 acknowledged msg/s before,
    // 16,000 to 18,000 after, on the same shared machine (docs/benchmarks.md). The telemetry writer runs that
    // checkpoint between its batches (PlatformDatabase.CheckpointIfDueAsync); SQLite's own, inside the commit that
    // crosses its threshold, is set at 40,000 pages, a backstop for when the telemetry writer is idle.
    private readonly string _onOpen = "PRAGMA busy_timeout=15000; PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=40000; PRAGMA synchronous="
        + (durability == SqliteDurability.Full ? "FULL;" : "NORMAL;");

    public override StorageProvider Provider => StorageProvider.Sqlite;

    public override string AutoIdColumn => "INTEGER PRIMARY KEY";

    public override string BlobType => "BLOB";

    public override string BooleanType => "INTEGER";

    public override string DoubleType => "REAL";

    public override string? OnOpen => _onOpen;

    // The pragmas are settings of SQLite's connection, which the pool keeps open between uses: they are run once per
    // connection of SQLite's (its handle), not on every open of a pooled one (five statements parsed and run).
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<object, object> _setUp = new();

    public override bool NeedsSetUp(DbConnection connection) =>
        connection is not SqliteConnection { Handle: { } handle } || !_setUp.TryGetValue(handle, out _);

    public override void SetUp(DbConnection connection)
    {
        if (connection is SqliteConnection { Handle: { } handle })
        {
            _setUp.AddOrUpdate(handle, handle);
        }
    }

    public override string ClusteredTable => " WITHOUT ROWID";

    public override DbConnection CreateConnection()
    {
        var connection = new SqliteConnection(connectionString);
        // SQLite's own lower() folds ASCII only, so a search for "école" missed "École"; PostgreSQL folds by the
        // database's locale. The search patterns are folded by .NET (PageRequest.LikePattern): the column too.
        connection.CreateFunction("lower", (string? text) => text?.ToLowerInvariant(), isDeterministic: true);
        return connection;
    }

    /// <summary>The connection string for <c>taihu.db</c> in <paramref name="directory"/>.</summary>
    /// <summary>The embedded database's file in the data directory.</summary>
    public static string FilePath(string directory) => Path.Combine(directory, "taihu.db");

    public static string FileConnectionString(string directory) =>
        new SqliteConnectionStringBuilder { DataSource = FilePath(directory), Pooling = true }.ToString();
}

/// <summary>PostgreSQL through Npgsql; one data source (its own pool) per database.</summary>
/// <remarks>
/// A connection goes back to the pool without Npgsql's reset (<c>DISCARD ALL</c>, a round trip each time), unless the
/// connection string says otherwise (<c>No Reset On Close=false</c>): Taihu's statements leave no session state behind
/// (no <c>SET</c>, temporary tables, session locks or prepared statements on pooled connections; transactions always
/// end), and the reset was over a third of all the statements a cluster node sent (docs/benchmarks.md).
/// </remarks>
public sealed class PostgresDialect(string connectionString) : SqlDialect, IDisposable
{
    private readonly NpgsqlDataSource _source = NpgsqlDataSource.Create(WithoutReset(connectionString));

    /// <summary>The connection string with <c>No Reset On Close</c> on, unless it sets that itself.</summary>
    internal static string WithoutReset(string connectionString)
    {
        // Npgsql's own builder says it contains every keyword it knows; the plain one says what was written.
        var written = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        if (written.ContainsKey("No Reset On Close") || written.ContainsKey("NoResetOnClose"))
        {
            return connectionString;
        }

        return new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true }.ConnectionString;
    }

    public override StorageProvider Provider => StorageProvider.PostgreSql;

    public override string AutoIdColumn => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";

    public override string BlobType => "BYTEA";

    public override string BooleanType => "BOOLEAN";

    public override string DoubleType => "DOUBLE PRECISION";

    /// <summary>A transaction-scoped advisory lock; the number is Taihu's own.</summary>
    public override string MigrationLock => "SELECT pg_advisory_xact_lock(7243190);";

    public override DbConnection CreateConnection() => _source.CreateConnection();

    public void Dispose() => _source.Dispose();
}
