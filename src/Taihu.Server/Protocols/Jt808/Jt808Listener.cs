using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Protocols.Jt808;

/// <summary>
/// The JT/T 808 TCP listener (<c>Listeners:Jt808Port</c>, 6808 by default, -1 off), with one
/// <see cref="Jt808Connection"/> per terminal.
/// </summary>
internal sealed class Jt808Listener(
    Jt808Services services, IOptions<ServerOptions> server, IOptions<ListenerOptions> listeners, ServerEndpoints endpoints, ILoggerFactory loggerFactory)
    : TcpProtocolListener(listeners, loggerFactory)
{
    protected override string ProtocolName => "JT/T 808";

    protected override int ConfiguredPort => server.Value.Jt808Port;

    protected override ILogger Logger => services.Logger;

    protected override void Bound(int port) => endpoints.Jt808Port = port;

    protected override Task RunConnectionAsync(ConnectionContext connection) => new Jt808Connection(services, connection).RunAsync();
}

/// <summary>What every JT/T 808 connection uses, built once.</summary>
internal sealed class Jt808Services(
    ProtocolDevices devices, DeviceService deviceService, DeviceDataService data, TimeProvider time,
    IOptions<Jt808Options> options, IOptions<Taihu.Platform.IngestOptions> ingest, DeviceRevocations revocations, ILogger<Jt808Listener> logger)
{
    public const string Protocol = "jt808";

    public ProtocolDevices Devices { get; } = devices;

    /// <summary>The open connections by terminal device: a second authentication closes the first, and so do a deletion and new credentials.</summary>
    public DeviceConnections Connections { get; } = new(revocations);

    public DeviceService DeviceService { get; } = deviceService;

    public DeviceDataService Data { get; } = data;

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
