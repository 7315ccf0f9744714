using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

public class PublishQosTests
{
    public static TheoryData<MqttProtocolVersion, QoS, QoS> QosCombinations()
    {
        var data = new TheoryData<MqttProtocolVersion, QoS, QoS>();
        foreach (var version in new[] { MqttProtocolVersion.V311, MqttProtocolVersion.V500 })
        {
            foreach (var published in new[] { QoS.AtMostOnce, QoS.AtLeastOnce, QoS.ExactlyOnce })
            {
                foreach (var subscribed in new[] { QoS.AtMostOnce, QoS.AtLeastOnce, QoS.ExactlyOnce })
                {
                    data.Add(version, published, subscribed);
                }
            }
        }

        return data;
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos0_publish_is_not_acknowledged_and_is_delivered(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/0", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/0", "zero"));
        // Nothing acknowledges QoS 0: the PINGRESP is the next packet.
        await publisher.PingAsync();

        var (delivered, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("q/0", delivered.Topic);
        Assert.Equal("zero", payload);
        Assert.Equal(QoS.AtMostOnce, delivered.QoS);
        Assert.Equal(0, delivered.PacketId);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos1_publish_is_acknowledged_with_puback(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/1", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/1", "one", QoS.AtLeastOnce, packetId: 17));
        var ack = await publisher.ExpectAckAsync(PacketType.PubAck, 17);
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);

        var (delivered, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("one", payload);
        Assert.Equal(QoS.AtLeastOnce, delivered.QoS);
        Assert.NotEqual(0, delivered.PacketId);
        Assert.False(delivered.Dup);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos2_publish_completes_pubrec_pubrel_pubcomp(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/2", QoS.ExactlyOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/2", "two", QoS.ExactlyOnce, packetId: 300));
        var rec = await publisher.ExpectAckAsync(PacketType.PubRec, 300);
        Assert.Equal(ReasonCode.Success, rec.ReasonCode);
        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 300));
        var comp = await publisher.ExpectAckAsync(PacketType.PubComp, 300);
        Assert.Equal(ReasonCode.Success, comp.ReasonCode);

        var (delivered, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("two", payload);
        Assert.Equal(QoS.ExactlyOnce, delivered.QoS);
    }

    [Theory]
    [MemberData(nameof(QosCombinations))]
    public async Task Delivery_qos_is_the_lower_of_publish_and_subscription(MqttProtocolVersion version, QoS published, QoS subscribed)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        var subAck = await subscriber.SubscribeAsync("q/min", subscribed);
        Assert.Equal((ReasonCode)(byte)subscribed, Assert.Single(subAck.ReasonCodes));
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/min", "m", published, packetId: published == QoS.AtMostOnce ? (ushort)0 : (ushort)5));
        if (published == QoS.AtLeastOnce)
        {
            await publisher.ExpectAckAsync(PacketType.PubAck, 5);
        }
        else if (published == QoS.ExactlyOnce)
        {
            await publisher.ExpectAckAsync(PacketType.PubRec, 5);
        }

        var (delivered, _) = await subscriber.ExpectPublishAsync();
        var expected = (QoS)Math.Min((int)published, (int)subscribed);
        Assert.Equal(expected, delivered.QoS);
        Assert.Equal(expected == QoS.AtMostOnce, delivered.PacketId == 0);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos1_delivery_waits_for_puback_before_it_leaves_the_session(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/1", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/1", "one", QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        var (delivered, _) = await subscriber.ExpectPublishAsync();
        var session = host.Broker.FindSession("", "sub")!;
        Assert.Equal(1, session.InflightCount);

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, delivered.PacketId));
        await subscriber.PingAsync();
        Assert.Equal(0, session.InflightCount);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos2_delivery_to_the_client_runs_the_four_way_handshake(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/2", QoS.ExactlyOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/2", "two", QoS.ExactlyOnce, packetId: 9));
        await publisher.ExpectAckAsync(PacketType.PubRec, 9);
        var (delivered, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal(QoS.ExactlyOnce, delivered.QoS);

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubRec, delivered.PacketId));
        var rel = await subscriber.ExpectAckAsync(PacketType.PubRel, delivered.PacketId);
        Assert.Equal(ReasonCode.Success, rel.ReasonCode);
        var session = host.Broker.FindSession("", "sub")!;
        Assert.Equal(1, session.InflightCount);

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubComp, delivered.PacketId));
        await subscriber.PingAsync();
        Assert.Equal(0, session.InflightCount);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos2_resent_with_dup_before_pubrel_is_delivered_once(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/dup", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("q/dup", "once", QoS.ExactlyOnce, packetId: 42));
        await publisher.ExpectAckAsync(PacketType.PubRec, 42);
        var again = Publish("q/dup", "once", QoS.ExactlyOnce, packetId: 42);
        again.Dup = true;
        await publisher.SendAsync(again);
        await publisher.ExpectAckAsync(PacketType.PubRec, 42);
        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 42));
        await publisher.ExpectAckAsync(PacketType.PubComp, 42);
        await publisher.SendAsync(Publish("q/dup", "sentinel"));
        await publisher.PingAsync();

        Assert.Equal("once", (await subscriber.ExpectPublishAsync()).Payload);
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos2_packet_id_is_free_again_after_pubrel(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/reuse", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        foreach (var payload in new[] { "first", "second" })
        {
            await publisher.SendAsync(Publish("q/reuse", payload, QoS.ExactlyOnce, packetId: 7));
            await publisher.ExpectAckAsync(PacketType.PubRec, 7);
            await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 7));
            await publisher.ExpectAckAsync(PacketType.PubComp, 7);
        }

        Assert.Equal("first", (await subscriber.ExpectPublishAsync()).Payload);
        Assert.Equal("second", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.Success)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.PacketIdentifierNotFound)]
    public async Task Pubrel_for_an_unknown_packet_id_gets_pubcomp(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 1234));
        var comp = await publisher.ExpectAckAsync(PacketType.PubComp, 1234);
        Assert.Equal(expected, comp.ReasonCode);
        await publisher.PingAsync();
    }

    [Fact]
    public async Task V5_puback_and_pubrec_say_no_matching_subscribers_when_nobody_subscribes()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("nobody/here", "x", QoS.AtLeastOnce, packetId: 1));
        Assert.Equal(ReasonCode.NoMatchingSubscribers, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);

        // 0x10 is a success code: the QoS 2 exchange still completes.
        await publisher.SendAsync(Publish("nobody/here", "x", QoS.ExactlyOnce, packetId: 2));
        Assert.Equal(ReasonCode.NoMatchingSubscribers, (await publisher.ExpectAckAsync(PacketType.PubRec, 2)).ReasonCode);
        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 2));
        Assert.Equal(ReasonCode.Success, (await publisher.ExpectAckAsync(PacketType.PubComp, 2)).ReasonCode);
    }

    [Fact]
    public async Task V311_puback_has_no_reason_code_when_nobody_subscribes()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V311);

        await publisher.SendAsync(Publish("nobody/here", "x", QoS.AtLeastOnce, packetId: 1));
        Assert.Equal(ReasonCode.Success, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos2_resent_after_reconnect_before_pubrel_is_delivered_once(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("q/resume", QoS.AtMostOnce);

        await using (var first = await ConnectPersistentAsync(host, "pub", version, expectSessionPresent: false))
        {
            await first.SendAsync(Publish("q/resume", "once", QoS.ExactlyOnce, packetId: 9));
            await first.ExpectAckAsync(PacketType.PubRec, 9);
        }

        await using var second = await ConnectPersistentAsync(host, "pub", version, expectSessionPresent: true);
        var again = Publish("q/resume", "once", QoS.ExactlyOnce, packetId: 9);
        again.Dup = true;
        await second.SendAsync(again);
        await second.ExpectAckAsync(PacketType.PubRec, 9);
        await second.SendAsync(new PublishAckPacket(PacketType.PubRel, 9));
        Assert.Equal(ReasonCode.Success, (await second.ExpectAckAsync(PacketType.PubComp, 9)).ReasonCode);
        await second.SendAsync(Publish("q/resume", "sentinel"));

        Assert.Equal("once", (await subscriber.ExpectPublishAsync()).Payload);
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Unacknowledged_deliveries_are_resumed_after_reconnect(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        ushort q1Id;
        ushort q2Id;
        await using (var first = await ConnectPersistentAsync(host, "sub", version, expectSessionPresent: false))
        {
            await first.SubscribeAsync("q/#", QoS.ExactlyOnce);
            await publisher.SendAsync(Publish("q/one", "one", QoS.AtLeastOnce, packetId: 1));
            await publisher.ExpectAckAsync(PacketType.PubAck, 1);
            await publisher.SendAsync(Publish("q/two", "two", QoS.ExactlyOnce, packetId: 2));
            await publisher.ExpectAckAsync(PacketType.PubRec, 2);
            q1Id = (await first.ExpectPublishAsync()).Packet.PacketId;
            q2Id = (await first.ExpectPublishAsync()).Packet.PacketId;
            await first.SendAsync(new PublishAckPacket(PacketType.PubRec, q2Id));
            await first.ExpectAckAsync(PacketType.PubRel, q2Id);
        }

        await using var second = await ConnectPersistentAsync(host, "sub", version, expectSessionPresent: true);
        // The QoS 1 message again with DUP and its packet id; for the QoS 2 one, past PUBREC, only PUBREL.
        var packets = new[] { await second.ReceiveAsync(), await second.ReceiveAsync() };
        var resent = Assert.Single(packets.OfType<PublishPacket>());
        Assert.True(resent.Dup);
        Assert.Equal(q1Id, resent.PacketId);
        Assert.Equal("q/one", resent.Topic);
        var rel = Assert.Single(packets.OfType<PublishAckPacket>());
        Assert.Equal(PacketType.PubRel, rel.Type);
        Assert.Equal(q2Id, rel.PacketId);

        await second.SendAsync(new PublishAckPacket(PacketType.PubAck, q1Id));
        await second.SendAsync(new PublishAckPacket(PacketType.PubComp, q2Id));
        await second.PingAsync();
        Assert.Equal(0, host.Broker.FindSession("", "sub")!.InflightCount);
    }

    private static async Task<RawClient> ConnectPersistentAsync(BrokerHost host, string clientId, MqttProtocolVersion version, bool expectSessionPresent)
    {
        var v5 = version == MqttProtocolVersion.V500;
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket
        {
            ProtocolVersion = version.ToOurs(),
            ClientId = clientId,
            CleanStart = false,
            Properties = v5 ? new MqttProperties { SessionExpiryInterval = 600 } : null,
        });
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Equal(expectSessionPresent, ack.SessionPresent);
        return client;
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task MQTTnet_client_publishes_and_receives_at_every_qos(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "mqttnet", version);
        await client.Client.SubscribeAsync("q/all", MQTTnet.Protocol.MqttQualityOfServiceLevel.ExactlyOnce);

        foreach (var level in new[] { MQTTnet.Protocol.MqttQualityOfServiceLevel.AtMostOnce, MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce, MQTTnet.Protocol.MqttQualityOfServiceLevel.ExactlyOnce })
        {
            var result = await client.Client.PublishStringAsync("q/all", level.ToString(), level);
            Assert.True(result.IsSuccess);
            var message = await client.NextAsync();
            Assert.Equal(level.ToString(), message.ApplicationMessage.ConvertPayloadToString());
            Assert.Equal(level, message.ApplicationMessage.QualityOfServiceLevel);
        }
    }
}
