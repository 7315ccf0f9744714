using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Hosting;

namespace Taihu.Broker.Tests.Support;

/// <summary>
/// A real broker on Kestrel, listening on loopback with OS-assigned ports (tests run in parallel). Pass a
/// <see cref="FakeTimeProvider"/> to drive keep alive, expiry and will delay; housekeeping then runs when the
/// test advances the clock.
/// </summary>
public sealed class BrokerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _dataDirectory;

    private BrokerHost(WebApplication app, string dataDirectory)
    {
        _app = app;
        _dataDirectory = dataDirectory;
        Broker = app.Services.GetRequiredService<MqttBroker>();
        Endpoints = app.Services.GetRequiredService<BrokerEndpoints>();
    }

    public MqttBroker Broker { get; }
    public BrokerEndpoints Endpoints { get; }
    public int Port => Endpoints.TcpPort;
    public int TlsPort => Endpoints.TlsPort;
    public int WebSocketPort => Endpoints.WebSocketPort;
    public int SecureWebSocketPort => Endpoints.SecureWebSocketPort;
    public string DataDirectory => _dataDirectory;
    public string CertificatePath => Path.Combine(_dataDirectory, DevelopmentCertificate.CertificateFileName);
    public IServiceProvider Services => _app.Services;

    /// <summary>Starts a broker. <paramref name="configure"/> adjusts the options; <paramref name="services"/> adds extension points.</summary>
    public static async Task<BrokerHost> StartAsync(Action<BrokerOptions>? configure = null, TimeProvider? time = null, Action<IServiceCollection>? services = null, bool tls = false, bool webSockets = false)
    {
        var dataDirectory = Path.Combine(Path.GetTempPath(), "taihu-tests", Guid.NewGuid().ToString("N"));
        var builder = WebApplication.CreateSlimBuilder();
        // The plain TCP listener is not a Kestrel endpoint (MqttTcpListener): with TLS and WebSocket off, Kestrel
        // would have none and bind its default, localhost:5000, which parallel tests share. Give it a free port.
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.Configure<ListenerOptions>(o =>
        {
            o.BindAddress = "127.0.0.1";
            o.TcpPort = 0;
            o.TlsPort = tls ? 0 : -1;
            o.WebSocketPort = webSockets ? 0 : -1;
            o.SecureWebSocketPort = webSockets && tls ? 0 : -1;
            o.DevelopmentCertificateDirectory = dataDirectory;
        });
        builder.Services.Configure<BrokerOptions>(o =>
        {
            o.SysInterval = 0;
            configure?.Invoke(o);
        });
        if (time is not null)
        {
            builder.Services.AddSingleton(time);
        }

        services?.Invoke(builder.Services);
        builder.AddMqttBroker();
        var app = builder.Build();
        if (webSockets)
        {
            app.UseWebSockets();
            app.MapMqttWebSockets();
        }

        await app.StartAsync();
        return new BrokerHost(app, dataDirectory);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
