using Npgsql;
using Taihu.Platform.Tests;

namespace Taihu.Cluster.Tests;

/// <summary>The cluster's tables: made once, and the two bad configurations that must stop a node before it writes.</summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterSchemaTests(PostgresServer server) : IAsyncLifetime
{
    private ScratchDatabase? _database;

    private NpgsqlDataSource DataSource => _database!.DataSource;

    public async Task InitializeAsync()
    {
        _database = await ScratchDatabase.CreateAsync(server);
    }

    public async Task DisposeAsync()
    {
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }
    }

    [Fact]
    public async Task NodesStartingTogether_MakeTheTablesOnce()
    {
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => ClusterSchema.PrepareAsync(DataSource, "alpha"))));
        Assert.Equal(1L, await ScalarAsync("SELECT COUNT(*) FROM cluster_schema"));
        Assert.Equal(ClusterSchema.CurrentVersion, await ScalarAsync("SELECT version FROM cluster_schema"));
    }

    [Fact]
    public async Task Version1Tables_UpgradedToVersion2_KeepingTheMembers()
    {
        // Version 1 as an older node made it: the membership tables and the schema row, no succession tables.
        await ClusterSchema.PrepareAsync(DataSource, "alpha");
        await ScalarAsync("INSERT INTO cluster_versions (cluster_id, version, etag) VALUES ('alpha', 3, 7) RETURNING version");
        await ScalarAsync("DROP TABLE cluster_wills, cluster_sessions; UPDATE cluster_schema SET version = 1 RETURNING version");

        await ClusterSchema.PrepareAsync(DataSource, "alpha");

        Assert.Equal(2, await ScalarAsync("SELECT version FROM cluster_schema"));
        Assert.Equal(0L, await ScalarAsync("SELECT COUNT(*) FROM cluster_wills"));
        Assert.Equal(0L, await ScalarAsync("SELECT COUNT(*) FROM cluster_sessions"));
        Assert.Equal(3, await ScalarAsync("SELECT version FROM cluster_versions WHERE cluster_id = 'alpha'"));
    }

    [Fact]
    public async Task AnotherClusterId_Refused_NothingWritten()
    {
        await ClusterSchema.PrepareAsync(DataSource, "alpha");
        var before = await ScalarAsync("SELECT COUNT(*) FROM cluster_versions");
        var e = await Assert.ThrowsAsync<ClusterStartupException>(() => ClusterSchema.PrepareAsync(DataSource, "beta"));
        Assert.Contains("belongs to cluster 'alpha'", e.Message, StringComparison.Ordinal);
        Assert.Contains("Cluster:ClusterId is 'beta'", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, await ScalarAsync("SELECT COUNT(*) FROM cluster_versions"));
        Assert.Equal("alpha", await ScalarAsync("SELECT cluster_id FROM cluster_schema"));
    }

    [Fact]
    public async Task NewerTables_Refused_NothingWritten()
    {
        await ClusterSchema.PrepareAsync(DataSource, "alpha");
        await ScalarAsync($"UPDATE cluster_schema SET version = {ClusterSchema.CurrentVersion + 1} RETURNING version");
        var e = await Assert.ThrowsAsync<ClusterStartupException>(() => ClusterSchema.PrepareAsync(DataSource, "alpha"));
        Assert.Contains($"version {ClusterSchema.CurrentVersion + 1}, newer than this node knows ({ClusterSchema.CurrentVersion})", e.Message, StringComparison.Ordinal);
        Assert.Equal(ClusterSchema.CurrentVersion + 1, await ScalarAsync("SELECT version FROM cluster_schema"));
    }

    [Fact]
    public async Task ClockInStep_Passes_AndTheSkewIsSmall()
    {
        var skew = await ClusterClock.CheckAsync(DataSource, TimeProvider.System, TimeSpan.FromSeconds(2), "here");
        Assert.True(skew.Duration() < TimeSpan.FromSeconds(1), $"skew {skew}");
    }

    [Theory]
    [InlineData(90, "ahead of")]
    [InlineData(-300, "behind")]
    public async Task ClockOff_Refused_NamingTheSettingAndTheDirection(int offsetSeconds, string direction)
    {
        var e = await Assert.ThrowsAsync<ClusterStartupException>(() =>
            ClusterClock.CheckAsync(DataSource, new ShiftedClock(TimeSpan.FromSeconds(offsetSeconds)), TimeSpan.FromSeconds(2), "here"));
        Assert.Contains($"This node's clock is {(Math.Abs(offsetSeconds) < 120 ? "90.0 s" : "5.0 min")} {direction} the clock of PostgreSQL at here", e.Message, StringComparison.Ordinal);
        Assert.Contains("Cluster:MaxClockSkew (00:00:02)", e.Message, StringComparison.Ordinal);
    }

    /// <summary>The system clock moved by an offset (the server's own is in Taihu.Server, which this project does not reference).</summary>
    private sealed class ShiftedClock(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + offset;
    }

    private async Task<object?> ScalarAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return await command.ExecuteScalarAsync();
    }
}
