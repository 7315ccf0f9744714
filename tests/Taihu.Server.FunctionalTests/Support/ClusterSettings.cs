using System.Globalization;
using Taihu.Platform.Tests;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>The settings of a cluster node in the tests: PostgreSQL, a silo port on loopback, and short failure detection.</summary>
public static class ClusterSettings
{
    /// <summary>Probes every second, two missed make a suspicion: a killed node is seen dead within seconds.</summary>
    public static Dictionary<string, string> Node(PostgresServer postgres, string database, string clusterId, int siloPort) => new()
    {
        ["Storage__Provider"] = "PostgreSql",
        ["Storage__ConnectionString"] = postgres.ConnectionString(database),
        ["Cluster__Enabled"] = "true",
        ["Cluster__ClusterId"] = clusterId,
        ["Cluster__SiloPort"] = siloPort.ToString(CultureInfo.InvariantCulture),
        ["Cluster__AdvertisedAddress"] = "127.0.0.1",
        ["Cluster__ProbeTimeout"] = "00:00:01",
        ["Cluster__NumMissedProbesLimit"] = "2",
        ["Cluster__TableRefreshTimeout"] = "00:00:02",
        ["Cluster__IAmAliveTablePublishTimeout"] = "00:00:02",
    };
}
