using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// Acknowledgements of the broker's own deliveries that name a packet identifier it has not in flight (5.0
/// section 4.3.3: PUBREL 0x92 answers an unknown PUBREC; 3.1.1 has no reason code). An unknown PUBACK or PUBCOMP
/// is ignored and the connection carries on: the next packet the client reads is the answer to its PINGREQ.
/// (PUBREL for an unknown id is covered by <c>PublishQosTests.Pubrel_for_an_unknown_packet_id_gets_pubcomp</c>; an
/// acknowledgement of the wrong QoS for an id that is in flight, by <c>WrongAcknowledgementTests</c>.)
/// </summary>
public class UnknownPacketIdTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.Success)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.PacketIdentifierNotFound)]
    public async Task Pubrec_for_an_unknown_packet_id_gets_pubrel(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await ConnectRawAsync(host, "c1", version.ToOurs());

        await client.SendAsync(new PublishAckPacket(PacketType.PubRec, 4321));
        var rel = await client.ExpectAckAsync(PacketType.PubRel, 4321);
        Assert.Equal(expected, rel.ReasonCode);
        await client.PingAsync();
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, PacketType.PubAck)]
    [InlineData(MqttProtocolVersion.V311, PacketType.PubComp)]
    [InlineData(MqttProtocolVersion.V500, PacketType.PubAck)]
    [InlineData(MqttProtocolVersion.V500, PacketType.PubComp)]
    public async Task Puback_or_pubcomp_for_an_unknown_packet_id_is_ignored(MqttProtocolVersion version, PacketType type)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await ConnectRawAsync(host, "c1", version.ToOurs());

        await client.SendAsync(new PublishAckPacket(type, 4321));
        await client.PingAsync();

        // Still a working connection: a delivery goes through and is acknowledged.
        await client.SubscribeAsync("t", QoS.AtLeastOnce);
        await client.SendAsync(Publish("t", "after", QoS.AtLeastOnce, packetId: 1));
        var publish = await client.ExpectAsync<PublishPacket>();
        Assert.Equal("after", publish.PayloadText());
        await client.ExpectAckAsync(PacketType.PubAck, 1);
        await client.SendAsync(new PublishAckPacket(PacketType.PubAck, publish.PacketId));
        await client.PingAsync();
    }
}
