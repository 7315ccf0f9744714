using System.Net.WebSockets;
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

    [Fact]
    public async Task Terminate_ClosesLiveSocketsWith1001_AndExitsWithZero()
    {
        await using var server = await ServerProcess.StartAsync();
        using var sys = await PlatformApi.SysAdminAsync(server);
        var (_, admin) = await sys.CreateTenantWithAdminAsync("Shutdown");
        using var _ = admin;
        var (deviceId, _) = await admin.CreateDeviceAsync("watched");
        await using var live = await LiveClient.ConnectAsync(server, admin.Token!, new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = deviceId });
        Assert.Equal(0, (await live.NextAsync())["errorCode"]!.GetValue<int>());

        await server.SignalAsync("TERM");

        Assert.Equal((WebSocketCloseStatus.EndpointUnavailable, "Server shutting down"), await live.ReadToCloseAsync());
        Assert.Equal(0, await server.WaitForExitAsync());
    }
}
