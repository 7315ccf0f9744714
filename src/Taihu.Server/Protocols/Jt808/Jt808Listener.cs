using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Protocols.Jt808;

/// <summary>
/// The JT/T 808 TCP listener (<c>Listeners:Jt808Port</c>, 6808 by default, -1 off): Kestrel's socket transport
/// used directly, as the MQTT TCP listener does, with one <see cref="Jt808Connection"/> per terminal. Started after
/// the platform (hosted services start in order) and before the host reports it has started, so the start banner
/// shows the bound port.
/// </summary>
internal sealed partial class Jt808Listener : IHostedService
{
    private readonly SocketTransportFactory _factory;
    private readonly Jt808Services _services;
    private readonly IOptions<ServerOptions> _server;
    private readonly IOptions<ListenerOptions> _listeners;
    private readonly ServerEndpoints _endpoints;
    private readonly HashSet<ConnectionContext> _connections = [];
    private IConnectionListener? _listener;
    private Task _accepting = Task.CompletedTask;
    private TaskCompletionSource? _drained;

    public Jt808Listener(Jt808Services services, IOptions<ServerOptions> server, IOptions<ListenerOptions> listeners, ServerEndpoints endpoints, ILoggerFactory loggerFactory)
    {
        _services = services;
        _server = server;
        _listeners = listeners;
        _endpoints = endpoints;
        _factory = new SocketTransportFactory(Options.Create(new SocketTransportOptions()), loggerFactory);
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var port = _server.Value.Jt808Port;
        if (port < 0)
        {
            return;
        }

        _listener = await _factory.BindAsync(new IPEndPoint(_listeners.Value.ResolveBindAddress(), port), cancellationToken);
        _endpoints.Jt808Port = (_listener.EndPoint as IPEndPoint)?.Port ?? -1;
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
                LogAcceptFailed(_services.Logger, ex.SocketErrorCode, ex);
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

            lock (_connections)
            {
                _connections.Add(connection);
            }

            _ = RunAsync(connection);
        }
    }

    private async Task RunAsync(ConnectionContext connection)
    {
        try
        {
            await new Jt808Connection(_services, connection).RunAsync();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogConnectionFailed(_services.Logger, ex);
        }
        finally
        {
            try
            {
                await connection.DisposeAsync();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The socket failed as it closed; it is gone either way.
            }

            TaskCompletionSource? drained = null;
            lock (_connections)
            {
                _connections.Remove(connection);
                if (_connections.Count == 0)
                {
                    drained = _drained;
                }
            }

            drained?.TrySetResult();
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is not { } listener)
        {
            return;
        }

        await listener.UnbindAsync(cancellationToken);
        await _accepting;
        Task drained;
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                connection.Abort(new ConnectionAbortedException("The server is shutting down."));
            }

            drained = _connections.Count == 0 ? Task.CompletedTask : (_drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }

        try
        {
            await drained.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout: the connections were aborted already.
        }

        await listener.DisposeAsync();
    }

    [LoggerMessage(EventId = 1400, Level = LogLevel.Error, Message = "The JT/T 808 listener failed to accept a connection ({SocketError})")]
    private static partial void LogAcceptFailed(ILogger logger, SocketError socketError, Exception exception);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Error, Message = "A JT/T 808 connection failed")]
    private static partial void LogConnectionFailed(ILogger logger, Exception exception);
}

/// <summary>What every JT/T 808 connection uses, built once.</summary>
internal sealed class Jt808Services(
    ProtocolDevices devices, DeviceService deviceService, DeviceDataService data, IAttributeStore attributes, TimeProvider time,
    IOptions<Jt808Options> options, IOptions<Taihu.Platform.IngestOptions> ingest, ILogger<Jt808Listener> logger)
{
    public const string Protocol = "jt808";

    public ProtocolDevices Devices { get; } = devices;

    public DeviceService DeviceService { get; } = deviceService;

    public DeviceDataService Data { get; } = data;

    public IAttributeStore Attributes { get; } = attributes;

    public TimeProvider Time { get; } = time;

    public Jt808Options Options { get; } = options.Value;

    public ILogger Logger { get; } = logger;

    /// <summary>The ingest's bounds on a point's time (<c>Ingest:EarliestTimestamp</c>, <c>Ingest:MaxFutureSkew</c>), which MQTT telemetry is held to as well.</summary>
    public long EarliestMs { get; } = ingest.Value.EarliestTimestamp.ToUnixTimeMilliseconds();

    public long MaxFutureSkewMs { get; } = (long)ingest.Value.MaxFutureSkew.TotalMilliseconds;
}

public static class Jt808HostingExtensions
{
    /// <summary>Adds the JT/T 808 listener (<c>Listeners:Jt808Port</c>) and its settings (section <c>Jt808</c>).</summary>
    public static WebApplicationBuilder AddJt808Listener(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<Jt808Options>().BindConfiguration(Jt808Options.SectionName)
            .Validate(o => !o.Validate().Any(), $"{Jt808Options.SectionName}:{nameof(Jt808Options.IdleTimeout)} must be more than zero (for example 00:03:00).")
            .ValidateOnStart();
        builder.Services.AddSingleton<Jt808Services>();
        builder.Services.AddHostedService<Jt808Listener>();
        return builder;
    }
}
