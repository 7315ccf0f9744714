using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>
/// The HJ 212 TCP listener: Kestrel's socket transport used directly, as the MQTT TCP listener does
/// (<c>MqttTcpListener</c>), with one <see cref="Hj212Connection"/> per accepted socket. Stations open a connection
/// per upload or keep one open; both are served the same way.
/// </summary>
public sealed partial class Hj212Listener : IAsyncDisposable
{
    private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(50);

    private readonly SocketTransportFactory _factory;
    private readonly Hj212Stations _stations;
    private readonly Hj212Options _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Dictionary<ConnectionContext, Hj212Connection> _connections = [];
    private IConnectionListener? _listener;
    private Task _accepting = Task.CompletedTask;
    private TaskCompletionSource? _drained;
    private int _disposed;

    internal Hj212Listener(Hj212Stations stations, IOptions<Hj212Options> options, TimeProvider time, ILoggerFactory loggerFactory)
    {
        _stations = stations;
        _options = options.Value;
        _time = time;
        _logger = loggerFactory.CreateLogger<Hj212Listener>();
        _factory = new SocketTransportFactory(Options.Create(new SocketTransportOptions()), loggerFactory);
    }

    /// <summary>The address bound (with the port the OS chose when asked for 0); null before <see cref="StartAsync"/>.</summary>
    public EndPoint? EndPoint => _listener?.EndPoint;

    public async Task StartAsync(EndPoint endPoint, CancellationToken cancellationToken)
    {
        _listener = await _factory.BindAsync(endPoint, cancellationToken);
        _accepting = AcceptAsync(_listener);
    }

    private async Task AcceptAsync(IConnectionListener listener)
    {
        while (true)
        {
            ConnectionContext? context;
            try
            {
                context = await listener.AcceptAsync();
            }
            catch (SocketException ex)
            {
                // Out of file descriptors, say: this connection is lost, the listener goes on after a pause.
                LogAcceptFailed(_logger, ex.SocketErrorCode, ex);
                await Task.Delay(AcceptRetryDelay);
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            if (context is null)
            {
                return;
            }

            var connection = new Hj212Connection(context, _stations, _options, _time, _logger);
            lock (_connections)
            {
                _connections.Add(context, connection);
            }

            _ = RunAsync(context, connection);
        }
    }

    private async Task RunAsync(ConnectionContext context, Hj212Connection connection)
    {
        try
        {
            await connection.RunAsync();
        }
        finally
        {
            try
            {
                await context.DisposeAsync();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The socket failed as it closed; it is gone either way.
            }

            TaskCompletionSource? drained = null;
            lock (_connections)
            {
                _connections.Remove(context);
                if (_connections.Count == 0)
                {
                    drained = _drained;
                }
            }

            drained?.TrySetResult();
        }
    }

    /// <summary>Stops accepting, closes every connection (HJ 212 has no goodbye), and waits for them to end.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is { } listener)
        {
            await listener.UnbindAsync(CancellationToken.None);
            await _accepting;
        }

        Task drained;
        Hj212Connection[] open;
        lock (_connections)
        {
            open = [.. _connections.Values];
            drained = _connections.Count == 0 ? Task.CompletedTask : (_drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        foreach (var connection in open)
        {
            connection.Abort();
        }

        try
        {
            await drained.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout: what is left ends with the process.
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_listener is { } listener && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await listener.DisposeAsync();
        }
    }

    [LoggerMessage(EventId = 9220, Level = LogLevel.Error, Message = "The HJ 212 listener failed to accept a connection ({SocketError})")]
    private static partial void LogAcceptFailed(ILogger logger, SocketError socketError, Exception exception);
}

/// <summary>Registers the HJ 212 listener (<c>Listeners:Hj212Port</c>, settings in section <c>Hj212</c>).</summary>
public static partial class Hj212HostingExtensions
{
    public static WebApplicationBuilder AddHj212Listener(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.AddOptions<Hj212Options>().BindConfiguration(Hj212Options.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<Hj212Options>, Hj212OptionsValidator>());
        services.TryAddSingleton<Hj212Stations>();
        services.TryAddSingleton(sp => new Hj212Listener(
            sp.GetRequiredService<Hj212Stations>(), sp.GetRequiredService<IOptions<Hj212Options>>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>()));
        services.AddHostedService<Hj212Lifetime>();
        return builder;
    }

    /// <summary>Binds the listener as the host starts (its port in <see cref="ServerEndpoints"/> for the banner) and closes it as it stops.</summary>
    private sealed class Hj212Lifetime(Hj212Listener listener, IOptions<ServerOptions> server, IOptions<ListenerOptions> listeners, ServerEndpoints endpoints) : IHostedLifecycleService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var port = server.Value.Hj212Port;
            if (port < 0)
            {
                return;
            }

            await listener.StartAsync(new IPEndPoint(listeners.Value.ResolveBindAddress(), port), cancellationToken);
            endpoints.Hj212Port = (listener.EndPoint as IPEndPoint)?.Port ?? -1;
        }

        public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        /// <summary>Before the platform stops: stations' sessions end while their devices can still be marked offline.</summary>
        public Task StoppingAsync(CancellationToken cancellationToken) => listener.StopAsync(cancellationToken);

        public async Task StopAsync(CancellationToken cancellationToken) => await listener.DisposeAsync();

        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
