using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// An acknowledgement that does not fit the delivery in flight under its packet identifier: PUBREC or PUBCOMP for
/// a QoS 1 delivery, PUBACK for a QoS 2 one, or PUBCOMP for a QoS 2 delivery that has had no PUBREC (so no PUBREL
/// from us). The client broke the protocol (3.1.1 section 4.8.0 [MQTT-4.8.0-1]: close; 5.0 section 4.13: DISCONNECT
/// 0x82 then close), as Mosquitto 2.0 treats it (<c>db__message_delete_outgoing</c> and
/// <c>db__message_update_outgoing</c> return MOSQ_ERR_PROTOCOL on a QoS or state mismatch).
/// </summary>
public class WrongAcknowledgementTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311, QoS.AtLeastOnce, PacketType.PubRec)]
    [InlineData(MqttProtocolVersion.V500, QoS.AtLeastOnce, PacketType.PubRec)]
    [InlineData(MqttProtocolVersion.V311, QoS.AtLeastOnce, PacketType.PubComp)]
    [InlineData(MqttProtocolVersion.V500, QoS.AtLeastOnce, PacketType.PubComp)]
    [InlineData(MqttProtocolVersion.V311, QoS.ExactlyOnce, PacketType.PubAck)]
    [InlineData(MqttProtocolVersion.V500, QoS.ExactlyOnce, PacketType.PubAck)]
    [InlineData(MqttProtocolVersion.V311, QoS.ExactlyOnce, PacketType.PubComp)]
    [InlineData(MqttProtocolVersion.V500, QoS.ExactlyOnce, PacketType.PubComp)]
    public async Task Acknowledgement_of_the_wrong_qos_closes_the_connection(MqttProtocolVersion version, QoS qos, PacketType answer)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("t", qos);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await publisher.SendAsync(Publish("t", "one", qos, packetId: 1));
        await publisher.ExpectAckAsync(qos == QoS.AtLeastOnce ? PacketType.PubAck : PacketType.PubRec, 1);
        var publish = await subscriber.ExpectAsync<PublishPacket>();
        Assert.Equal(qos, publish.QoS);

        await subscriber.SendAsync(new PublishAckPacket(answer, publish.PacketId));
        var packets = await subscriber.ReceiveUntilClosedAsync();
        if (version == MqttProtocolVersion.V500)
        {
            var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
            Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }
    }
}
