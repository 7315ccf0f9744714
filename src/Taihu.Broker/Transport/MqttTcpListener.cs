using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;

namespace Taihu.Broker.Transport;

/// <summary>
/// The plain TCP listener: Kestrel's socket transport, used directly, without the Kestrel server around it.
/// </summary>
/// <remarks>
/// Kestrel's server layer adds about 1 KB of live objects to every connection it hands a
/// <c>ConnectionHandler</c> (measured with <c>dotnet-gcdump</c> at 5,000 idle connections, docs/benchmarks.md):
/// the <c>KestrelConnection</c> and the state machine that awaits the handler, a completion source, a
/// cancellation source, two registry entries with a weak reference, a metrics context and the feature list it
/// is set in, and a logging scope with the execution context that carries it; its heartbeat also walks every
/// connection once a second. An MQTT connection uses none of that: the broker keeps its own registry, keep-alive
/// timers, limits and metrics. So the TCP listener accepts from the socket transport (the same sockets, pipes and
/// memory pool Kestrel uses) and runs <see cref="MqttConnectionRunner"/> on each connection itself; TLS and
/// WebSocket listeners stay on the Kestrel server, which brings TLS and HTTP.
/// Stopping: <see cref="UnbindAsync"/> stops accepting (when the host begins to stop, before the broker closes
/// every connection); <see cref="StopAsync"/> waits for the connections to end and aborts those still open when
/// the host's shutdown timeout runs out, as Kestrel does.
/// </remarks>
public sealed partial class MqttTcpListener : IAsyncDisposable
{
    private readonly MqttBroker _broker;
    private const int IpProtocolTcp = 6;
    private const int TcpMaxSegment = 2; // TCP_MAXSEG on Linux and macOS

    private readonly SocketTransportFactory _factory;
    private readonly ILogger _logger;
    private readonly OpenConnections _connections = new();
    private IConnectionListener? _listener;
    private Task _accepting = Task.CompletedTask;
    private int _disposed;

    private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(50);

    public MqttTcpListener(MqttBroker broker, ILoggerFactory loggerFactory, IOptions<ListenerOptions> listeners)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        ArgumentNullException.ThrowIfNull(listeners);
        var segmentSize = listeners.Value.TcpMaximumSegmentSize;
        _broker = broker;
        _logger = loggerFactory.CreateLogger<MqttTcpListener>();
        // Kestrel's defaults (no delay, backlog 512, read buffer limit 1 MiB, no buffer rented until data arrives),
        // with inline scheduling: by default a PINGREQ costs three thread-pool hops (the socket completion, the
        // receive loop, which Kestrel's input pipe schedules on the thread pool, and Kestrel's send loop, which the
        // output pipe schedules on its I/O queue); inline, the socket completion runs the receive loop, which writes
        // the PINGRESP and flushes it to the socket, on one thread. "Unsafe" because application code then runs
        // on the transport's thread; here that is a thread-pool thread (socket completions are not inlined by the
        // runtime unless DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS is set), the receive loop never blocks, and
        // the re-entrancy it allows is handled in MqttConnectionRunner (StopReceiving, StartWoken).
        _factory = new SocketTransportFactory(Options.Create(new SocketTransportOptions
        {
            UnsafePreferInlineScheduling = true,
            CreateBoundListenSocket = endPoint => CreateListenSocket(endPoint, segmentSize),
        }), loggerFactory);
    }

    /// <summary>
    /// Kestrel's listening socket, with the largest TCP segment the broker sends capped at
    /// <see cref="ListenerOptions.TcpMaximumSegmentSize"/> (inherited by every accepted connection).
    /// </summary>
    /// <remarks>
    /// On loopback the segment size is 64 KB. A client with a small receive buffer (MQTTnet's default is 8 KB, so a
    /// window of 12 to 14 KB) that fell behind was sent segments as large as its whole window; its TCP then rounds
    /// the window down to one such segment and acknowledges only at its 40 ms delayed-ACK timer, so delivery to it
    /// fell to about 1,800 messages a second and a QoS 0 stream overflowed its queue (Mosquitto's small writes kept
    /// two segments in that window). With segments of 4 KB its window holds three, and it acknowledges every
    /// second one. Ethernet's 1,460 is below the cap, so real networks are unchanged.
    /// </remarks>
    private static Socket CreateListenSocket(EndPoint endPoint, int segmentSize)
    {
        var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(endPoint);
        if (segmentSize > 0 && endPoint is IPEndPoint && (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()))
        {
            try
            {
                socket.SetRawSocketOption(IpProtocolTcp, TcpMaxSegment, BitConverter.GetBytes(segmentSize));
            }
            catch (SocketException)
            {
                // Not supported here: the system's segment size stays.
            }
        }

        return socket;
    }

    /// <summary>The address bound (with the port the OS chose when asked for 0); null before <see cref="StartAsync"/>.</summary>
    public EndPoint? EndPoint => _listener?.EndPoint;

    /// <summary>Binds and starts accepting.</summary>
    public async Task StartAsync(EndPoint endPoint, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        _listener = await _factory.BindAsync(endPoint, cancellationToken);
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
                // Out of file descriptors, say: this connection is lost, the listener goes on (Kestrel's accept loop
                // would stop for good here), after a pause that keeps a lasting failure from spinning a core.
                if (_broker.ShouldLogRefusal())
                {
                    LogAcceptFailed(_logger, ex.SocketErrorCode, ex);
                }

                await Task.Delay(AcceptRetryDelay);
                continue;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            if (connection is null)
            {
                // Unbound.
                return;
            }

            _connections.Add(connection);

            // Runs until its first wait, on this thread; the receive loop continues when the client sends.
            _ = MqttConnectionRunner.RunAsync(_broker, connection, this);
        }
    }

    /// <summary>Called once by each connection's runner when it has ended: disposes the transport.</summary>
    internal ValueTask ReleaseAsync(ConnectionContext connection) => _connections.ReleaseAsync(connection);

    /// <summary>Stops accepting connections; those open stay open.</summary>
    public async Task UnbindAsync()
    {
        if (_listener is { } listener)
        {
            await listener.UnbindAsync();
            await _accepting;
        }
    }

    /// <summary>
    /// Stops accepting, then waits until every connection has ended (the broker closes them as it shuts down); when
    /// <paramref name="cancellationToken"/> fires first (the host's shutdown timeout), aborts those left.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await UnbindAsync();
        var drained = _connections.DrainedAsync();
        try
        {
            await drained.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            _connections.AbortAll();
            await drained;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_listener is { } listener && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await listener.DisposeAsync();
        }
    }

    [LoggerMessage(EventId = 210, Level = LogLevel.Error, Message = "The MQTT listener failed to accept a connection ({SocketError})")]
    private static partial void LogAcceptFailed(ILogger logger, SocketError socketError, Exception exception);
}
