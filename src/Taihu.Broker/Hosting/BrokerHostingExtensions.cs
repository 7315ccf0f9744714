using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Transport;

namespace Taihu.Broker.Hosting;

/// <summary>The ports the broker's listeners actually bound (useful when configured as 0).</summary>
public sealed class BrokerEndpoints
{
    /// <summary>The plain TCP listener's address, which <see cref="MqttTcpListener"/> bound (not a Kestrel listener).</summary>
    internal EndPoint? Tcp { get; set; }
    internal ListenOptions? Tls { get; set; }
    internal ListenOptions? WebSocket { get; set; }
    internal ListenOptions? SecureWebSocket { get; set; }

    public int TcpPort => (Tcp as IPEndPoint)?.Port ?? -1;
    public int TlsPort => Port(Tls);
    public int WebSocketPort => Port(WebSocket);
    public int SecureWebSocketPort => Port(SecureWebSocket);

    private static int Port(ListenOptions? options) => (options?.EndPoint as IPEndPoint)?.Port ?? -1;
}

public static partial class BrokerHostingExtensions
{
    /// <summary>
    /// Adds the broker and its Kestrel listeners. The options come from the caller (the host binds them) and are
    /// validated here, once, when the host starts (ValidateOnStart); extension points are taken from DI when
    /// registered (IMqttAuthenticator, IMqttAuthorizer, IPublishObserver, IMqttEnhancedAuthenticator,
    /// IClientLifecycleObserver, IBrokerStateStore).
    /// </summary>
    public static WebApplicationBuilder AddMqttBroker(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.AddOptions<BrokerOptions>().ValidateOnStart();
        services.AddOptions<ListenerOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BrokerOptions>, BrokerOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ListenerOptions>, ListenerOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<BrokerMetrics>();
        services.TryAddSingleton<BrokerEndpoints>();
        // Extension points may publish and disconnect through IMqttServerPublisher and IMqttClientDisconnector, so
        // those are a handle the broker is attached to once constructed, not the broker (see BrokerHandle).
        services.TryAddSingleton<BrokerHandle>();
        services.TryAddSingleton(sp =>
        {
            var broker = new MqttBroker(
                sp.GetRequiredService<IOptions<BrokerOptions>>().Value,
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<BrokerMetrics>(),
                sp.GetService<ILogger<MqttBroker>>(),
                sp.GetService<IMqttAuthenticator>(),
                sp.GetService<IMqttAuthorizer>(),
                sp.GetService<IPublishObserver>(),
                sp.GetService<IMqttEnhancedAuthenticator>(),
                sp.GetService<IClientLifecycleObserver>(),
                sp.GetService<IBrokerStateStore>(),
                sp.GetService<IMqttClusterLink>());
            sp.GetRequiredService<BrokerHandle>().Attach(broker);
            return broker;
        });
        services.TryAddSingleton<MqttTcpListener>();
        services.TryAddSingleton<IMqttServerPublisher>(sp => sp.GetRequiredService<BrokerHandle>());
        services.TryAddSingleton<IMqttClientDisconnector>(sp => sp.GetRequiredService<BrokerHandle>());
        services.AddHostedService<BrokerLifetime>();

        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            var sp = kestrel.ApplicationServices;
            // Reading the value validates it (an OptionsValidationException naming the setting); the Taihu host has
            // checked every setting before this runs, so that all problems are reported together.
            var listeners = sp.GetRequiredService<IOptions<ListenerOptions>>().Value;
            var endpoints = sp.GetRequiredService<BrokerEndpoints>();
            var address = listeners.ResolveBindAddress();
            System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null;
            System.Security.Cryptography.X509Certificates.X509Certificate2 Certificate() =>
                certificate ??= DevelopmentCertificate.Load(listeners, sp.GetRequiredService<TimeProvider>());

            void ConfigureHttps(HttpsConnectionAdapterOptions https)
            {
                https.ServerCertificate = Certificate();
                // Devices may present a certificate; whether it is acceptable is the authenticator's call.
                https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
                https.AllowAnyClientCertificate();
            }

            // The plain TCP listener is not Kestrel's: MqttTcpListener runs on Kestrel's socket transport without
            // the server layer (about 1 KB less per connection), started and stopped by BrokerLifetime.
            if (listeners.TlsPort >= 0)
            {
                kestrel.Listen(address, listeners.TlsPort, listen =>
                {
                    endpoints.Tls = listen;
                    listen.UseHttps(ConfigureHttps);
                    listen.UseConnectionHandler<MqttConnectionHandler>();
                });
            }

            if (listeners.WebSocketPort >= 0)
            {
                kestrel.Listen(address, listeners.WebSocketPort, listen =>
                {
                    endpoints.WebSocket = listen;
                    listen.Protocols = HttpProtocols.Http1;
                });
            }

            if (listeners.SecureWebSocketPort >= 0)
            {
                kestrel.Listen(address, listeners.SecureWebSocketPort, listen =>
                {
                    endpoints.SecureWebSocket = listen;
                    listen.Protocols = HttpProtocols.Http1;
                    listen.UseHttps(ConfigureHttps);
                });
            }
        });
        return builder;
    }

    /// <summary>Maps the MQTT-over-WebSocket endpoint.</summary>
    public static IEndpointConventionBuilder MapMqttWebSockets(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var path = endpoints.ServiceProvider.GetRequiredService<IOptions<ListenerOptions>>().Value.WebSocketPath;
        return endpoints.Map(path, (HttpContext context, MqttBroker broker) => MqttWebSocketEndpoint.HandleAsync(context, broker))
            .WithName("MqttWebSocket")
            .WithSummary("MQTT over WebSocket (subprotocol mqtt)")
            .ExcludeFromDescription();
    }

    /// <summary>
    /// Loads the saved broker state, starts the broker's timers and its TCP listener with the host, tells clients the
    /// server is shutting down when it stops, and writes the state last.
    /// </summary>
    /// <remarks>
    /// The goodbye goes out in <see cref="StoppingAsync"/>, before any hosted service stops: Kestrel's own StopAsync
    /// runs before ours (hosted services stop in reverse order and the web server starts last) and waits for open
    /// connections until the shutdown timeout, then aborts them, so clients would never see DISCONNECT 0x8B. The
    /// TCP listener stops accepting there too, before the broker closes every connection. The same order makes
    /// <see cref="StopAsync"/> the right place for the last write of the state: the Kestrel connections are closed
    /// by then, the TCP listener's are waited for (and aborted when the shutdown timeout runs out, as Kestrel
    /// does), and their sessions are detached. The state is loaded in <see cref="StartAsync"/>, after the hosted
    /// services registered before the broker (the platform's schema migration) and before anything listens.
    /// </remarks>
    private sealed partial class BrokerLifetime : IHostedLifecycleService
    {
        private readonly MqttBroker _broker;
        private readonly MqttTcpListener _tcp;
        private readonly IOptions<ListenerOptions> _listeners;
        private readonly BrokerEndpoints _endpoints;
        private readonly ILogger<BrokerLifetime> _logger;

        public BrokerLifetime(MqttBroker broker, MqttTcpListener tcp, IOptions<ListenerOptions> listeners, BrokerEndpoints endpoints, ILogger<BrokerLifetime> logger)
        {
            _broker = broker;
            _tcp = tcp;
            _listeners = listeners;
            _endpoints = endpoints;
            _logger = logger;
        }

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            await _broker.StartAsync(cancellationToken);
            var listeners = _listeners.Value;
            if (listeners.TcpPort >= 0)
            {
                await _tcp.StartAsync(new IPEndPoint(listeners.ResolveBindAddress(), listeners.TcpPort), cancellationToken);
                _endpoints.Tcp = _tcp.EndPoint;
            }
        }

        public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task StoppingAsync(CancellationToken cancellationToken)
        {
            await _tcp.UnbindAsync();
            LogStopping(_logger, _broker.ConnectionCount);
            _broker.Shutdown();
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            await _tcp.StopAsync(cancellationToken);
            await _tcp.DisposeAsync();
            await _broker.StopAsync();
        }

        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "Broker stopping; closing {Connections} connections with 'Server shutting down'")]
        private static partial void LogStopping(ILogger logger, int connections);
    }
}
