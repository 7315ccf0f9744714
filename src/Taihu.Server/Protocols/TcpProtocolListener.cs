using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;
using Taihu.Broker.Transport;

namespace Taihu.Server.Protocols;

/// <summary>
/// A TCP listener of another protocol (HJ 212, JT/T 808): Kestrel's socket transport used directly, as the MQTT TCP
/// listener does, one connection handler per accepted socket. It binds as the host starts, after the platform
/// (hosted services start in order) and before the host reports it has started, so the start banner shows the
/// port; as the host stops it stops accepting, aborts every connection (these protocols have no goodbye) and waits
/// for them to end while their devices can still be marked offline.
/// </summary>
internal abstract partial class TcpProtocolListener : IHostedLifecycleService
{
    private readonly SocketTransportFactory _factory;
    private readonly IOptions<ListenerOptions> _listeners;
    private readonly OpenConnections _connections = new();
    private IConnectionListener? _listener;
    private Task _accepting = Task.CompletedTask;
    private int _disposed;

    protected TcpProtocolListener(IOptions<ListenerOptions> listeners, ILoggerFactory loggerFactory)
    {
        _listeners = listeners;
        _factory = new SocketTransportFactory(Options.Create(new SocketTransportOptions()), loggerFactory);
    }

    /// <summary>The protocol's name in log lines ("HJ 212").</summary>
    protected abstract string ProtocolName { get; }

    /// <summary>The configured port: -1 off, 0 any free port.</summary>
    protected abstract int ConfiguredPort { get; }

    protected abstract ILogger Logger { get; }

    /// <summary>Tells where the listener bound (the port the OS chose when asked for 0), for the start banner.</summary>
    protected abstract void Bound(int port);

    /// <summary>Serves one connection until it ends.</summary>
    protected abstract Task RunConnectionAsync(ConnectionContext connection);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var port = ConfiguredPort;
        if (port < 0)
        {
            return;
        }

        _listener = await _factory.BindAsync(new IPEndPoint(_listeners.Value.ResolveBindAddress(), port), cancellationToken);
        Bound((_listener.EndPoint as IPEndPoint)?.Port ?? -1);
        _accepting = AcceptAsync(_listener);
    }

    private async Task AcceptAsync(IConnectionListener listener)
    {
        while (true)
        {
            ConnectionContext? connection;
            try
            {
                connection = await listener.AcceptAsync();
            }
            catch (SocketException ex)
            {
                // Out of file descriptors, say: this connection is lost, the listener goes on after a pause.
                LogAcceptFailed(Logger, ProtocolName, ex.SocketErrorCode, ex);
                await Task.Delay(TimeSpan.FromMilliseconds(50));
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            if (connection is null)
            {
                return;
            }

            _connections.Add(connection);

            _ = RunAsync(connection);
        }
    }

    private async Task RunAsync(ConnectionContext connection)
    {
        try
        {
            await RunConnectionAsync(connection);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogConnectionFailed(Logger, ProtocolName, ex);
        }
        finally
        {
            await _connections.ReleaseAsync(connection);
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Before the platform stops: stops accepting, aborts every connection and waits for them to end.</summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        if (_listener is not { } listener)
        {
            return;
        }

        await listener.UnbindAsync(CancellationToken.None);
        await _accepting;
        _connections.AbortAll();
        var drained = _connections.DrainedAsync();
        try
        {
            await drained.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout: the connections were aborted already, what is left ends with the process.
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is { } listener && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await listener.DisposeAsync();
        }
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 9300, Level = LogLevel.Error, Message = "The {Protocol} listener failed to accept a connection ({SocketError})")]
    private static partial void LogAcceptFailed(ILogger logger, string protocol, SocketError socketError, Exception exception);

    [LoggerMessage(EventId = 9301, Level = LogLevel.Error, Message = "A {Protocol} connection failed")]
    private static partial void LogConnectionFailed(ILogger logger, string protocol, Exception exception);
}
