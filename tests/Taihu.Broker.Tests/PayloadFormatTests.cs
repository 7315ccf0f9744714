using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>Payload Format Indicator (5.0): 1 promises UTF-8, and the broker checks the promise.</summary>
public class PayloadFormatTests
{
    private static readonly byte[] s_invalidUtf8 = [0x68, 0x69, 0xC3, 0x28, 0xFF];

    [Fact]
    public async Task Invalid_utf8_at_qos1_is_refused_with_puback_0x99_and_not_routed()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("pfi/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        var bad = Publish("pfi/t", "", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { PayloadFormatIndicator = 1 });
        bad.Payload = s_invalidUtf8;
        await publisher.SendAsync(bad);
        Assert.Equal(ReasonCode.PayloadFormatInvalid, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);

        // The connection stays usable, and the subscriber sees only what came after.
        await publisher.SendAsync(Publish("pfi/t", "sentinel", QoS.AtLeastOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Invalid_utf8_at_qos2_is_refused_with_pubrec_0x99_and_the_exchange_ends()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("pfi/t", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        var bad = Publish("pfi/t", "", QoS.ExactlyOnce, packetId: 1, properties: new MqttProperties { PayloadFormatIndicator = 1 });
        bad.Payload = s_invalidUtf8;
        await publisher.SendAsync(bad);
        Assert.Equal(ReasonCode.PayloadFormatInvalid, (await publisher.ExpectAckAsync(PacketType.PubRec, 1)).ReasonCode);
        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 1));
        Assert.Equal(ReasonCode.PacketIdentifierNotFound, (await publisher.ExpectAckAsync(PacketType.PubComp, 1)).ReasonCode);

        await publisher.SendAsync(Publish("pfi/t", "sentinel"));
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Invalid_utf8_at_qos0_disconnects_with_0x99()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("pfi/t", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        var bad = Publish("pfi/t", "", properties: new MqttProperties { PayloadFormatIndicator = 1 });
        bad.Payload = s_invalidUtf8;
        await publisher.SendAsync(bad);
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await publisher.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.PayloadFormatInvalid, disconnect.ReasonCode);

        await using var other = await ConnectRawAsync(host, "other", ProtocolVersion.V500);
        await other.SendAsync(Publish("pfi/t", "sentinel"));
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Valid_utf8_passes_and_the_indicator_reaches_the_subscriber()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await ConnectRawAsync(host, "raw", ProtocolVersion.V500);
        await raw.SubscribeAsync("pfi/t", QoS.AtLeastOnce);
        await using var mqttnet = await TestClient.ConnectAsync(host, "mqttnet");
        await mqttnet.Client.SubscribeAsync("pfi/t");
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("pfi/t", "héllo wörld ✓", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { PayloadFormatIndicator = 1 }));
        Assert.Equal(ReasonCode.Success, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);

        var (packet, payload) = await raw.ExpectPublishAsync();
        Assert.Equal("héllo wörld ✓", payload);
        Assert.Equal((byte)1, packet.Properties!.PayloadFormatIndicator);
        var message = await mqttnet.NextAsync();
        Assert.Equal(MqttPayloadFormatIndicator.CharacterData, message.ApplicationMessage.PayloadFormatIndicator);
        Assert.Equal("héllo wörld ✓", message.ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task Binary_payload_without_the_indicator_is_not_checked()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("pfi/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        var binary = Publish("pfi/t", "", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { PayloadFormatIndicator = 0 });
        binary.Payload = s_invalidUtf8;
        await publisher.SendAsync(binary);
        Assert.Equal(ReasonCode.Success, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);

        var (packet, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal(s_invalidUtf8, packet.Payload.ToArray());
        Assert.Equal((byte)0, packet.Properties!.PayloadFormatIndicator);
    }

    [Fact]
    public async Task V311_subscriber_gets_a_utf8_marked_payload_without_the_indicator()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V311);
        await subscriber.SubscribeAsync("pfi/t", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("pfi/t", "text", properties: new MqttProperties { PayloadFormatIndicator = 1 }));
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("text", payload);
        Assert.Null(packet.Properties);
    }
}
