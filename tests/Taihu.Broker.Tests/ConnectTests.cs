using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

public class ConnectTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Client_connects_and_receives_its_own_publish(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "c1", version);
        Assert.Equal(MqttClientConnectResultCode.Success, client.ConnectResult!.ResultCode);
        await client.Client.SubscribeAsync("t/1");
        await client.Client.PublishStringAsync("t/1", "hello");
        var message = await client.NextAsync();
        Assert.Equal("hello", message.ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task Unsupported_protocol_level_is_refused_with_return_code_1()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        // CONNECT, protocol name MQTT, level 6.
        await raw.SendAsync(Convert.FromHexString("100D00044D51545406020000000161"));
        var packets = await raw.ReceiveUntilClosedAsync();
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(packets));
        Assert.Equal(ReasonCode.UnsupportedProtocolVersion, ack.ReasonCode);
    }
}
