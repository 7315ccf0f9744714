using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

public class FlowControlTests
{
    [Fact]
    public async Task Broker_sends_no_more_unacknowledged_qos1_than_the_clients_receive_maximum()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { ReceiveMaximum = 2 });
        await subscriber.SubscribeAsync("flow/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await PublishNumberedAsync(publisher, "flow/t", 5);

        await AssertWindowAsync(host, subscriber, publisher, "flow/t", 5, window: 2);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Broker_inflight_limit_caps_deliveries_to_any_client(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumInflightMessages = 3);
        // A 5.0 client asking for more than the broker's limit still gets the broker's limit.
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs(), new MqttProperties { ReceiveMaximum = 50 });
        await subscriber.SubscribeAsync("flow/cap", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await PublishNumberedAsync(publisher, "flow/cap", 6);

        await AssertWindowAsync(host, subscriber, publisher, "flow/cap", 6, window: 3);
    }

    [Fact]
    public async Task Qos2_deliveries_hold_the_window_until_pubcomp()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { ReceiveMaximum = 1 });
        await subscriber.SubscribeAsync("flow/q2", QoS.ExactlyOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        for (var i = 1; i <= 2; i++)
        {
            await publisher.SendAsync(Publish("flow/q2", $"m{i}", QoS.ExactlyOnce, packetId: (ushort)i));
            await publisher.ExpectAckAsync(PacketType.PubRec, (ushort)i);
        }

        var (first, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("m1", payload);
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubRec, first.PacketId));
        await subscriber.ExpectAckAsync(PacketType.PubRel, first.PacketId);
        // PUBREC alone does not free the slot.
        await subscriber.PingAsync();

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubComp, first.PacketId));
        Assert.Equal("m2", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Connack_advertises_the_brokers_receive_maximum()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumInflightMessages = 7);
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket { ProtocolVersion = ProtocolVersion.V500, ClientId = "c" });
        await using var _ = client;
        Assert.Equal((ushort)7, ack.Properties!.ReceiveMaximum);
    }

    [Fact]
    public async Task Exceeding_the_brokers_receive_maximum_with_qos2_disconnects_with_0x93()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumInflightMessages = 2);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        // Two unreleased QoS 2 messages fill the window; releasing one frees a slot.
        await publisher.SendAsync(Publish("flow/in", "1", QoS.ExactlyOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubRec, 1);
        await publisher.SendAsync(Publish("flow/in", "2", QoS.ExactlyOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubRec, 2);
        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 1));
        await publisher.ExpectAckAsync(PacketType.PubComp, 1);
        await publisher.SendAsync(Publish("flow/in", "3", QoS.ExactlyOnce, packetId: 3));
        await publisher.ExpectAckAsync(PacketType.PubRec, 3);

        await publisher.SendAsync(Publish("flow/in", "4", QoS.ExactlyOnce, packetId: 4));
        var packets = await publisher.ReceiveUntilClosedAsync();
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
        Assert.Equal(ReasonCode.ReceiveMaximumExceeded, disconnect.ReasonCode);
    }

    [Fact]
    public async Task Client_answering_pubrecs_after_exceeding_receive_maximum_still_reads_the_disconnect()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumInflightMessages = 2);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        // Three QoS 2 publishes in one write, as a client that ignores Receive Maximum sends them; the third is over.
        var burst = new List<byte>();
        for (ushort id = 1; id <= 3; id++)
        {
            burst.AddRange(PacketWriter.ToArray(Publish("flow/in", $"{id}", QoS.ExactlyOnce, packetId: id), ProtocolVersion.V500));
        }

        await publisher.SendAsync(burst.ToArray());

        // Like any client, it answers each PUBREC with PUBREL as it reads them. The broker must still be reading
        // (and discarding) when they arrive, or the socket is reset and the client never sees the DISCONNECT.
        for (ushort id = 1; id <= 2; id++)
        {
            await publisher.ExpectAckAsync(PacketType.PubRec, id);
            await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, id));
        }

        var disconnect = await publisher.ExpectAsync<DisconnectPacket>();
        Assert.Equal(ReasonCode.ReceiveMaximumExceeded, disconnect.ReasonCode);
        Assert.Empty(await publisher.ReceiveUntilClosedAsync());
    }

    [Fact]
    public async Task Resending_an_unreleased_qos2_message_does_not_count_against_receive_maximum()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumInflightMessages = 1);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("flow/in", "1", QoS.ExactlyOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubRec, 1);
        var again = Publish("flow/in", "1", QoS.ExactlyOnce, packetId: 1);
        again.Dup = true;
        await publisher.SendAsync(again);
        await publisher.ExpectAckAsync(PacketType.PubRec, 1);
        await publisher.PingAsync();
    }

    private static async Task PublishNumberedAsync(RawClient publisher, string topic, int count)
    {
        for (var i = 1; i <= count; i++)
        {
            await publisher.SendAsync(Publish(topic, $"m{i}", QoS.AtLeastOnce, packetId: (ushort)i));
            await publisher.ExpectAckAsync(PacketType.PubAck, (ushort)i);
        }
    }

    /// <summary>
    /// <paramref name="count"/> QoS 1 messages were routed to <paramref name="subscriber"/>: exactly
    /// <paramref name="window"/> arrive unacknowledged (a QoS 0 sentinel overtakes the rest), then one per PUBACK.
    /// </summary>
    private static async Task AssertWindowAsync(BrokerHost host, RawClient subscriber, RawClient publisher, string topic, int count, int window)
    {
        var received = new Queue<PublishPacket>();
        for (var i = 1; i <= window; i++)
        {
            var (packet, payload) = await subscriber.ExpectPublishAsync();
            Assert.Equal($"m{i}", payload);
            received.Enqueue(packet);
        }

        // QoS 0 is not held by the window: it is the next thing the subscriber sees.
        await publisher.SendAsync(Publish(topic, "sentinel"));
        await publisher.PingAsync();
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
        Assert.Equal(count - window, host.Broker.FindSession("", "sub")!.QueuedCount);

        for (var next = window + 1; next <= count; next++)
        {
            await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, received.Dequeue().PacketId));
            var (packet, payload) = await subscriber.ExpectPublishAsync();
            Assert.Equal($"m{next}", payload);
            received.Enqueue(packet);
            // One PUBACK releases exactly one: nothing else precedes the PINGRESP.
            await subscriber.PingAsync();
        }
    }
}
