using Microsoft.Data.Sqlite;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

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

    [Fact]
    public async Task TheTelemetryWriter_CheckpointsTheWal_BetweenItsBatches_OnceItWroteEnoughPages()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var file = SqliteDialect.FilePath(_directory!);
        DevicePoint[] Batch(long offset) => [.. Enumerable.Range(0, 200).Select(i => Point(device, "k" + (i % 5), T0 + offset + i, (double)i))];

        // Below the writer's threshold (and far below SQLite's own, a backstop): the points stay in the WAL.
        var before = new FileInfo(file).Length;
        await Telemetry.WriteAsync(Batch(0));
        Assert.Equal(before, new FileInfo(file).Length);

        // Past it: the writer checkpoints after its batch, and the pages reach the database file.
        Database.WalPagesPerCheckpoint = 1;
        await Telemetry.WriteAsync(Batch(1_000));
        Assert.True(new FileInfo(file).Length > before);
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
