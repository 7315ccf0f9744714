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
/// (PUBREL for an unknown id is covered by <c>PublishQosTests.Pubrel_for_an_unknown_packet_id_gets_pubcomp</c>.)
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

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.Success)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.PacketIdentifierNotFound)]
    public async Task Pubrec_for_a_qos1_delivery_gets_pubrel_and_the_delivery_stays_in_flight(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await publisher.SendAsync(Publish("t", "one", QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        var publish = await subscriber.ExpectAsync<PublishPacket>();
        Assert.Equal(QoS.AtLeastOnce, publish.QoS);

        // PUBREC is the QoS 2 answer: the id is not in flight as QoS 2.
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubRec, publish.PacketId));
        Assert.Equal(expected, (await subscriber.ExpectAckAsync(PacketType.PubRel, publish.PacketId)).ReasonCode);
        var session = host.Broker.FindSession("", "sub")!;
        Assert.Equal(1, session.InflightCount);

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, publish.PacketId));
        await subscriber.PingAsync();
        Assert.Equal(0, session.InflightCount);
    }
}
