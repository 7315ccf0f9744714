using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Hosting;

/// <summary>Registers the platform: storage, services, ingest, and its plug-ins into the broker.</summary>
public static class PlatformHostingExtensions
{
    /// <summary>
    /// Adds the platform. <paramref name="dataDirectory"/> gives the SQLite file's folder. Options (StorageOptions,
    /// IngestOptions, SecurityOptions) are bound by the host and validated here, once, when the host starts. Call
    /// before the broker is added, so that the schema is migrated before any listener accepts a device.
    /// </summary>
    public static IServiceCollection AddTaihuPlatform(this IServiceCollection services, Func<IServiceProvider, string> dataDirectory)
    {
        services.AddOptions<StorageOptions>().ValidateOnStart();
        services.AddOptions<IngestOptions>().ValidateOnStart();
        services.AddOptions<SecurityOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<StorageOptions>, StorageOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<IngestOptions>, IngestOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<SecurityOptions>, SecurityOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(sp => PlatformDatabase.Create(sp.GetRequiredService<IOptions<StorageOptions>>().Value, dataDirectory(sp)));
        services.AddSingleton<ITenantStore, SqlTenantStore>();
        services.AddSingleton(sp =>
        {
            var security = sp.GetRequiredService<IOptions<SecurityOptions>>().Value;
            return new DeviceCredentialsCache(sp.GetRequiredService<TimeProvider>(), security.DeviceCacheSize, TimeSpan.FromSeconds(security.DeviceCacheSeconds),
                sp.GetRequiredService<Events.EventSignal>());
        });
        services.AddSingleton<IDeviceStore, SqlDeviceStore>();
        services.AddSingleton<LiveFeed>();
        services.AddSingleton<Events.EventSignal>();
        services.AddSingleton<Events.DeviceDirectory>();
        services.AddSingleton<ITelemetryStore, SqlTelemetryStore>();
        services.AddSingleton<IAttributeStore, SqlAttributeStore>();
        services.AddSingleton<IAuditLog, SqlAuditLog>();
        services.AddSingleton<TelemetryIngest>();
        services.AddSingleton<DeviceMessaging>();
        services.AddSingleton<DeviceRevocations>();
        services.AddSingleton<DeviceService>();
        services.AddSingleton<IDeviceService>(sp => sp.GetRequiredService<DeviceService>());
        services.AddSingleton<DeviceDataService>();
        services.AddSingleton<TenantService>();
        services.AddSingleton<Security.LoginLimiter>();
        services.AddSingleton<Security.DeviceAuthenticationLimiter>();
        services.AddSingleton<ProvisioningService>();
        services.AddSingleton<GatewayHandler>();
        // On a cluster node the devices' connectivity is owned by partitions shared by all nodes (IConnectivityElsewhere).
        services.AddSingleton(sp => new ConnectivityTracker(sp.GetRequiredService<IAttributeStore>(), sp.GetRequiredService<IDeviceStore>(),
            sp.GetRequiredService<TelemetryIngest>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ConnectivityTracker>>(),
            sp.GetRequiredService<Events.EventSignal>())
        {
            Elsewhere = sp.GetService<IConnectivityElsewhere>(),
        });
        services.AddSingleton<ConnectivityOwners>();
        services.AddSingleton<Rpc.IRpcStore, Rpc.SqlRpcStore>();
        services.AddSingleton<Rpc.RpcDeviceLink>();
        services.AddSingleton<Rpc.RpcService>();
        services.AddSingleton<ProtocolDevices>();
        services.AddSingleton<Alarms.IAlarmStore, Alarms.SqlAlarmStore>();
        services.AddSingleton<Alarms.AlarmFeed>();
        services.AddSingleton<Alarms.AlarmService>();
        services.AddSingleton<BrokerUsers.BrokerUserDirectory>();
        services.AddSingleton<BrokerUsers.ITenantBrokerUserStore, BrokerUsers.SqlTenantBrokerUserStore>();
        services.AddSingleton<BrokerUsers.TenantBrokerUserService>();
        services.AddSingleton<BrokerUsers.ConnectedClientService>();
        services.AddSingleton<DeviceConnector>();
        services.AddSingleton<IMqttAuthenticator>(sp => sp.GetRequiredService<DeviceConnector>());
        services.AddSingleton<IMqttAuthorizer>(sp => sp.GetRequiredService<DeviceConnector>());
        services.AddSingleton<IPublishObserver>(sp => sp.GetRequiredService<DeviceConnector>());
        services.AddSingleton<IClientLifecycleObserver>(sp => sp.GetRequiredService<DeviceConnector>());
        // Retained messages and persistent sessions survive a restart (the broker loads them after the migration
        // below and writes them behind, in the background). A cluster node registers its own around this one first.
        services.TryAddSingleton<IBrokerStateStore, SqlBrokerStateStore>();
        services.AddHostedService<PlatformStartup>();
        // After the migration: persistent RPC calls not yet final are taken back (their expiries armed again).
        services.AddHostedService<Rpc.RpcStartup>();
        services.AddHostedService(sp => sp.GetRequiredService<ConnectivityTracker>());
        services.AddHostedService<RetentionService>();
        // Rules and integrations read the event log. The engine is registered as a hosted service before the
        // dispatcher so that it stops after it: its states are written once no more events come.
        services.AddSingleton<Rules.AlarmRulesEngine>();
        services.AddSingleton<Events.IEventConsumer>(sp => sp.GetRequiredService<Rules.AlarmRulesEngine>());
        services.AddHostedService(sp => sp.GetRequiredService<Rules.AlarmRulesEngine>());
        // Integrations: the consumer fills each integration's outbox; one delivery owner per integration sends it.
        services.AddOptions<Integrations.IntegrationOptions>()
            .Validate(o => o.MaxOutboxEvents > 0, "Integrations:MaxOutboxEvents must be at least 1.")
            .Validate(o => o.MaxInFlight is > 0 and <= 1024, "Integrations:MaxInFlight is 1 to 1024.")
            .Validate(o => o.ClientRpcTimeoutMs is >= 100 and <= 600_000, "Integrations:ClientRpcTimeoutMs is 100 to 600000 (10 min).")
            .Validate(o => o.MaxPendingClientRpc >= 0, "Integrations:MaxPendingClientRpc is 0 or more.")
            .ValidateOnStart();
        services.AddSingleton<Integrations.SqlIntegrationStore>();
        services.AddSingleton<Integrations.IntegrationRegistry>();
        services.AddSingleton<Integrations.IntegrationService>();
        services.AddSingleton<Integrations.IntegrationOutbox>();
        services.AddSingleton<Rpc.ClientRpcRequests>();
        services.AddSingleton<Events.IEventConsumer>(sp => sp.GetRequiredService<Integrations.IntegrationOutbox>());
        services.AddSingleton<Integrations.IntegrationDelivery>();
        services.AddHostedService(sp => sp.GetRequiredService<Integrations.IntegrationDelivery>());
        services.AddSingleton<Events.EventDispatcher>();
        services.AddHostedService(sp => sp.GetRequiredService<Events.EventDispatcher>());
        return services;
    }
}

/// <summary>Brings the schema up to date and creates the first administrator, before the listeners open.</summary>
internal sealed partial class PlatformStartup(PlatformDatabase database, TenantService tenants, TelemetryIngest ingest, ILogger<PlatformStartup> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var applied = await database.MigrateAsync(cancellationToken);
        LogStorage(logger, database.Provider, applied);
        await tenants.EnsureSysAdminAsync(cancellationToken);
    }

    /// <summary>Everything queued is written before the process ends.</summary>
    public async Task StopAsync(CancellationToken cancellationToken) => await ingest.DisposeAsync();

    [LoggerMessage(EventId = 2401, Level = LogLevel.Information, Message = "Storage: {Provider}, {Applied} migration step(s) applied")]
    private static partial void LogStorage(ILogger logger, StorageProvider provider, int applied);
}

/// <summary>Deletes telemetry older than each tenant's time-to-live, in the background.</summary>
internal sealed partial class RetentionService(TenantService tenants, ITelemetryStore telemetry, IOptions<IngestOptions> options, TimeProvider time, ILogger<RetentionService> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.RetentionInterval, time);
        try
        {
            do
            {
                await SweepAsync(stoppingToken);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async Task SweepAsync(CancellationToken cancellationToken)
    {
        try
        {
            var now = time.GetUtcNow().ToUnixTimeMilliseconds();
            foreach (var (tenant, ttlDays) in await tenants.RetentionPlanAsync(cancellationToken))
            {
                if (ttlDays > 0)
                {
                    var deleted = await telemetry.DeleteOlderThanAsync(tenant, now - (ttlDays * 86_400_000L), cancellationToken);
                    if (deleted > 0)
                    {
                        LogDeleted(logger, deleted, tenant, ttlDays);
                    }
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogFailed(logger, e);
        }
    }

    [LoggerMessage(EventId = 2501, Level = LogLevel.Information, Message = "Retention deleted {Count} points of tenant {Tenant} older than {Days} days")]
    private static partial void LogDeleted(ILogger logger, long count, Guid tenant, int days);

    [LoggerMessage(EventId = 2502, Level = LogLevel.Warning, Message = "The retention sweep failed; it runs again at the next interval")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
