using Taihu.Platform.Storage;

namespace Taihu.Platform.Tests;

/// <summary>The storage suite on PostgreSQL: a database with a random name per test on the shared server, dropped after.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresStorageTests(PostgresServer server) : StorageTests
{
    private string? _database;

    protected override async Task<PlatformDatabase> CreateDatabaseAsync()
    {
        _database = await server.CreateDatabaseAsync();
        return new PlatformDatabase(new PostgresDialect(server.ConnectionString(_database)));
    }

    protected override async Task DropDatabaseAsync()
    {
        if (_database is not null)
        {
            await server.DropDatabaseAsync(_database);
        }
    }

    /// <summary>Several nodes of a cluster start at once on an empty database: the schema is made exactly once.</summary>
    [Fact]
    public async Task Migrations_NodesStartingTogether_MigrateOnce()
    {
        for (var round = 0; round < 5; round++)
        {
            var name = await server.CreateDatabaseAsync();
            var nodes = Enumerable.Range(0, 4).Select(_ => new PlatformDatabase(new PostgresDialect(server.ConnectionString(name)))).ToArray();
            try
            {
                var applied = await Task.WhenAll(nodes.Select(node => Task.Run(() => node.MigrateAsync())));
                Assert.Equal(Migrations.Steps.Length, applied.Sum());
            }
            finally
            {
                foreach (var node in nodes)
                {
                    node.Dispose();
                }

                await server.DropDatabaseAsync(name);
            }
        }
    }
}
