using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A will is a publish the client makes in advance: its topic is authorized at CONNECT exactly as a PUBLISH to it
/// would be (5.0 CONNACK 0x87, 3.1.1 return code 5), so a device cannot forge another device's RPC or shared
/// attributes, nor a $SYS value, by dropping its connection.
/// </summary>
public sealed class WillAuthorizationTests(PlatformFixture platform) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => platform.Server;

    [Theory]
    [InlineData(4, "rpc/request/42")]
    [InlineData(5, "rpc/request/42")]
    [InlineData(4, "attributes")]
    [InlineData(5, "attributes")]
    public async Task WillOnAnotherDevicesTopic_IsRefusedAtConnect_AndNeverReachesThatDevice(byte level, string suffix)
    {
        var (victimId, victimToken) = await platform.Admin.CreateDeviceAsync("victim-" + Guid.NewGuid().ToString("N")[..8]);
        var (_, attackerToken) = await platform.Admin.CreateDeviceAsync("attacker-" + Guid.NewGuid().ToString("N")[..8]);
        await using var victim = await DeviceClient.ConnectAsync(Server, victimToken);
        await victim.SubscribeAsync("v1/devices/me/" + (suffix == "attributes" ? "attributes" : "rpc/request/+"));
        await victim.SubscribeAsync("probe/" + victimId.ToString("N"));

        var forged = "$devices/" + victimId.ToString("N") + "/" + suffix;
        var (attacker, connAck) = await RawMqttClient.ConnectWithWillAsync(Server.TcpPort, "attacker-" + level, level, attackerToken, forged, "{\"method\":\"reboot\"}");
        await using (attacker)
        {
            Assert.Equal(level == 5 ? 0x87 : 5, connAck.Body[1]);
            Assert.Empty(await attacker.ReceiveUntilClosedAsync());
        }

        // The marker is routed after the attacker's socket is gone: anything its will sent would be queued first.
        await using var prober = await DeviceClient.ConnectAsync(Server, attackerToken);
        await prober.PublishAsync("probe/" + victimId.ToString("N"), "marker");
        Assert.Equal("probe/" + victimId.ToString("N"), (await victim.NextAsync()).Topic);
    }

    [Theory]
    [InlineData(4, true)]
    [InlineData(5, true)]
    [InlineData(4, false)]
    [InlineData(5, false)]
    public async Task WillOnSys_IsRefusedAtConnect(byte level, bool asDevice)
    {
        string? userName = null;
        if (asDevice)
        {
            (_, userName) = await platform.Admin.CreateDeviceAsync("sys-forger-" + Guid.NewGuid().ToString("N")[..8]);
        }

        var (client, connAck) = await RawMqttClient.ConnectWithWillAsync(Server.TcpPort, "sys-forger-" + Guid.NewGuid().ToString("N"), level, userName, "$SYS/broker/version", "forged", willRetain: true);
        await using (client)
        {
            Assert.Equal(level == 5 ? 0x87 : 5, connAck.Body[1]);
        }
    }

    [Fact]
    public async Task PublishOnSys_IsRefused()
    {
        var (_, token) = await platform.Admin.CreateDeviceAsync("sys-publisher-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        var result = await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("$SYS/broker/version").WithPayload("forged").WithRetainFlag()
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    public async Task WillOnAnAllowedTopic_IsStillPublished(byte level)
    {
        var (_, token) = await platform.Admin.CreateDeviceAsync("honest-" + Guid.NewGuid().ToString("N")[..8]);
        var topic = "status/" + Guid.NewGuid().ToString("N");
        await using var watcher = await DeviceClient.ConnectAsync(Server, token);
        await watcher.SubscribeAsync(topic);
        var (client, connAck) = await RawMqttClient.ConnectWithWillAsync(Server.TcpPort, "honest-" + Guid.NewGuid().ToString("N"), level, token, topic, "offline");
        Assert.Equal(0, connAck.Body[1]);
        await client.DisposeAsync();
        var will = await watcher.NextAsync();
        Assert.Equal(topic, will.Topic);
        Assert.Equal("offline", will.ConvertPayloadToString());
    }
}
