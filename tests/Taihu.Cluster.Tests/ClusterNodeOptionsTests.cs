using Taihu.Platform;

namespace Taihu.Cluster.Tests;

/// <summary>The <c>Cluster</c> settings' checks at start.</summary>
public sealed class ClusterNodeOptionsTests
{
    private static readonly StorageOptions s_postgres = new() { Provider = StorageProvider.PostgreSql, ConnectionString = "Host=127.0.0.1" };

    [Fact]
    public void Off_NothingChecked_EvenOnSqliteWithBadValues()
    {
        var options = new ClusterNodeOptions { Enabled = false, SiloPort = -5, ClusterId = "" };
        Assert.Empty(options.Validate(new StorageOptions()));
    }

    [Fact]
    public void On_Defaults_OnPostgres_Valid()
    {
        Assert.Empty(new ClusterNodeOptions { Enabled = true }.Validate(s_postgres));
    }

    [Fact]
    public void On_Sqlite_NamesTheStorageSetting()
    {
        var problem = Assert.Single(new ClusterNodeOptions { Enabled = true }.Validate(new StorageOptions()));
        Assert.Contains("Storage:Provider PostgreSql", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "Cluster:ClusterId")]
    [InlineData("two words", "Cluster:ClusterId")]
    public void On_BadClusterId_Refused(string clusterId, string setting)
    {
        var problem = Assert.Single(new ClusterNodeOptions { Enabled = true, ClusterId = clusterId }.Validate(s_postgres));
        Assert.StartsWith(setting, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void On_EveryBadValue_ReportedTogether()
    {
        var options = new ClusterNodeOptions
        {
            Enabled = true,
            SiloPort = 0,
            GatewayPort = 70_000,
            AdvertisedAddress = "node-1.local",
            ProbeTimeout = TimeSpan.FromMilliseconds(10),
            NumProbedSilos = 1,
            NumVotesForDeathDeclaration = 2,
            PeerCheckInterval = TimeSpan.FromMilliseconds(50),
        };
        var problems = options.Validate(s_postgres);
        Assert.Contains(problems, p => p.StartsWith("Cluster:SiloPort", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Cluster:GatewayPort", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Cluster:AdvertisedAddress", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Cluster:ProbeTimeout", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Cluster:NumVotesForDeathDeclaration", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Cluster:PeerCheckInterval", StringComparison.Ordinal));
        Assert.Equal(6, problems.Count);
    }

    [Fact]
    public void On_GatewayOnTheSiloPort_Refused()
    {
        var problem = Assert.Single(new ClusterNodeOptions { Enabled = true, SiloPort = 11_111, GatewayPort = 11_111 }.Validate(s_postgres));
        Assert.Contains("must differ", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void On_PeerCheckIntervalZero_TurnsTheWatchOff_AndIsValid() =>
        Assert.Empty(new ClusterNodeOptions { Enabled = true, PeerCheckInterval = TimeSpan.Zero }.Validate(s_postgres));
}
