using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using Scalar.AspNetCore;
using Taihu.Broker;
using Taihu.Broker.Hosting;
using Taihu.Cluster;
using Taihu.Platform;
using Taihu.Platform.Hosting;
using Taihu.Platform.Telemetry;
using Taihu.Server.Api;
using Taihu.Server.Protocols.Coap;
using Taihu.Server.Protocols.Hj212;
using Taihu.Server.Protocols.Jt808;

namespace Taihu.Server;

/// <summary>Wiring of the one executable: options from configuration, the broker, metrics, health.</summary>
public static partial class TaihuServerExtensions
{
    /// <summary>
    /// Runs the options validation that ValidateOnStart registered (each options class's validator, once) and
    /// throws <see cref="InvalidSettingsException"/> with every problem, in plain English and naming each setting.
    /// </summary>
    public static void ValidateSettings(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        IReadOnlyList<string> problems;
        try
        {
            services.GetRequiredService<IStartupValidator>().Validate();
            return;
        }
        catch (OptionsValidationException e)
        {
            problems = [.. e.Failures];
        }
        catch (AggregateException e) when (e.InnerExceptions.All(inner => inner is OptionsValidationException))
        {
            problems = [.. e.InnerExceptions.SelectMany(inner => ((OptionsValidationException)inner).Failures)];
        }
        catch (InvalidOperationException e)
        {
            // From building an options value: the configuration binder's (a value that does not convert, naming
            // the setting and the type) is the one expected here.
            problems = [e.Message];
        }

        throw new InvalidSettingsException(problems);
    }

    public static WebApplicationBuilder AddTaihu(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // Request start and end logs off unless a setting turns them on (settings files, variables and arguments
        // all come after this default): while that category is enabled at all, ASP.NET Core makes every request an
        // Activity for its log scope, about 1 KB of garbage per request.
        builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource
        {
            InitialData = [new("Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics", "None")],
        });
        builder.Services.AddOptions<BrokerOptions>().BindConfiguration("Broker");
        builder.Services.AddOptions<ListenerOptions>().BindConfiguration("Listeners")
            .PostConfigure<IOptions<ServerOptions>>(KeepDevelopmentCertificateWithData);
        builder.Services.AddOptions<ServerOptions>().BindConfiguration(ServerOptions.SectionName).ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ServerOptions>, ServerOptionsValidator>());
        builder.Services.AddOptions<StorageOptions>().BindConfiguration("Storage");
        builder.Services.AddOptions<IngestOptions>().BindConfiguration("Ingest");
        builder.Services.AddOptions<SecurityOptions>().BindConfiguration("Security");
        builder.Services.AddOptions<Taihu.Platform.Integrations.IntegrationOptions>().BindConfiguration("Integrations");
        // For tests only: a server whose clock is off by a given amount (see ShiftedClock). Registered before the
        // platform and the broker add the system clock, which they do only when no clock is registered.
        if (builder.Configuration[ShiftedClock.Setting] is { Length: > 0 } offset)
        {
            builder.Services.AddSingleton<TimeProvider>(new ShiftedClock(TimeSpan.TryParse(offset, System.Globalization.CultureInfo.InvariantCulture, out var shift)
                ? shift
                : throw new InvalidSettingsException([$"{ShiftedClock.Setting} must be a duration such as 00:01:00 (ahead) or -00:01:00 (behind), not '{offset}'."])));
        }

        // A cluster node checks its database before the platform writes to it, and hosts an Orleans silo; with
        // Cluster:Enabled off (the default) this adds the settings' validation and nothing of Orleans.
        builder.AddTaihuCluster();
        // The platform first: its start-up (schema, first administrator) runs before the listeners open.
        builder.Services.AddTaihuPlatform(sp => sp.GetRequiredService<IOptions<ServerOptions>>().Value.DataDirectory);
        // After the platform, whose start-up makes the schema: on a cluster the keys are read from the database at start.
        builder.Services.AddClusterKeyRing(builder.Configuration);
        builder.Services.AddSingleton<JwtTokens>();
        builder.Services.AddOptions<LiveOptions>().BindConfiguration(LiveOptions.SectionName).ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<LiveOptions>, LiveOptionsValidator>());
        builder.Services.AddSingleton<LiveServices>();
        builder.Services.AddOpenApi();
        // A body that is not JSON, or a query value of the wrong type, reaches the API's error handler, which
        // answers with problem details like every other error.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        // Kestrel is configured while the application is built (WebApplication resolves the server), and
        // configuring the MQTT listeners constructs the broker and the platform, which read their options: check
        // every setting first, so that all the problems are reported together, in plain English, before any
        // service is built from a bad value. The host's own ValidateOnStart check then finds them validated.
        builder.WebHost.ConfigureKestrel((_, kestrel) => ValidateSettings(kestrel.ApplicationServices));
        builder.AddMqttBroker();
        builder.Services.AddSingleton<ServerEndpoints>();
        builder.AddHj212Listener();
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            // The API's HTTP listener is the host's; it binds where the broker's listeners do.
            var sp = kestrel.ApplicationServices;
            var server = sp.GetRequiredService<IOptions<ServerOptions>>().Value;
            var listeners = sp.GetRequiredService<IOptions<ListenerOptions>>().Value;
            if (server.HttpPort >= 0)
            {
                var endpoints = sp.GetRequiredService<ServerEndpoints>();
                kestrel.Listen(listeners.ResolveBindAddress(), server.HttpPort, listen => endpoints.Http = listen);
            }
            else if (listeners.TlsPort < 0 && listeners.WebSocketPort < 0 && listeners.SecureWebSocketPort < 0)
            {
                // Nothing is left on Kestrel (MQTT over plain TCP has a listener of its own): Kestrel with no endpoint
                // would bind http://localhost:5000 on its own. It gets a Unix socket in the data directory instead,
                // so that "off" opens no port.
                var socketPath = Path.Combine(Path.GetFullPath(server.DataDirectory), "http.sock");
                RemoveStaleUnixSocket(socketPath);
                kestrel.ListenUnixSocket(socketPath);
            }
        });
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(BrokerMetrics.MeterName)
            .AddMeter(PlatformMetrics.MeterName)
            // Made only on a cluster node (Cluster:Enabled).
            .AddMeter(ClusterNodes.MeterName)
            // .NET's own runtime meter: GC allocations, heap size, thread pool; the load generator reads
            // dotnet_gc_heap_total_allocated to report allocations per delivered message.
            .AddMeter("System.Runtime")
            .AddPrometheusExporter());
        builder.AddJt808Listener();
        builder.AddCoapListener();
        builder.Services.AddHostedService<StartupBanner>();
        return builder;
    }

    /// <summary>The development certificate lives with the host's other files unless the setting says otherwise.</summary>
    private static void KeepDevelopmentCertificateWithData(ListenerOptions listeners, IOptions<ServerOptions> server)
    {
        try
        {
            listeners.DevelopmentCertificateDirectory ??= server.Value.DataDirectory;
        }
        catch (OptionsValidationException)
        {
            // A bad ServerOptions setting is reported as its own problem; the listeners' own are checked all the same.
        }
    }

    public static WebApplication MapTaihu(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseApiErrors();
        app.UseRequestBodyLimits();
        app.MapMqttWebSockets();
        app.MapOpenApi("/openapi/{documentName}.json");
        // The OpenAPI document browsable under the console (/console/api/v1), Scalar's page and script served
        // from its package; its web fonts would come from fonts.scalar.com, so the browser's own are used.
        app.MapScalarApiReference("/console/api", options => options.DefaultFonts = false);
        app.MapAuthApi();
        app.MapTenantApi();
        app.MapBrokerUserApi();
        app.MapDeviceApi();
        app.MapRpcApi();
        app.MapAlarmApi();
        app.MapIntegrationApi();
        app.MapTelemetryApi();
        app.MapAuditApi();
        app.MapLiveApi();
        app.MapDeviceHttpApi();
        app.MapClusterApi();
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
                LogListening(logger, options.BindAddress, endpoints.TcpPort, endpoints.TlsPort, endpoints.WebSocketPort, options.WebSocketPath, endpoints.SecureWebSocketPort, server.HttpPort,
                    server.Hj212Port, server.Jt808Port, server.CoapPort);
                if (string.IsNullOrEmpty(options.CertificatePath) && endpoints.TlsPort > 0)
                {
                    var path = Path.GetFullPath(Path.Combine(DevelopmentCertificate.Directory(options), DevelopmentCertificate.CertificateFileName));
                    LogDevCertificate(logger, path);
                }
            });
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Taihu listening on {Address}: MQTT tcp {Tcp}, tls {Tls}, ws {Ws} ({Path}), wss {Wss}; HTTP {Http} (/healthz, /metrics); HJ 212 {Hj212}, JT/T 808 {Jt808}, CoAP udp {Coap}")]
        private static partial void LogListening(ILogger logger, string address, int tcp, int tls, int ws, string path, int wss, int http, int hj212, int jt808, int coap);

        [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "TLS uses the self-signed development certificate {Path}; clients can trust it with --cafile")]
        private static partial void LogDevCertificate(ILogger logger, string path);
    }

    /// <summary>
    /// Deletes a Unix socket file that a killed server left behind (nothing accepts on it), so that binding it
    /// again works; one that a running server still accepts on is left, and the bind then fails with its reason.
    /// </summary>
    private static void RemoveStaleUnixSocket(string path)
    {
        if (!File.Exists(path))
        {
            return;
        }

        using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        try
        {
            probe.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        }
        catch (System.Net.Sockets.SocketException)
        {
            File.Delete(path);
        }
    }
}
