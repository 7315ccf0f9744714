using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>
/// The HJ 212 TCP listener (<c>Listeners:Hj212Port</c>, 9212 by default, -1 off), with one
/// <see cref="Hj212Connection"/> per accepted socket. Stations open a connection per upload or keep one open; both
/// are served the same way.
/// </summary>
internal sealed class Hj212Listener(
    Hj212Stations stations, IOptions<Hj212Options> options, TimeProvider time, IOptions<ServerOptions> server, IOptions<ListenerOptions> listeners,
    ServerEndpoints endpoints, ILoggerFactory loggerFactory) : TcpProtocolListener(listeners, loggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger<Hj212Listener>();

    protected override string ProtocolName => "HJ 212";

    protected override int ConfiguredPort => server.Value.Hj212Port;

    protected override ILogger Logger => _logger;

    protected override void Bound(int port) => endpoints.Hj212Port = port;

    protected override Task RunConnectionAsync(ConnectionContext connection) => new Hj212Connection(connection, stations, options.Value, time, _logger).RunAsync();
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
        services.AddHostedService<Hj212Listener>();
        return builder;
    }
}
