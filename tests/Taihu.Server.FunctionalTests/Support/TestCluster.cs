using Taihu.Platform.Tests;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// Nodes of a cluster as real server processes on a fresh database of the shared PostgreSQL, started as
/// <see cref="ClusterSettings.StartNodesAsync"/> starts them, with the system administrator's API on the first;
/// disposing stops every node and drops the database.
/// </summary>
public sealed class TestCluster : IAsyncDisposable
{
    private readonly PostgresServer _postgres;
    private readonly string _database;
    private readonly List<ServerProcess> _nodes = [];

    private TestCluster(PostgresServer postgres, string database)
    {
        _postgres = postgres;
        _database = database;
    }

    public IReadOnlyList<ServerProcess> Nodes => _nodes;

    /// <summary>The system administrator, on the first node.</summary>
    public PlatformApi SysAdmin { get; private set; } = null!;

    /// <summary>Starts <paramref name="count"/> nodes of cluster <paramref name="clusterId"/>, each with <paramref name="extra"/>'s settings too, if given.</summary>
    public static async Task<TestCluster> StartAsync(PostgresServer postgres, string clusterId, int count = 2, Func<int, IReadOnlyDictionary<string, string>>? extra = null)
    {
        var cluster = new TestCluster(postgres, await postgres.CreateDatabaseAsync());
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, cluster._database, clusterId, count, cluster._nodes, extra);
            cluster.SysAdmin = await PlatformApi.SysAdminAsync(cluster._nodes[0]);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>A new tenant's administrator, on the first node.</summary>
    public async Task<PlatformApi> TenantAdminAsync(string title) => (await SysAdmin.CreateTenantWithAdminAsync(title)).Admin;

    public async ValueTask DisposeAsync()
    {
        SysAdmin?.Dispose();
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }

        await _postgres.DropDatabaseAsync(_database);
    }
}
