using System.Net;
using Npgsql;
using Orleans;
using Orleans.Runtime;
using Taihu.Platform.Tests;

namespace Taihu.Cluster.Tests;

/// <summary>
/// Orleans' membership table contract on our PostgreSQL tables, against the real private server: each test on a
/// database of its own.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresMembershipTableTests(PostgresServer server) : IAsyncLifetime
{
    private ScratchDatabase? _database;

    private NpgsqlDataSource DataSource => _database!.DataSource;

    public async Task InitializeAsync()
    {
        _database = await ScratchDatabase.CreateAsync(server);
        await ClusterSchema.PrepareAsync(DataSource, "alpha");
    }

    public async Task DisposeAsync()
    {
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }
    }

    private async Task<PostgresMembershipTable> TableAsync(string clusterId = "alpha")
    {
        var table = new PostgresMembershipTable(DataSource, clusterId);
        await table.InitializeMembershipTable(tryInitTableVersion: true);
        return table;
    }

    private static SiloAddress Silo(int port, int generation) => SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), generation);

    private static MembershipEntry Entry(SiloAddress silo, SiloStatus status = SiloStatus.Joining) => new()
    {
        SiloAddress = silo,
        Status = status,
        SiloName = $"node-{silo.Endpoint.Port}",
        HostName = "host",
        ProxyPort = 0,
        StartTime = new DateTime(2026, 12, 4, 12, 0, 0, DateTimeKind.Utc),
        IAmAliveTime = new DateTime(2026, 12, 4, 12, 0, 1, DateTimeKind.Utc),
        SuspectTimes = [],
    };

    [Fact]
    public async Task Empty_ReadAll_VersionZero_NoRows()
    {
        var table = await TableAsync();
        var data = await table.ReadAll();
        Assert.Equal(0, data.Version.Version);
        Assert.Empty(data.Members);
    }

    [Fact]
    public async Task Initialize_Twice_KeepsTheVersion()
    {
        var table = await TableAsync();
        var before = (await table.ReadAll()).Version;
        Assert.True(await table.InsertRow(Entry(Silo(20_001, 1)), before.Next()));
        await table.InitializeMembershipTable(tryInitTableVersion: true);
        Assert.Equal(1, (await table.ReadAll()).Version.Version);
    }

    [Fact]
    public async Task InsertRow_ThenRead_RoundTripsEveryField()
    {
        var table = await TableAsync();
        var voter = Silo(20_009, 7);
        var entry = Entry(Silo(20_001, 1), SiloStatus.Active);
        entry.SuspectTimes = [Tuple.Create(voter, new DateTime(2026, 12, 4, 12, 0, 5, DateTimeKind.Utc))];
        entry.ProxyPort = 30_000;
        Assert.True(await table.InsertRow(entry, (await table.ReadAll()).Version.Next()));

        var data = await table.ReadRow(entry.SiloAddress);
        var (read, etag) = Assert.Single(data.Members);
        Assert.Equal(1, data.Version.Version);
        Assert.Equal(entry.SiloAddress, read.SiloAddress);
        Assert.Equal(SiloStatus.Active, read.Status);
        Assert.Equal("node-20001", read.SiloName);
        Assert.Equal("host", read.HostName);
        Assert.Equal(30_000, read.ProxyPort);
        Assert.Equal(entry.StartTime, read.StartTime);
        Assert.Equal(entry.IAmAliveTime, read.IAmAliveTime);
        var (suspecter, time) = Assert.Single(read.SuspectTimes!);
        Assert.Equal(voter, suspecter);
        Assert.Equal(new DateTime(2026, 12, 4, 12, 0, 5, DateTimeKind.Utc), time);
        Assert.False(string.IsNullOrEmpty(etag));
    }

    [Fact]
    public async Task InsertRow_SameSiloTwice_SecondFails_VersionUnchanged()
    {
        var table = await TableAsync();
        var entry = Entry(Silo(20_001, 1));
        Assert.True(await table.InsertRow(entry, (await table.ReadAll()).Version.Next()));
        var version = (await table.ReadAll()).Version;
        Assert.False(await table.InsertRow(entry, version.Next()));
        Assert.Equal(version, (await table.ReadAll()).Version);
    }

    [Fact]
    public async Task InsertRow_StaleVersionEtag_Fails_NothingWritten()
    {
        var table = await TableAsync();
        var stale = (await table.ReadAll()).Version;
        Assert.True(await table.InsertRow(Entry(Silo(20_001, 1)), stale.Next()));
        Assert.False(await table.InsertRow(Entry(Silo(20_002, 1)), stale.Next()));
        var data = await table.ReadAll();
        Assert.Single(data.Members);
        Assert.Equal(1, data.Version.Version);
    }

    [Fact]
    public async Task UpdateRow_WithTheEtagsRead_Succeeds_ThenTheOldEtagFails()
    {
        var table = await TableAsync();
        var silo = Silo(20_001, 1);
        Assert.True(await table.InsertRow(Entry(silo), (await table.ReadAll()).Version.Next()));
        var data = await table.ReadRow(silo);
        var (entry, etag) = data.Members[0];
        entry.Status = SiloStatus.Active;
        Assert.True(await table.UpdateRow(entry, etag, data.Version.Next()));

        var after = await table.ReadRow(silo);
        Assert.Equal(SiloStatus.Active, after.Members[0].Item1.Status);
        Assert.Equal(2, after.Version.Version);
        Assert.NotEqual(etag, after.Members[0].Item2);

        // The row's old etag with the table's current version: the row changed since, so no.
        entry.Status = SiloStatus.Dead;
        Assert.False(await table.UpdateRow(entry, etag, after.Version.Next()));
        // The row's current etag with a stale table version: the table changed since, so no.
        Assert.False(await table.UpdateRow(entry, after.Members[0].Item2, data.Version.Next()));
        Assert.Equal(SiloStatus.Active, (await table.ReadRow(silo)).Members[0].Item1.Status);
    }

    [Fact]
    public async Task UpdateRow_MissingRow_Fails_VersionUnchanged()
    {
        var table = await TableAsync();
        var version = (await table.ReadAll()).Version;
        Assert.False(await table.UpdateRow(Entry(Silo(20_001, 1)), "1", version.Next()));
        Assert.Equal(version, (await table.ReadAll()).Version);
    }

    [Fact]
    public async Task UpdateIAmAlive_ChangesOnlyTheHeartbeat_AndKeepsEtagsUsable()
    {
        var table = await TableAsync();
        var silo = Silo(20_001, 1);
        Assert.True(await table.InsertRow(Entry(silo), (await table.ReadAll()).Version.Next()));
        var data = await table.ReadRow(silo);
        var (entry, etag) = data.Members[0];

        var heartbeat = Entry(silo, SiloStatus.Dead);
        heartbeat.IAmAliveTime = new DateTime(2026, 12, 4, 13, 0, 0, DateTimeKind.Utc);
        await table.UpdateIAmAlive(heartbeat);

        var after = await table.ReadRow(silo);
        Assert.Equal(heartbeat.IAmAliveTime, after.Members[0].Item1.IAmAliveTime);
        Assert.Equal(SiloStatus.Joining, after.Members[0].Item1.Status);
        Assert.Equal(data.Version, after.Version);
        Assert.Equal(etag, after.Members[0].Item2);

        entry.Status = SiloStatus.Active;
        Assert.True(await table.UpdateRow(entry, etag, data.Version.Next()));
    }

    /// <summary>Many nodes write at once from the same read: exactly one wins, the others change nothing.</summary>
    [Fact]
    public async Task ConcurrentWrites_FromOneRead_ExactlyOneWins()
    {
        var table = await TableAsync();
        var silo = Silo(20_001, 1);
        Assert.True(await table.InsertRow(Entry(silo), (await table.ReadAll()).Version.Next()));
        for (var round = 0; round < 5; round++)
        {
            var data = await table.ReadAll();
            var (entry, etag) = data.Members.Single(m => m.Item1.SiloAddress.Equals(silo));
            var writers = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
            {
                var mine = Entry(silo, SiloStatus.Active);
                mine.SiloName = $"writer-{i}";
                // Half update the row, half insert new silos: all compete for the same table version.
                return i % 2 == 0
                    ? await new PostgresMembershipTable(DataSource, "alpha").UpdateRow(mine, etag, data.Version.Next())
                    : await new PostgresMembershipTable(DataSource, "alpha").InsertRow(Entry(Silo(21_000 + (round * 10) + i, 1)), data.Version.Next());
            })).ToArray();
            var results = await Task.WhenAll(writers);
            Assert.Equal(1, results.Count(won => won));
            var after = await table.ReadAll();
            Assert.Equal(data.Version.Version + 1, after.Version.Version);
            Assert.Equal(data.Members.Count + (results.Where((won, i) => won && i % 2 == 1).Any() ? 1 : 0), after.Members.Count);
        }
    }

    [Fact]
    public async Task ClusterIds_KeepTheirRowsApart()
    {
        var alpha = await TableAsync("alpha");
        var beta = await TableAsync("beta");
        Assert.True(await alpha.InsertRow(Entry(Silo(20_001, 1)), (await alpha.ReadAll()).Version.Next()));
        Assert.Empty((await beta.ReadAll()).Members);
        Assert.Equal(0, (await beta.ReadAll()).Version.Version);

        await alpha.DeleteMembershipTableEntries("alpha");
        Assert.Empty((await alpha.ReadAll()).Members);
    }

    [Fact]
    public async Task CleanupDefunct_DeletesOnlyDeadRowsOlderThanTheDate()
    {
        var table = await TableAsync();
        var oldDead = Entry(Silo(20_001, 1), SiloStatus.Dead);
        var recentDead = Entry(Silo(20_002, 1), SiloStatus.Dead);
        recentDead.IAmAliveTime = new DateTime(2026, 12, 4, 14, 0, 0, DateTimeKind.Utc);
        // Long silent, but voted dead recently: kept, as the vote is its last update.
        var votedDead = Entry(Silo(20_003, 1), SiloStatus.Dead);
        votedDead.SuspectTimes = [Tuple.Create(Silo(20_002, 1), new DateTime(2026, 12, 4, 14, 0, 0, DateTimeKind.Utc))];
        var oldActive = Entry(Silo(20_004, 1), SiloStatus.Active);
        foreach (var entry in new[] { oldDead, recentDead, votedDead, oldActive })
        {
            Assert.True(await table.InsertRow(entry, (await table.ReadAll()).Version.Next()));
        }

        await table.CleanupDefunctSiloEntries(new DateTimeOffset(2026, 12, 4, 13, 0, 0, TimeSpan.Zero));
        var left = (await table.ReadAll()).Members.Select(m => m.Item1.SiloAddress.Endpoint.Port).Order().ToArray();
        Assert.Equal([20_002, 20_003, 20_004], left);
    }
}
