using System.Data.Common;

namespace Taihu.Platform.Storage;

/// <summary>
/// What differs between SQLite and PostgreSQL. Everything else (the SQL of the stores) is written once in the
/// subset both speak: <c>INSERT .. ON CONFLICT .. DO UPDATE</c>, <c>LIMIT/OFFSET</c>, <c>@name</c> parameters.
/// </summary>
public abstract class SqlDialect
{
    public abstract StorageProvider Provider { get; }

    /// <summary>The type of an auto-numbered 64-bit key column, primary key included.</summary>
    public abstract string AutoIdColumn { get; }

    /// <summary>The type of a byte-array column.</summary>
    public abstract string BlobType { get; }

    /// <summary>The type of a true/false column.</summary>
    public abstract string BooleanType { get; }

    /// <summary>The type of a floating-point column.</summary>
    public abstract string DoubleType { get; }

    public abstract DbConnection CreateConnection();

    /// <summary>
    /// What follows a table's definition to store its rows in primary-key order: the time series are read by
    /// (device, key, time range), and SQLite otherwise keeps a rowid table plus a separate index.
    /// </summary>
    public virtual string ClusteredTable => "";

    /// <summary>Per-connection settings to run after opening (SQLite pragmas), or null.</summary>
    public virtual string? OnOpen => null;

    /// <summary>
    /// Whether <paramref name="connection"/>, just opened, still needs <see cref="OnOpen"/>: a pooled connection
    /// that had it keeps its settings. <see cref="SetUp"/> records that it has them now.
    /// </summary>
    public virtual bool NeedsSetUp(DbConnection connection) => true;

    /// <summary>Records that <paramref name="connection"/> has had <see cref="OnOpen"/>.</summary>
    public virtual void SetUp(DbConnection connection)
    {
    }

    /// <summary>
    /// A statement that holds off other nodes' migrations until the calling transaction ends, or null where a
    /// write transaction already does (SQLite's is exclusive).
    /// </summary>
    public virtual string? MigrationLock => null;
}
