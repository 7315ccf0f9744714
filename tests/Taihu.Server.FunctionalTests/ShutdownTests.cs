using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

public sealed class ShutdownTests
{
    [Theory]
    [InlineData("INT")]
    [InlineData("TERM")]
    public async Task Signal_SendsServerShuttingDownToV5Clients_AndExitsWithZero(string signal)
    {
        await using var server = await ServerProcess.StartAsync();
        await using var mqttnet = await MqttTestClient.ConnectTcpAsync(server, "shutdown-mqttnet");
        var (raw, _) = await RawMqttClient.ConnectV5Async(server.TcpPort, "shutdown-raw");
        await using var rawClient = raw;

        await server.SignalAsync(signal);

        // On the wire: DISCONNECT (type 14), reason code 0x8B first in its body, then (optionally) properties.
        var packets = await raw.ReceiveUntilClosedAsync();
        var disconnect = Assert.Single(packets);
        Assert.Equal(0xE0, disconnect.Header);
        Assert.NotEmpty(disconnect.Body);
        Assert.Equal(0x8B, disconnect.Body[0]);

        var disconnected = await mqttnet.Disconnected.WaitAsync(ServerProcess.Guard);
        Assert.Equal(MqttClientDisconnectReason.ServerShuttingDown, disconnected.Reason);

        Assert.Equal(0, await server.WaitForExitAsync());
    }
}
