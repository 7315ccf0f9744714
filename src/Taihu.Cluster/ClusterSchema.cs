using System.Globalization;
using Npgsql;

namespace Taihu.Cluster;

/// <summary>
/// The cluster's own tables in the platform's PostgreSQL database, and the rules a node checks before it writes
/// anything there.
/// </summary>
/// <remarks>
/// <para>
/// <c>cluster_schema</c> holds one row: the version of these tables and the cluster the database belongs to.
/// A database holds one cluster: the platform's tables (tenants, devices, telemetry) are not kept apart by
/// cluster, so a second cluster on the same database would share them with the first without either knowing. A
/// node whose <c>Cluster:ClusterId</c> differs from the recorded one refuses to start, as does a node that finds
/// tables of a newer version than it knows (a node of an older release in an upgraded cluster). Both checks run
/// in the transaction that would create the tables, under an advisory lock, and roll it back: nothing is written.
/// </para>
/// <para>
/// <c>cluster_versions</c> holds the membership table's version row (one per cluster id, as Orleans' table
/// semantics are per cluster) and <c>cluster_members</c> one row per silo incarnation (address, port and
/// generation, as <c>SiloAddress.ToParsableString</c> writes them).
/// </para>
/// <para>
/// Version 2 adds what the surviving nodes need to take over a node that dies (docs/scaling.md, "When a node
/// dies"): <c>cluster_wills</c>, the will of each connected client that has one, with the node holding it, and
/// <c>cluster_sessions</c>, which node last wrote each stored persistent session. A database of version 1 is
/// upgraded in place by the first node of this build to start.
/// </para>
/// </remarks>
public static class ClusterSchema
{
    /// <summary>The version of the cluster's tables this build creates and reads.</summary>
    public const int CurrentVersion = 2;

    /// <summary>Taihu's advisory lock number for the cluster's tables (the platform's own migration uses 7243190).</summary>
    private const long LockKey = 7_243_191;

    private const string CreateVersion1 = """
        CREATE TABLE cluster_versions (
            cluster_id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            etag BIGINT NOT NULL,
            updated_time TIMESTAMPTZ NOT NULL DEFAULT now());
        CREATE TABLE cluster_members (
            cluster_id TEXT NOT NULL REFERENCES cluster_versions (cluster_id) ON DELETE CASCADE,
            address TEXT NOT NULL,
            silo_name TEXT NOT NULL,
            host_name TEXT NOT NULL,
            status INTEGER NOT NULL,
            proxy_port INTEGER NOT NULL,
            suspect_times TEXT NOT NULL,
            start_time TIMESTAMPTZ NOT NULL,
            i_am_alive_time TIMESTAMPTZ NOT NULL,
            last_update_time TIMESTAMPTZ NOT NULL,
            etag BIGINT NOT NULL,
            PRIMARY KEY (cluster_id, address));
        """;

    private const string CreateVersion2 = """
        CREATE TABLE cluster_wills (
            ns TEXT NOT NULL,
            session_owner TEXT NOT NULL,
            client_id TEXT NOT NULL,
            node TEXT NOT NULL,
            topic TEXT NOT NULL,
            payload BYTEA NOT NULL,
            qos SMALLINT NOT NULL,
            retain BOOLEAN NOT NULL,
            properties BYTEA,
            delay_seconds BIGINT NOT NULL,
            connected_time TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (ns, session_owner, client_id));
        CREATE INDEX cluster_wills_node ON cluster_wills (node);
        CREATE TABLE cluster_sessions (
            ns TEXT NOT NULL,
            session_owner TEXT NOT NULL,
            client_id TEXT NOT NULL,
            node TEXT NOT NULL,
            PRIMARY KEY (ns, session_owner, client_id));
        CREATE INDEX cluster_sessions_node ON cluster_sessions (node);
        """;

    /// <summary>
    /// Creates the tables when the database has none, or checks that they are this build's version and belong to
    /// <paramref name="clusterId"/>; throws <see cref="ClusterStartupException"/> (with nothing written) when not.
    /// </summary>
    public static async Task PrepareAsync(NpgsqlDataSource database, string clusterId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(database);
        await using var connection = await database.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await ExecuteAsync(connection, transaction, $"SELECT pg_advisory_xact_lock({LockKey.ToString(CultureInfo.InvariantCulture)})", cancellationToken);
        // to_regclass reads the catalogue only: no table is made before the checks below have passed.
        int? version = null;
        string? owner = null;
        await using (var exists = new NpgsqlCommand("SELECT to_regclass('cluster_schema') IS NOT NULL", connection, transaction))
        {
            if ((bool)(await exists.ExecuteScalarAsync(cancellationToken))!)
            {
                await using var read = new NpgsqlCommand("SELECT version, cluster_id FROM cluster_schema WHERE id = 1", connection, transaction);
                await using var reader = await read.ExecuteReaderAsync(cancellationToken);
                if (await reader.ReadAsync(cancellationToken))
                {
                    version = reader.GetInt32(0);
                    owner = reader.GetString(1);
                }
            }
        }

        if (version > CurrentVersion)
        {
            throw new ClusterStartupException(
                $"The database's cluster tables are version {version}, newer than this node knows ({CurrentVersion}): a node of a newer Taihu release has upgraded them. Run this node's newer release.");
        }

        if (owner is not null && !string.Equals(owner, clusterId, StringComparison.Ordinal))
        {
            throw new ClusterStartupException(
                $"The database belongs to cluster '{owner}', and Cluster:ClusterId is '{clusterId}'. One database holds one cluster (the platform's devices and telemetry are not kept apart by cluster): give this node ClusterId '{owner}', or another database.");
        }

        if (version is null)
        {
            await ExecuteAsync(connection, transaction, CreateVersion1 + """
                CREATE TABLE cluster_schema (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    version INTEGER NOT NULL,
                    cluster_id TEXT NOT NULL,
                    created_time TIMESTAMPTZ NOT NULL DEFAULT now());
                """ + CreateVersion2, cancellationToken);
            await using var record = new NpgsqlCommand("INSERT INTO cluster_schema (id, version, cluster_id) VALUES (1, @version, @cluster)", connection, transaction);
            record.Parameters.AddWithValue("version", CurrentVersion);
            record.Parameters.AddWithValue("cluster", clusterId);
            await record.ExecuteNonQueryAsync(cancellationToken);
        }

        // Each later version's step, from the recorded version up to CurrentVersion.
        if (version == 1)
        {
            await ExecuteAsync(connection, transaction, CreateVersion2 + "UPDATE cluster_schema SET version = 2 WHERE id = 1;", cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}

/// <summary>A node cannot join its cluster; the message says why and what to change, in plain English.</summary>
public sealed class ClusterStartupException : Exception
{
    public ClusterStartupException()
    {
    }

    public ClusterStartupException(string message)
        : base(message)
    {
    }

    public ClusterStartupException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
