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

    /// <summary>
    /// A pooled connection goes back without Npgsql's reset (<c>DISCARD ALL</c>, a round trip per use): what a
    /// session set is still there when the same connection is taken again. A connection string that asks for the
    /// reset keeps it.
    /// </summary>
    [Fact]
    public async Task PooledConnections_GoBackWithoutTheResetRoundTrip_UnlessTheConnectionStringAsksForIt()
    {
        var name = await server.CreateDatabaseAsync();
        try
        {
            Assert.Equal("x", await SettingAfterReuseAsync(server.ConnectionString(name)));
            Assert.Equal("", await SettingAfterReuseAsync(server.ConnectionString(name) + ";No Reset On Close=false"));
        }
        finally
        {
            await server.DropDatabaseAsync(name);
        }

        static async Task<string> SettingAfterReuseAsync(string connectionString)
        {
            using var database = new PlatformDatabase(new PostgresDialect(connectionString));
            int firstBackend;
            await using (var connection = await database.OpenAsync())
            {
                using var command = connection.CreateCommand();
                command.CommandText = "SELECT set_config('taihu.probe', 'x', false), pg_backend_pid()";
                await using var reader = await command.ExecuteReaderAsync();
                Assert.True(await reader.ReadAsync());
                firstBackend = reader.GetInt32(1);
            }

            await using (var connection = await database.OpenAsync())
            {
                using var command = connection.CreateCommand();
                command.CommandText = "SELECT coalesce(current_setting('taihu.probe', true), ''), pg_backend_pid()";
                await using var reader = await command.ExecuteReaderAsync();
                Assert.True(await reader.ReadAsync());
                Assert.Equal(firstBackend, reader.GetInt32(1)); // the same pooled connection
                return reader.GetString(0);
            }
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
