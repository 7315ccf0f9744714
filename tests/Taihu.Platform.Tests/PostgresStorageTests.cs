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
}
