using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;
using Xunit.Abstractions;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Three real server processes on loopback form a cluster on one private PostgreSQL database: they join, a node
/// killed with SIGKILL is seen dead by the others, and it joins again when it restarts. The other tests run failure
/// detection on short settings (probes every second, two missed suspect a node).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterMembershipTests(PostgresServer postgres, ITestOutputHelper log)
{
    private const string ClusterId = "functional";

    /// <summary>
    /// The killed node's port refuses connections, so the nodes' own watch declares it dead within a second or two
    /// (a ping each second, two refused connections); Orleans' probes, set a minute apart here, cannot have done it.
    /// </summary>
    private static readonly TimeSpan s_deathDeadline = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task ThreeNodes_Join_ANodeKilledIsSeenDead_AndRejoinsAfterRestart()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new ServerProcess?[3];
        var siloPorts = new[] { LoopbackPort.Free(), LoopbackPort.Free(), LoopbackPort.Free() };
        var dataDirectory = ServerProcess.NewDataDirectory();
        try
        {
            // The first node makes the schema and the administrator; the other two start together.
            nodes[0] = await ClusterSettings.StartNodeAsync(postgres, NodeSettings(database, siloPorts[0]));
            var rest = await Task.WhenAll(
                ClusterSettings.StartNodeAsync(postgres, NodeSettings(database, siloPorts[1])),
                ClusterSettings.StartNodeAsync(postgres, NodeSettings(database, siloPorts[2]), dataDirectory));
            (nodes[1], nodes[2]) = (rest[0], rest[1]);
            Assert.Contains("Cluster functional: membership in PostgreSQL", nodes[0]!.Output, StringComparison.Ordinal);

            var apis = new List<PlatformApi>();
            foreach (var node in nodes)
            {
                apis.Add(await PlatformApi.SysAdminAsync(node!));
            }

            foreach (var api in apis)
            {
                var view = await api.EventuallyAsync("/api/cluster/nodes", v => ActivePorts(v).SetEquals(siloPorts));
                Assert.Equal(ClusterId, (string?)view["clusterId"]);
                var self = Assert.Single(view["nodes"]!.AsArray(), n => (bool)n!["self"]!);
                Assert.EndsWith(":" + Port(api.Server, siloPorts, apis).ToString(CultureInfo.InvariantCulture), (string?)self!["address"], StringComparison.Ordinal);
            }

            await Metrics.WaitForAsync(nodes[0]!, "taihu_cluster_nodes", count => count == 3);

            // SIGKILL: no goodbye; the others find its port refusing connections.
            var killedGeneration = Generation(await apis[2].GetAsync("/api/cluster/nodes"), siloPorts[2]);
            await nodes[2]!.KillAsync();
            var clock = Stopwatch.StartNew();
            foreach (var api in apis.Take(2))
            {
                await api.EventuallyAsync("/api/cluster/nodes", v => StatusOf(v, siloPorts[2], killedGeneration) == "Dead");
            }

            var detected = clock.Elapsed;
            Assert.True(detected < s_deathDeadline, $"The killed node was declared dead after {detected.TotalSeconds:F1} s.");
            log.WriteLine($"The killed node was seen dead by both others {detected.TotalSeconds:F1} s after SIGKILL.");
            var survivors = await apis[0].GetAsync("/api/cluster/nodes");
            Assert.Equal(new[] { siloPorts[0], siloPorts[1] }.Order(), ActivePorts(survivors).Order());
            await Metrics.WaitForAsync(nodes[1]!, "taihu_cluster_nodes", count => count == 2);

            // The same node (port and data) starts again: a new generation joins, the old one stays dead.
            await nodes[2]!.DisposeAsync();
            nodes[2] = await ClusterSettings.StartNodeAsync(postgres, NodeSettings(database, siloPorts[2]), dataDirectory);
            apis[2].Dispose();
            apis[2] = await PlatformApi.SysAdminAsync(nodes[2]!);
            foreach (var api in apis)
            {
                var view = await api.EventuallyAsync("/api/cluster/nodes", v => ActivePorts(v).SetEquals(siloPorts));
                Assert.NotEqual(killedGeneration, Generation(view, siloPorts[2]));
            }

            Assert.Equal("Dead", StatusOf(await apis[0].GetAsync("/api/cluster/nodes"), siloPorts[2], killedGeneration));
            foreach (var api in apis)
            {
                api.Dispose();
            }
        }
        finally
        {
            foreach (var node in nodes)
            {
                if (node is not null)
                {
                    await node.DisposeAsync();
                }
            }

            ServerProcess.DeleteDataDirectory(dataDirectory);
            await postgres.DropDatabaseAsync(database);
        }
    }

    /// <summary>
    /// A node of another cluster id on the same database, and a node that finds the cluster tables of a newer
    /// version, stop at start with the reason, before the platform or the cluster writes anything.
    /// </summary>
    [Fact]
    public async Task AnotherClusterOrNewerTables_StopAtStart_NothingWritten()
    {
        var database = await postgres.CreateDatabaseAsync();
        try
        {
            await using (var first = await ClusterSettings.StartNodeAsync(postgres, NodeSettings(database, LoopbackPort.Free())))
            {
                Assert.Contains("Cluster functional: membership in PostgreSQL", first.Output, StringComparison.Ordinal);
            }

            var settings = NodeSettings(database, LoopbackPort.Free());
            settings["Cluster__ClusterId"] = "another";
            var (exitCode, output) = await ServerProcess.RunToExitAsync(settings);
            Assert.NotEqual(0, exitCode);
            Assert.Contains("Taihu cannot start: The database belongs to cluster 'functional', and Cluster:ClusterId is 'another'.", output, StringComparison.Ordinal);
            Assert.Equal(0L, await ScalarAsync(database, "SELECT COUNT(*) FROM cluster_versions WHERE cluster_id = 'another'"));

            // As if a node of a later release had upgraded the tables.
            var migrations = await ScalarAsync(database, "SELECT COUNT(*) FROM schema_migrations");
            await ScalarAsync(database, "UPDATE cluster_schema SET version = version + 1 RETURNING version");
            (exitCode, output) = await ServerProcess.RunToExitAsync(NodeSettings(database, LoopbackPort.Free()));
            Assert.NotEqual(0, exitCode);
            Assert.Contains("Taihu cannot start: The database's cluster tables are version 3, newer than this node knows (2)", output, StringComparison.Ordinal);
            Assert.DoesNotContain("Taihu listening on", output, StringComparison.Ordinal);
            Assert.Equal(migrations, await ScalarAsync(database, "SELECT COUNT(*) FROM schema_migrations"));
        }
        finally
        {
            await postgres.DropDatabaseAsync(database);
        }
    }

    /// <summary>A node whose clock is a minute ahead of the database's stops at start with the reason, and nothing is written.</summary>
    [Fact]
    public async Task ClockOffByAMinute_StopsAtStart_NothingWritten()
    {
        var database = await postgres.CreateDatabaseAsync();
        try
        {
            var settings = NodeSettings(database, LoopbackPort.Free());
            settings["Testing__ClockOffset"] = "00:01:00";
            var (exitCode, output) = await ServerProcess.RunToExitAsync(settings);
            Assert.Equal(1, exitCode);
            Assert.Contains("Taihu cannot start: This node's clock is 60.0 s ahead of the clock of PostgreSQL at 127.0.0.1:", output, StringComparison.Ordinal);
            Assert.Contains("more than Cluster:MaxClockSkew (00:00:02) allows", output, StringComparison.Ordinal);
            Assert.DoesNotContain("Taihu listening on", output, StringComparison.Ordinal);
            Assert.Equal(0L, await ScalarAsync(database, "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'"));
        }
        finally
        {
            await postgres.DropDatabaseAsync(database);
        }
    }

    /// <summary>No PostgreSQL where the settings say: a clear reason and a non-zero exit, without a listener opened.</summary>
    [Fact]
    public async Task UnreachablePostgres_StopsAtStart_WithTheReason()
    {
        var closedPort = LoopbackPort.Free();
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string>
        {
            ["Storage__Provider"] = "PostgreSql",
            ["Storage__ConnectionString"] = $"Host=127.0.0.1;Port={closedPort};Username=taihu;Database=taihu",
            ["Cluster__Enabled"] = "true",
            ["Cluster__SiloPort"] = LoopbackPort.Free().ToString(CultureInfo.InvariantCulture),
            ["Cluster__AdvertisedAddress"] = "127.0.0.1",
        });
        Assert.Equal(1, exitCode);
        Assert.Contains($"Taihu cannot start: PostgreSQL at 127.0.0.1:{closedPort} (database taihu), named by Storage:ConnectionString, cannot be used for the cluster", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Taihu listening on", output, StringComparison.Ordinal);
    }

    /// <summary>A cluster on the embedded store is refused with the settings' other problems, before anything starts.</summary>
    [Fact]
    public async Task ClusterOnSqlite_StopsAtStart_NamingTheSetting()
    {
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string>
        {
            ["Cluster__Enabled"] = "true",
            ["Cluster__ProbeTimeout"] = "00:00:00.010",
        });
        Assert.Equal(1, exitCode);
        Assert.Contains("Taihu cannot start: Cluster:Enabled needs Storage:Provider PostgreSql", output, StringComparison.Ordinal);
        Assert.Contains("Cluster:ProbeTimeout must be at least", output, StringComparison.Ordinal);
    }

    /// <summary>Orleans' probes a minute apart: a death seen within <see cref="s_deathDeadline"/> is the watch's.</summary>
    private Dictionary<string, string> NodeSettings(string database, int siloPort)
    {
        var settings = ClusterSettings.Node(postgres, database, ClusterId, siloPort);
        settings["Cluster__ProbeTimeout"] = "00:01:00";
        return settings;
    }

    private async Task<object?> ScalarAsync(string database, string sql)
    {
        await using var connection = new Npgsql.NpgsqlConnection(postgres.ConnectionString(database));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }

    private static int Port(ServerProcess server, int[] siloPorts, List<PlatformApi> apis) => siloPorts[apis.FindIndex(a => a.Server == server)];

    private static int PortOf(JsonNode node) => IPEndPoint.Parse((string)node["address"]!).Port;

    private static HashSet<int> ActivePorts(JsonNode view) =>
        [.. view["nodes"]!.AsArray().Where(n => (string?)n!["status"] == "Active").Select(n => PortOf(n!))];

    private static int Generation(JsonNode view, int port) =>
        (int)view["nodes"]!.AsArray().Single(n => PortOf(n!) == port && (string?)n!["status"] == "Active")!["generation"]!;

    private static string? StatusOf(JsonNode view, int port, int generation) =>
        (string?)view["nodes"]!.AsArray().SingleOrDefault(n => PortOf(n!) == port && (int)n!["generation"]! == generation)?["status"];
}
