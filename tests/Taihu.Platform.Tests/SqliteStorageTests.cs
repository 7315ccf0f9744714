using Microsoft.Data.Sqlite;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Tests;

/// <summary>The storage suite on SQLite: a fresh database file in a temporary directory per test.</summary>
public sealed class SqliteStorageTests : StorageTests
{
    private string? _directory;
    private string? _connectionString;

    protected override Task<PlatformDatabase> CreateDatabaseAsync()
    {
        _directory = Directory.CreateTempSubdirectory("taihu-sqlite-").FullName;
        _connectionString = SqliteDialect.FileConnectionString(_directory);
        return Task.FromResult(new PlatformDatabase(new SqliteDialect(_connectionString, SqliteDurability.Normal)));
    }

    protected override Task DropDatabaseAsync()
    {
        if (_directory is not null)
        {
            // Pooled connections keep the file open; close them before deleting it.
            using (var connection = new SqliteConnection(_connectionString))
            {
                SqliteConnection.ClearPool(connection);
            }

            Directory.Delete(_directory, recursive: true);
        }

        return Task.CompletedTask;
    }
}
