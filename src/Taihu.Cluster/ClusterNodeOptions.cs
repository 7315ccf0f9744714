using System.Net;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;
using Taihu.Platform;

namespace Taihu.Cluster;

/// <summary>
/// Settings of a Taihu cluster (section <c>Cluster</c>). Off by default: one process on its own store, with no
/// Orleans at all. On, every node is the same server with an Orleans silo beside its listeners, its membership kept
/// in the PostgreSQL database that <c>Storage:ConnectionString</c> names. The failure-detection settings map to
/// Orleans' <c>ClusterMembershipOptions</c>; each default here is Orleans' own.
/// </summary>
public sealed class ClusterNodeOptions
{
    /// <summary>The configuration section these settings are read from.</summary>
    public const string SectionName = "Cluster";

    /// <summary>Off: a single process, no silo. On: this server is a node of the cluster <see cref="ClusterId"/>.</summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// The cluster's name. Nodes of one name find each other in the database; two clusters may share a database
    /// only under different names (their membership rows are kept apart by it).
    /// </summary>
    public string ClusterId { get; set; } = "taihu";

    /// <summary>The port nodes talk to each other on (TCP). Orleans' default; every node needs one the others can reach.</summary>
    public int SiloPort { get; set; } = 11_111;

    /// <summary>
    /// The port external Orleans clients would connect to. -1 (the default): no gateway, as no client outside the
    /// nodes needs one yet.
    /// </summary>
    public int GatewayPort { get; set; } = -1;

    /// <summary>
    /// The address the other nodes reach this one at (an IP address). Empty: Orleans picks this machine's first
    /// network address. On one machine (tests) 127.0.0.1.
    /// </summary>
    public string? AdvertisedAddress { get; set; }

    /// <summary>How long a probe of another node may take before it counts as missed (Orleans' default 5 s).</summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Missed probes after which a node suspects another (Orleans' default 3).</summary>
    public int NumMissedProbesLimit { get; set; } = 3;

    /// <summary>How many other nodes each node probes (Orleans' default 3).</summary>
    public int NumProbedSilos { get; set; } = 3;

    /// <summary>Suspicions (votes) that declare a node dead (Orleans' default 2; at most <see cref="NumProbedSilos"/>).</summary>
    public int NumVotesForDeathDeclaration { get; set; } = 2;

    /// <summary>
    /// How often each node pings every other node (Taihu's own watch, beside Orleans' probes). When a ping fails or
    /// is late and the other node's silo port then refuses connections twice in a row, its process is gone, and this
    /// node declares it dead at once instead of waiting for the probes. 1 s by default; 0 turns the watch off.
    /// </summary>
    public TimeSpan PeerCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often each node reads the whole membership table, besides the changes it hears of (Orleans' default 60 s).</summary>
    public TimeSpan TableRefreshTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How often a node writes its heartbeat into the table (Orleans' default 5 min; diagnostic).</summary>
    public TimeSpan IAmAliveTablePublishTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a suspicion vote counts (Orleans' default 2 min).</summary>
    public TimeSpan DeathVoteExpirationTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>How long the rows of dead nodes are kept before they are deleted (Orleans' default 7 days).</summary>
    public TimeSpan DefunctSiloExpiration { get; set; } = TimeSpan.FromDays(7);

    /// <summary>
    /// How far a node's clock may be from the PostgreSQL server's when the node starts; a node further off refuses
    /// to start (see <see cref="ClusterClock"/>). 2 s by default.
    /// </summary>
    public TimeSpan MaxClockSkew { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// On (the default): a client's QoS 1 or 2 message that other nodes' subscribers want is acknowledged (PUBACK,
    /// PUBREC) only once those nodes have it, so that a node that dies loses no message its publisher was told was
    /// accepted; it costs the publisher a round trip between nodes (batched with the node's other traffic to that
    /// node). Off: acknowledged when routed, as on one server, and what was queued for the other nodes is lost
    /// with a node that dies.
    /// </summary>
    public bool AckAfterForward { get; set; } = true;

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid or the cluster is off.</summary>
    public IReadOnlyList<string> Validate(StorageOptions storage)
    {
        ArgumentNullException.ThrowIfNull(storage);
        var problems = new List<string>();
        if (!Enabled)
        {
            return problems;
        }

        if (storage.Provider != StorageProvider.PostgreSql)
        {
            problems.Add("Cluster:Enabled needs Storage:Provider PostgreSql (and Storage:ConnectionString): the nodes of a cluster share one PostgreSQL database.");
        }

        if (!IsValidClusterId(ClusterId))
        {
            problems.Add("Cluster:ClusterId must be 1 to 64 letters, digits, '-', '_' or '.'.");
        }

        if (SiloPort is < 1 or > 65_535)
        {
            problems.Add("Cluster:SiloPort must be a port number from 1 to 65535 (the other nodes connect to it, so it cannot be chosen by the OS).");
        }

        if (GatewayPort is not -1 and (< 1 or > 65_535))
        {
            problems.Add("Cluster:GatewayPort must be -1 (no gateway) or a port number from 1 to 65535.");
        }
        else if (GatewayPort == SiloPort)
        {
            problems.Add("Cluster:GatewayPort must differ from Cluster:SiloPort.");
        }

        if (!string.IsNullOrEmpty(AdvertisedAddress) && !IPAddress.TryParse(AdvertisedAddress, out _))
        {
            problems.Add($"Cluster:AdvertisedAddress must be an IP address (such as 10.0.0.5), not '{AdvertisedAddress}'.");
        }

        foreach (var (name, value, least) in new[]
        {
            (nameof(ProbeTimeout), ProbeTimeout, TimeSpan.FromMilliseconds(100)),
            (nameof(TableRefreshTimeout), TableRefreshTimeout, TimeSpan.FromMilliseconds(100)),
            (nameof(IAmAliveTablePublishTimeout), IAmAliveTablePublishTimeout, TimeSpan.FromMilliseconds(100)),
            (nameof(DeathVoteExpirationTimeout), DeathVoteExpirationTimeout, TimeSpan.FromMilliseconds(100)),
            (nameof(DefunctSiloExpiration), DefunctSiloExpiration, TimeSpan.FromMinutes(1)),
            (nameof(MaxClockSkew), MaxClockSkew, TimeSpan.FromMilliseconds(10)),
        })
        {
            if (value < least)
            {
                problems.Add($"Cluster:{name} must be at least {least} (a duration such as 00:00:05).");
            }
        }

        if (PeerCheckInterval != TimeSpan.Zero && PeerCheckInterval < TimeSpan.FromMilliseconds(100))
        {
            problems.Add("Cluster:PeerCheckInterval must be 00:00:00 (off) or at least 00:00:00.1.");
        }

        foreach (var (name, value) in new[] { (nameof(NumMissedProbesLimit), NumMissedProbesLimit), (nameof(NumProbedSilos), NumProbedSilos), (nameof(NumVotesForDeathDeclaration), NumVotesForDeathDeclaration) })
        {
            if (value is < 1 or > 100)
            {
                problems.Add($"Cluster:{name} must be from 1 to 100.");
            }
        }

        if (NumVotesForDeathDeclaration > NumProbedSilos)
        {
            problems.Add("Cluster:NumVotesForDeathDeclaration must be at most Cluster:NumProbedSilos: a node can only be voted dead by the nodes that probe it.");
        }

        return problems;
    }

    /// <summary>Letters, digits, '-', '_' and '.', 1 to 64 of them: safe in logs, table rows and Orleans' own names.</summary>
    public static bool IsValidClusterId(string? clusterId)
    {
        if (string.IsNullOrEmpty(clusterId) || clusterId.Length > 64)
        {
            return false;
        }

        foreach (var c in clusterId)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>Checks <see cref="ClusterNodeOptions"/> against the storage settings at start (with ValidateOnStart).</summary>
internal sealed class ClusterNodeOptionsValidator(IOptions<StorageOptions> storage) : IValidateOptions<ClusterNodeOptions>
{
    public ValidateOptionsResult Validate(string? name, ClusterNodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        StorageOptions storageOptions;
        try
        {
            storageOptions = storage.Value;
        }
        catch (OptionsValidationException)
        {
            // A bad Storage setting is reported as its own problem; the cluster's own are checked all the same.
            storageOptions = new StorageOptions { Provider = StorageProvider.PostgreSql };
        }

        return OptionsProblems.Result(options.Validate(storageOptions));
    }
}
