using System.Globalization;
using Taihu.Platform.Tests;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>The settings of a cluster node in the tests: PostgreSQL, a silo port on loopback, and short failure detection.</summary>
public static class ClusterSettings
{
    /// <summary>Probes every second, two missed make a suspicion: a killed node is seen dead within seconds.</summary>
    public static Dictionary<string, string> Node(PostgresServer postgres, string database, string clusterId, int siloPort) => new()
    {
        ["Storage__Provider"] = "PostgreSql",
        ["Storage__ConnectionString"] = postgres.ConnectionString(database),
        ["Cluster__Enabled"] = "true",
        ["Cluster__ClusterId"] = clusterId,
        ["Cluster__SiloPort"] = siloPort.ToString(CultureInfo.InvariantCulture),
        ["Cluster__AdvertisedAddress"] = "127.0.0.1",
        ["Cluster__ProbeTimeout"] = "00:00:01",
        ["Cluster__NumMissedProbesLimit"] = "2",
        ["Cluster__TableRefreshTimeout"] = "00:00:02",
        ["Cluster__IAmAliveTablePublishTimeout"] = "00:00:02",
    };

    /// <summary>
    /// Starts <paramref name="count"/> nodes of cluster <paramref name="clusterId"/> into <paramref name="nodes"/>
    /// (which the caller disposes, started or not): the first alone, as it makes the schema, the others together;
    /// returns once every node sees them all. <paramref name="extra"/> adds settings to each node's.
    /// </summary>
    public static Task StartNodesAsync(PostgresServer postgres, string database, string clusterId, int count, List<ServerProcess> nodes,
        IReadOnlyDictionary<string, string>? extra = null) =>
        StartNodesAsync(postgres, database, clusterId, count, nodes, extra is null ? null : _ => extra);

    /// <summary>As the other overload, with settings of its own for each node by its index.</summary>
    public static async Task StartNodesAsync(PostgresServer postgres, string database, string clusterId, int count, List<ServerProcess> nodes,
        Func<int, IReadOnlyDictionary<string, string>>? extra)
    {
        Dictionary<string, string> Settings(int index)
        {
            var settings = Node(postgres, database, clusterId, LoopbackPort.Free());
            foreach (var (name, value) in extra?.Invoke(index) ?? new Dictionary<string, string>())
            {
                settings[name] = value;
            }

            return settings;
        }

        nodes.Add(await StartNodeAsync(postgres, Settings(0)));
        var others = new List<Task<ServerProcess>>();
        for (var i = 1; i < count; i++)
        {
            others.Add(StartNodeAsync(postgres, Settings(i)));
        }

        try
        {
            await Task.WhenAll(others);
        }
        finally
        {
            foreach (var started in others)
            {
                if (started.IsCompletedSuccessfully)
                {
                    nodes.Add(started.Result);
                }
            }
        }

        foreach (var node in nodes)
        {
            await Metrics.WaitForAsync(node, "taihu_cluster_nodes", active => active == count);
        }
    }

    /// <summary>
    /// Starts one node; when it does not start in time, the failure ends with PostgreSQL's recent log (lock waits,
    /// slow statements, checkpoints), as CI has seen nodes wait over a minute on the private server.
    /// </summary>
    public static async Task<ServerProcess> StartNodeAsync(PostgresServer postgres, IReadOnlyDictionary<string, string> settings, string? dataDirectory = null)
    {
        try
        {
            return await ServerProcess.StartAsync(settings, dataDirectory);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}\n{postgres.RecentLog()}", e);
        }
    }

    /// <summary>Asks the database again and again (each a round trip) until the count is <paramref name="expected"/>.</summary>
    public static async Task WaitForCountAsync(PostgresServer postgres, string database, string countSql, long expected)
    {
        var deadline = DateTime.UtcNow + ServerProcess.Guard;
        await using var connection = new Npgsql.NpgsqlConnection(postgres.ConnectionString(database));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(countSql, connection);
        while (true)
        {
            var count = (long)(await command.ExecuteScalarAsync())!;
            if (count == expected)
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"'{countSql}' gave {count}, not {expected}, within {ServerProcess.Guard.TotalSeconds} s.");
        }
    }

    /// <summary>Stops the nodes and drops their database.</summary>
    public static async Task DisposeAsync(PostgresServer postgres, List<ServerProcess> nodes, string database)
    {
        foreach (var node in nodes)
        {
            await node.DisposeAsync();
        }

        await postgres.DropDatabaseAsync(database);
    }
}
