using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Orleans;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Taihu.Broker.Extensibility;
using Taihu.Cluster.Devices;
using Taihu.Cluster.Events;
using Taihu.Cluster.Mqtt;
using Taihu.Cluster.Succession;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;
using Taihu.Platform;
using Taihu.Platform.Events;
using Taihu.Platform.Storage;

namespace Taihu.Cluster;

/// <summary>Makes the server a node of a Taihu cluster when <c>Cluster:Enabled</c> is true; otherwise adds nothing of Orleans.</summary>
public static class ClusterHostingExtensions
{
    /// <summary>
    /// Binds and validates the <c>Cluster</c> section, and when it is enabled adds the start-up checks and an
    /// Orleans silo with its membership in PostgreSQL. Call before the platform is added, so that a node that cannot
    /// join (PostgreSQL unreachable, another cluster's database, newer tables) stops before the platform writes.
    /// </summary>
    public static IHostApplicationBuilder AddTaihuCluster(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<ClusterNodeOptions>().BindConfiguration(ClusterNodeOptions.SectionName).ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ClusterNodeOptions>, ClusterNodeOptionsValidator>());
        // Whether to host a silo is decided while the host is composed. A value that is not a boolean adds none;
        // the options' binder then reports it with the other settings' problems.
        if (bool.TryParse(builder.Configuration[$"{ClusterNodeOptions.SectionName}:{nameof(ClusterNodeOptions.Enabled)}"], out var enabled) && enabled)
        {
            AddSilo(builder);
        }

        return builder;
    }

    /// <summary>Kept apart so that a single server never loads Orleans' assemblies (compiling this method would).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AddSilo(IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton(sp => ClusterDatabase.Create(sp.GetRequiredService<IOptions<StorageOptions>>().Value));
        builder.Services.AddHostedService<ClusterStartup>();
        builder.Services.AddSingleton<ClusterNodes>();

        // The event log's work done once cluster-wide (alarm rules, integrations) runs on the node holding the
        // lease; every node feeds its live subscribers from the shared log (docs/scaling.md, "The platform's events").
        builder.Services.AddSingleton<PostgresEventWorkLease>();
        builder.Services.AddSingleton<IEventWorkLease>(sp => sp.GetRequiredService<PostgresEventWorkLease>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<PostgresEventWorkLease>());
        builder.Services.AddHostedService<LiveFeedFollower>();

        // A node that dies is succeeded by the lease holder (docs/scaling.md, "When a node dies"): the wills of this
        // node's clients and which sessions it wrote are kept where the successor finds them. Registered before the
        // silo and the platform, so that at an orderly stop they forget this node's rows after everything else.
        builder.Services.AddSingleton<ClusterWills>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ClusterWills>());
        builder.Services.AddSingleton(sp => new ClusterSessionStore(
            ActivatorUtilities.CreateInstance<SqlBrokerStateStore>(sp), sp.GetRequiredService<ClusterDatabase>(), sp.GetRequiredService<ILocalSiloDetails>()));
        builder.Services.AddSingleton<IBrokerStateStore>(sp => sp.GetRequiredService<ClusterSessionStore>());
        builder.Services.AddHostedService<ClusterSessionsAtStop>();

        // MQTT across nodes: the broker finds the link in the services and uses it (see IMqttClusterLink).
        builder.Services.AddSingleton<ClusterMqttLink>();
        builder.Services.AddSingleton<IMqttClusterLink>(sp => sp.GetRequiredService<ClusterMqttLink>());
        builder.UseOrleans(silo =>
        {
            silo.AddGrainService<NodeLinkService>();
            silo.Services.AddSingleton<INodeLinkClient, NodeLinkClient>();

            // Device calls across nodes: a lightweight RPC call for a device connected to another node goes there.
            silo.AddGrainService<NodeDeviceService>();
            silo.Services.AddSingleton<OnNode<INodeDeviceService>>();
            silo.Services.AddSingleton<IRpcOwners, RpcOwnersAcrossNodes>();
            // Device and profile changes, and closing a device's connections, reach every node.
            silo.Services.AddSingleton<IDevicesElsewhere, DevicesAcrossNodes>();
            // A device's connectivity is owned once cluster-wide, by the grain of its partition; every node reports to it.
            silo.Services.AddSingleton<IConnectivityElsewhere, ConnectivityAcrossNodes>();
            silo.Services.AddHostedService<ConnectivityPartitionsAwake>();
            // Integration and alarm changes made through one node reach the others.
            silo.Services.AddHostedService<ChangesAcrossNodes>();
            silo.Services.AddHostedService<DeadNodeSuccession>();
            // A node whose process is gone (its port refuses connections) is declared dead without waiting for the probes.
            silo.AddGrainService<NodeWatchService>();
            silo.Services.AddSingleton<OnNode<INodeWatchService>>();
            silo.Services.AddHostedService<NodeWatch>();
            silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<ClusterMqttLink>());
            silo.Services.AddSingleton<IMembershipTable>(sp => new PostgresMembershipTable(
                sp.GetRequiredService<ClusterDatabase>().DataSource, sp.GetRequiredService<IOptions<ClusterNodeOptions>>().Value.ClusterId));
            silo.Services.AddOptions<ClusterOptions>().Configure<IOptions<ClusterNodeOptions>>((orleans, taihu) =>
            {
                orleans.ClusterId = taihu.Value.ClusterId;
                // The service id names durable state (grain storage, reminders) across deployments of a cluster.
                orleans.ServiceId = "taihu";
            });
            silo.Services.AddOptions<EndpointOptions>().Configure<IOptions<ClusterNodeOptions>>((endpoints, taihu) =>
            {
                var node = taihu.Value;
                endpoints.SiloPort = node.SiloPort;
                // Orleans takes 0 as "no gateway".
                endpoints.GatewayPort = node.GatewayPort < 0 ? 0 : node.GatewayPort;
                if (!string.IsNullOrEmpty(node.AdvertisedAddress))
                {
                    endpoints.AdvertisedIPAddress = IPAddress.Parse(node.AdvertisedAddress);
                }
            });
            silo.Services.AddOptions<ClusterMembershipOptions>().Configure<IOptions<ClusterNodeOptions>>((membership, taihu) =>
            {
                var node = taihu.Value;
                membership.ProbeTimeout = node.ProbeTimeout;
                membership.NumMissedProbesLimit = node.NumMissedProbesLimit;
                membership.NumProbedSilos = node.NumProbedSilos;
                membership.NumVotesForDeathDeclaration = node.NumVotesForDeathDeclaration;
                membership.TableRefreshTimeout = node.TableRefreshTimeout;
                membership.IAmAliveTablePublishTimeout = node.IAmAliveTablePublishTimeout;
                membership.DeathVoteExpirationTimeout = node.DeathVoteExpirationTimeout;
                membership.DefunctSiloExpiration = node.DefunctSiloExpiration;
            });
        });
    }
}

/// <summary>The connections of the cluster's own tables, to the platform's PostgreSQL database.</summary>
public sealed class ClusterDatabase(NpgsqlDataSource dataSource) : IDisposable
{
    public NpgsqlDataSource DataSource { get; } = dataSource;

    /// <summary>Where the database is, for messages (host and port, never the password).</summary>
    public string Where
    {
        get
        {
            var settings = new NpgsqlConnectionStringBuilder(DataSource.ConnectionString);
            return string.Create(CultureInfo.InvariantCulture, $"{settings.Host}:{settings.Port} (database {settings.Database})");
        }
    }

    public static ClusterDatabase Create(StorageOptions storage)
    {
        ArgumentNullException.ThrowIfNull(storage);
        return new ClusterDatabase(NpgsqlDataSource.Create(storage.ConnectionString ?? ""));
    }

    public void Dispose() => DataSource.Dispose();
}

/// <summary>
/// Before the silo starts: PostgreSQL answers, this node's clock agrees with it (<see cref="ClusterClock"/>), and the cluster's tables are this build's and this cluster's
/// (<see cref="ClusterSchema.PrepareAsync"/>). Any failure stops the server with <see cref="ClusterStartupException"/>.
/// </summary>
/// <remarks>Once the server has started (the silo has joined) it logs the nodes it sees; taking <see cref="ClusterNodes"/> also makes its gauge exist from the start.</remarks>
internal sealed partial class ClusterStartup(ClusterDatabase database, IOptions<ClusterNodeOptions> options, ClusterNodes nodes, TimeProvider clock, IHostApplicationLifetime lifetime,
    ILogger<ClusterStartup> logger)
    : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var clusterId = options.Value.ClusterId;
        try
        {
            await ClusterClock.CheckAsync(database.DataSource, clock, options.Value.MaxClockSkew, database.Where, cancellationToken);
            await ClusterSchema.PrepareAsync(database.DataSource, clusterId, cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or SocketException or TimeoutException)
        {
            throw new ClusterStartupException($"PostgreSQL at {database.Where}, named by Storage:ConnectionString, cannot be used for the cluster: {e.Message}", e);
        }

        LogReady(logger, clusterId, database.Where, ClusterSchema.CurrentVersion);
        lifetime.ApplicationStarted.Register(() =>
        {
            var active = 0;
            foreach (var node in nodes.List())
            {
                active += node.Status == nameof(SiloStatus.Active) ? 1 : 0;
            }

            LogJoined(logger, clusterId, active);
        });
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 2601, Level = LogLevel.Information, Message = "Cluster {ClusterId}: membership in PostgreSQL at {Where}, cluster tables version {Version}")]
    private static partial void LogReady(ILogger logger, string clusterId, string where, int version);

    [LoggerMessage(EventId = 2602, Level = LogLevel.Information, Message = "Cluster {ClusterId}: this node has joined; {Active} node(s) active")]
    private static partial void LogJoined(ILogger logger, string clusterId, int active);
}

/// <summary>One node as this node sees it.</summary>
/// <param name="Address">Where it is reached (address:port), and its generation (its start).</param>
public sealed record ClusterNode(string Address, int Generation, string Name, string Status, bool Self);

/// <summary>
/// The cluster's nodes as this node's membership view has them (Orleans' current snapshot), for the API, and the
/// gauge <c>taihu_cluster_nodes</c>: the nodes this node sees as active, itself included.
/// </summary>
public sealed class ClusterNodes
{
    /// <summary>The cluster's meter (the server exports it with the others).</summary>
    public const string MeterName = "Taihu.Cluster";

    private readonly IClusterMembershipService _membership;
    private readonly ILocalSiloDetails _local;
    private readonly IOptions<ClusterNodeOptions> _options;

    public ClusterNodes(IClusterMembershipService membership, ILocalSiloDetails local, IOptions<ClusterNodeOptions> options, IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        _membership = membership;
        _local = local;
        _options = options;
        meters.Create(MeterName).CreateObservableGauge("taihu.cluster.nodes", CountActive, "{node}", "Nodes this node sees as active, itself included.");
    }

    public string ClusterId => _options.Value.ClusterId;

    public IReadOnlyList<ClusterNode> List()
    {
        var nodes = new List<ClusterNode>();
        foreach (var (address, member) in _membership.CurrentSnapshot.Members)
        {
            nodes.Add(new ClusterNode(
                address.Endpoint.ToString(), address.Generation, member.Name ?? "", member.Status.ToString(), address.Equals(_local.SiloAddress)));
        }

        nodes.Sort((a, b) => string.CompareOrdinal(a.Address, b.Address) is var byAddress and not 0 ? byAddress : a.Generation.CompareTo(b.Generation));
        return nodes;
    }

    private int CountActive()
    {
        var active = 0;
        foreach (var (_, member) in _membership.CurrentSnapshot.Members)
        {
            if (member.Status == SiloStatus.Active)
            {
                active++;
            }
        }

        return active;
    }
}
