using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Taihu.Broker.Transport;

/// <summary>Kestrel's entry point for MQTT over TCP and TLS listeners.</summary>
public sealed class MqttConnectionHandler : ConnectionHandler
{
    private readonly MqttBroker _broker;

    public MqttConnectionHandler(MqttBroker broker)
    {
        _broker = broker;
    }

    public override Task OnConnectedAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var tls = connection.Features.Get<ITlsConnectionFeature>();
        return MqttConnectionRunner.RunAsync(_broker, connection.Transport, connection.RemoteEndPoint, tls?.ClientCertificate, connection.ConnectionClosed);
    }
}
