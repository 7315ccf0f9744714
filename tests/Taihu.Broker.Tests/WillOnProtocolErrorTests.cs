using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// A connection the broker closes because the client broke the protocol ended abnormally, so its will is
/// published (3.1.1 section 3.1.2.5, 5.0 section 3.1.2.5). A 5.0 client is told why first (DISCONNECT with the
/// reason code); a 3.1.1 client is simply disconnected.
/// </summary>
public class WillOnProtocolErrorTests
{
    public static TheoryData<MqttProtocolVersion, string, ReasonCode?> Cases() => new()
    {
        { MqttProtocolVersion.V500, "36 06 0001 61 0001 00", ReasonCode.MalformedPacket }, // PUBLISH with QoS 3
        { MqttProtocolVersion.V311, "36 05 0001 61 0001", null }, // PUBLISH with QoS 3
        { MqttProtocolVersion.V500, "30 08 0001 61 03 230000 78", ReasonCode.TopicAliasInvalid }, // Topic Alias 0
        { MqttProtocolVersion.V500, "10 0D 0004 4D515454 05 02 0000 00 0000", ReasonCode.ProtocolError }, // a second CONNECT
        { MqttProtocolVersion.V311, "10 0C 0004 4D515454 04 02 0000 0000", null }, // a second CONNECT
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Will_is_published_when_the_broker_closes_the_connection_for_a_protocol_error(MqttProtocolVersion version, string hex, ReasonCode? disconnectCode)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var watcher = await TestClient.ConnectAsync(host, "watcher", version);
        await watcher.Client.SubscribeAsync("will/#", MqttQualityOfServiceLevel.AtLeastOnce);
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", version, will: RawPackets.Will("will/w1", "gone", QoS.AtLeastOnce)));
        await using var _ = client;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);

        await client.SendHexAsync(hex);
        var packets = await client.ReceiveUntilClosedAsync();
        if (disconnectCode is { } code)
        {
            Assert.Equal(code, Assert.IsType<DisconnectPacket>(Assert.Single(packets)).ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }

        var will = (await watcher.NextAsync()).ApplicationMessage;
        Assert.Equal(("will/w1", "gone"), (will.Topic, will.ConvertPayloadToString()));
        await host.WaitUntilSessionGoneAsync("w1");
    }
}
