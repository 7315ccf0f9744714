using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

public class MaximumPacketSizeTests
{
    [Fact]
    public async Task Connack_advertises_the_maximum_packet_size()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumPacketSize = 256);
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket { ProtocolVersion = ProtocolVersion.V500, ClientId = "c" });
        await using var _ = client;
        Assert.Equal(256u, ack.Properties!.MaximumPacketSize);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Packet_larger_than_the_limit_closes_the_connection(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumPacketSize = 256);
        await using var subscriber = await TestClient.ConnectAsync(host, "sub", version);
        await subscriber.Client.SubscribeAsync("big/#");
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("big/one", new string('x', 500), QoS.AtLeastOnce, packetId: 1));
        var packets = await publisher.ReceiveUntilClosedAsync();
        if (version == MqttProtocolVersion.V500)
        {
            var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
            Assert.Equal(ReasonCode.PacketTooLarge, disconnect.ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }

        // The broker serves a fresh client, and the big message was never routed.
        await using var fresh = await TestClient.ConnectAsync(host, "fresh", version);
        await fresh.Client.PublishStringAsync("big/small", "ok", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce);
        var message = await subscriber.NextAsync();
        Assert.Equal("big/small", message.ApplicationMessage.Topic);
    }

    [Fact]
    public async Task Packet_exactly_at_the_limit_is_accepted_and_one_byte_more_is_not()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumPacketSize = 256);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V311);
        var publish = Publish("edge", "", QoS.AtLeastOnce, packetId: 1);
        // A remaining length above 127 takes a second length byte.
        publish.Payload = new byte[256 - PacketWriter.GetSize(publish, ProtocolVersion.V311) - 1];
        Assert.Equal(256, PacketWriter.GetSize(publish, ProtocolVersion.V311));

        await publisher.SendAsync(publish);
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);

        publish.PacketId = 2;
        publish.Payload = new byte[publish.Payload.Length + 1];
        await publisher.SendAsync(publish);
        Assert.Empty(await publisher.ReceiveUntilClosedAsync());
    }

    [Fact]
    public async Task Acknowledgement_leaves_out_its_reason_string_rather_than_exceed_the_clients_limit()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500, new MqttProperties { MaximumPacketSize = 16 });

        // Refused with 0x99: the broker would explain why in a reason string, but the PUBACK must fit in 16 bytes.
        var bad = Publish("limit/t", "", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { PayloadFormatIndicator = 1 });
        bad.Payload = new byte[] { 0xFF, 0xFE };
        await publisher.SendAsync(bad);
        var ack = await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        Assert.Equal(ReasonCode.PayloadFormatInvalid, ack.ReasonCode);
        Assert.Null(ack.Properties?.ReasonString);
        Assert.True(PacketWriter.GetSize(ack, ProtocolVersion.V500) <= 16);

        // The same for DISCONNECT.
        await publisher.SendAsync(Publish("", "x", properties: new MqttProperties { TopicAlias = 9 }));
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await publisher.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
        Assert.Null(disconnect.Properties?.ReasonString);
    }

    [Fact]
    public async Task Acknowledgement_keeps_its_reason_string_when_it_fits()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        var bad = Publish("limit/t", "", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { PayloadFormatIndicator = 1 });
        bad.Payload = new byte[] { 0xFF, 0xFE };
        await publisher.SendAsync(bad);
        var ack = await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        Assert.Equal(ReasonCode.PayloadFormatInvalid, ack.ReasonCode);
        Assert.False(string.IsNullOrEmpty(ack.Properties?.ReasonString));
    }

    [Fact]
    public async Task Message_too_large_for_the_subscriber_is_skipped_and_later_ones_arrive()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { MaximumPacketSize = 100 });
        await subscriber.SubscribeAsync("limit/t", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("limit/t", new string('x', 500)));
        await publisher.SendAsync(Publish("limit/t", "small"));
        await publisher.PingAsync();

        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("small", payload);
        Assert.Equal("limit/t", packet.Topic);
    }

    [Fact]
    public async Task Qos1_message_too_large_for_the_subscriber_does_not_block_its_inflight_window()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { MaximumPacketSize = 100, ReceiveMaximum = 1 });
        await subscriber.SubscribeAsync("limit/q1", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("limit/q1", new string('x', 500), QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("limit/q1", "small", QoS.AtLeastOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);

        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("small", payload);
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, packet.PacketId));
        await subscriber.PingAsync();
        var session = host.Broker.FindSession("", "sub")!;
        Assert.Equal(0, session.InflightCount);
        Assert.Equal(0, session.QueuedCount);
    }

    [Fact]
    public async Task Skipped_message_does_not_leave_a_topic_alias_behind()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { MaximumPacketSize = 100, TopicAliasMaximum = 5 });
        await subscriber.SubscribeAsync("limit/alias", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("limit/alias", new string('x', 500)));
        await publisher.SendAsync(Publish("limit/alias", "small"));
        await publisher.PingAsync();

        // The alias the dropped message would have set was never sent: the next delivery carries the topic.
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("small", payload);
        Assert.Equal("limit/alias", packet.Topic);
    }

    [Theory]
    [InlineData(QoS.AtLeastOnce)]
    [InlineData(QoS.ExactlyOnce)]
    public async Task Dropped_message_frees_its_slot_and_later_messages_of_the_same_qos_arrive(QoS qos)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { MaximumPacketSize = 100, ReceiveMaximum = 1 });
        await subscriber.SubscribeAsync("limit/flow", qos);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        var dropped = host.Broker.Metrics.Dropped;
        var ack = qos == QoS.AtLeastOnce ? PacketType.PubAck : PacketType.PubRec;

        // Two too large, then three that fit: each must arrive and be acknowledged in turn through a window of one.
        ushort id = 1;
        foreach (var payload in new[] { new string('x', 500), new string('y', 500), "a", "b", "c" })
        {
            await publisher.SendAsync(Publish("limit/flow", payload, qos, packetId: id));
            await publisher.ExpectAckAsync(ack, id);
            if (qos == QoS.ExactlyOnce)
            {
                await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, id));
                await publisher.ExpectAckAsync(PacketType.PubComp, id);
            }

            id++;
        }

        foreach (var expected in new[] { "a", "b", "c" })
        {
            var (packet, payload) = await subscriber.ExpectPublishAsync();
            Assert.Equal(expected, payload);
            Assert.Equal(qos, packet.QoS);
            if (qos == QoS.AtLeastOnce)
            {
                await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, packet.PacketId));
            }
            else
            {
                await subscriber.SendAsync(new PublishAckPacket(PacketType.PubRec, packet.PacketId));
                await subscriber.ExpectAckAsync(PacketType.PubRel, packet.PacketId);
                await subscriber.SendAsync(new PublishAckPacket(PacketType.PubComp, packet.PacketId));
            }
        }

        await subscriber.PingAsync();
        var session = host.Broker.FindSession("", "sub")!;
        Assert.Equal(0, session.InflightCount);
        Assert.Equal(0, session.QueuedCount);
        Assert.Equal(dropped + 2, host.Broker.Metrics.Dropped);
    }

    [Fact]
    public async Task Message_too_large_waiting_behind_a_full_window_is_dropped_when_its_turn_comes()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { MaximumPacketSize = 100, ReceiveMaximum = 1 });
        await subscriber.SubscribeAsync("limit/queued", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        // "first" fills the window; the big one and "last" wait in the session queue.
        ushort id = 1;
        foreach (var payload in new[] { "first", new string('x', 500), "last" })
        {
            await publisher.SendAsync(Publish("limit/queued", payload, QoS.AtLeastOnce, packetId: id));
            await publisher.ExpectAckAsync(PacketType.PubAck, id);
            id++;
        }

        var (first, firstPayload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("first", firstPayload);
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, first.PacketId));

        var (last, lastPayload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("last", lastPayload);
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, last.PacketId));
        await subscriber.PingAsync();
        Assert.Equal(0, host.Broker.FindSession("", "sub")!.InflightCount);
    }
}
