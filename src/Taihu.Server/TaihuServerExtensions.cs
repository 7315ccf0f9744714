using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using Taihu.Broker;
using Taihu.Broker.Hosting;
using Taihu.Platform;
using Taihu.Platform.Hosting;
using Taihu.Platform.Telemetry;
using Taihu.Server.Api;

namespace Taihu.Server;

/// <summary>Wiring of the one executable: options from configuration, the broker, metrics, health.</summary>
public static partial class TaihuServerExtensions
{
    /// <summary>Every problem with the "Broker" and "Listeners" settings, checked before anything starts.</summary>
    public static IReadOnlyList<string> FindConfigurationProblems(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var broker = new BrokerOptions();
        var listeners = new ListenerOptions();
        var server = new ServerOptions();
        var storage = new StorageOptions();
        var ingest = new IngestOptions();
        var security = new SecurityOptions();
        try
        {
            configuration.GetSection("Broker").Bind(broker);
            configuration.GetSection("Listeners").Bind(listeners);
            configuration.GetSection(ServerOptions.SectionName).Bind(server);
            configuration.GetSection("Storage").Bind(storage);
            configuration.GetSection("Ingest").Bind(ingest);
            configuration.GetSection("Security").Bind(security);
        }
        catch (InvalidOperationException ex)
        {
            return [ex.Message];
        }

        var problems = new List<string>();
        if (storage.Provider == StorageProvider.PostgreSql && string.IsNullOrWhiteSpace(storage.ConnectionString))
        {
            problems.Add("Storage:ConnectionString is required when Storage:Provider is PostgreSql.");
        }

        if (ingest.QueueCapacity < 1 || ingest.MaxBatchPoints < 1 || ingest.MaxPayloadBytes < 1)
        {
            problems.Add("Ingest:QueueCapacity, Ingest:MaxBatchPoints and Ingest:MaxPayloadBytes must be positive.");
        }

        if (ingest.MaxFutureSkew < TimeSpan.Zero)
        {
            problems.Add("Ingest:MaxFutureSkew must not be negative.");
        }

        List<string> all = [.. broker.Validate(), .. listeners.Validate(), .. server.Validate(), .. security.Validate(), .. problems];
        if (all.Count == 0)
        {
            // The broker user files are read only once every setting is valid: their problems name a file and line.
            all.AddRange(Taihu.Platform.BrokerUsers.BrokerUserDirectory.FindProblems(security));
        }

        return all;
    }

    public static WebApplicationBuilder AddTaihu(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<BrokerOptions>().BindConfiguration("Broker");
        builder.Services.AddOptions<ListenerOptions>().BindConfiguration("Listeners")
            // The development certificate lives with the host's other files unless the setting says otherwise.
            .PostConfigure<IOptions<ServerOptions>>((listeners, server) => listeners.DevelopmentCertificateDirectory ??= server.Value.DataDirectory);
        builder.Services.AddOptions<ServerOptions>().BindConfiguration(ServerOptions.SectionName);
        builder.Services.AddOptions<StorageOptions>().BindConfiguration("Storage");
        builder.Services.AddOptions<IngestOptions>().BindConfiguration("Ingest");
        builder.Services.AddOptions<SecurityOptions>().BindConfiguration("Security");
        // The platform first: its start-up (schema, first administrator) runs before the listeners open.
        builder.Services.AddTaihuPlatform(sp => sp.GetRequiredService<IOptions<ServerOptions>>().Value.DataDirectory);
        builder.Services.AddSingleton<JwtTokens>();
        builder.Services.AddOpenApi();
        // A body that is not JSON, or a query value of the wrong type, reaches the API's error handler, which
        // answers with problem details like every other error.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        builder.AddMqttBroker();
        builder.Services.AddSingleton<ServerEndpoints>();
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            // The API's HTTP listener is the host's; it binds where the broker's listeners do.
            var sp = kestrel.ApplicationServices;
            var server = sp.GetRequiredService<IOptions<ServerOptions>>().Value;
            if (server.HttpPort >= 0)
            {
                var endpoints = sp.GetRequiredService<ServerEndpoints>();
                kestrel.Listen(sp.GetRequiredService<IOptions<ListenerOptions>>().Value.ResolveBindAddress(), server.HttpPort, listen => endpoints.Http = listen);
            }
        });
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(BrokerMetrics.MeterName)
            .AddMeter(PlatformMetrics.MeterName)
            // .NET's own runtime meter: GC allocations, heap size, thread pool; the load generator reads
            // dotnet_gc_heap_total_allocated to report allocations per delivered message.
            .AddMeter("System.Runtime")
            .AddPrometheusExporter());
        builder.Services.AddHostedService<StartupBanner>();
        return builder;
    }

    public static WebApplication MapTaihu(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseApiErrors();
        app.UseRequestBodyLimits();
        app.MapMqttWebSockets();
        app.MapOpenApi("/openapi/{documentName}.json");
        app.MapAuthApi();
        app.MapTenantApi();
        app.MapBrokerUserApi();
        app.MapDeviceApi();
        app.MapTelemetryApi();
        app.MapAuditApi();
        app.MapDeviceHttpApi();
        app.MapGet("/healthz", (MqttBroker broker) => Results.Ok(new { status = "healthy", connections = broker.ConnectionCount }))
            .WithName("Health")
            .WithSummary("Liveness check");
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }

    /// <summary>Logs where each listener is once Kestrel has bound them.</summary>
    private sealed partial class StartupBanner(IHostApplicationLifetime lifetime, BrokerEndpoints endpoints, ServerEndpoints server, IOptions<ListenerOptions> listeners, ILogger<StartupBanner> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            lifetime.ApplicationStarted.Register(() =>
            {
                var options = listeners.Value;
                LogListening(logger, options.BindAddress, endpoints.TcpPort, endpoints.TlsPort, endpoints.WebSocketPort, options.WebSocketPath, endpoints.SecureWebSocketPort, server.HttpPort);
                if (string.IsNullOrEmpty(options.CertificatePath) && endpoints.TlsPort > 0)
                {
                    var path = Path.GetFullPath(Path.Combine(DevelopmentCertificate.Directory(options), DevelopmentCertificate.CertificateFileName));
                    LogDevCertificate(logger, path);
                }
            });
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Taihu listening on {Address}: MQTT tcp {Tcp}, tls {Tls}, ws {Ws} ({Path}), wss {Wss}; HTTP {Http} (/healthz, /metrics)")]
        private static partial void LogListening(ILogger logger, string address, int tcp, int tls, int ws, string path, int wss, int http);

        [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "TLS uses the self-signed development certificate {Path}; clients can trust it with --cafile")]
        private static partial void LogDevCertificate(ILogger logger, string path);
    }
}
