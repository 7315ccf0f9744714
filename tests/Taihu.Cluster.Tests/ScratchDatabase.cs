using Npgsql;
using Taihu.Platform.Tests;

namespace Taihu.Cluster.Tests;

/// <summary>A database of its own on the private PostgreSQL server for one test, dropped after it.</summary>
internal sealed class ScratchDatabase : IAsyncDisposable
{
    private readonly PostgresServer _server;
    private readonly string _name;

    private ScratchDatabase(PostgresServer server, string name)
    {
        _server = server;
        _name = name;
        DataSource = NpgsqlDataSource.Create(server.ConnectionString(name));
    }

    public NpgsqlDataSource DataSource { get; }

    public static async Task<ScratchDatabase> CreateAsync(PostgresServer server) => new(server, await server.CreateDatabaseAsync());

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        await _server.DropDatabaseAsync(_name);
    }
}
