using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

public class RetainedTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Retained_message_is_delivered_to_later_subscribers_with_retain_set(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await PublishRetainedAsync(publisher, "ret/t", "kept");

        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("ret/t", QoS.AtLeastOnce);
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("kept", payload);
        Assert.Equal("ret/t", packet.Topic);
        Assert.True(packet.Retain);
        Assert.Equal(QoS.AtLeastOnce, packet.QoS);
        await subscriber.PingAsync();
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, QoS.ExactlyOnce, QoS.AtMostOnce)]
    [InlineData(MqttProtocolVersion.V500, QoS.ExactlyOnce, QoS.AtLeastOnce)]
    [InlineData(MqttProtocolVersion.V500, QoS.AtMostOnce, QoS.ExactlyOnce)]
    public async Task Retained_message_is_sent_at_the_lower_qos(MqttProtocolVersion version, QoS published, QoS subscribed)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await PublishRetainedAsync(publisher, "ret/q", "kept", published);

        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("ret/q", subscribed);
        var (packet, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal((QoS)Math.Min((int)published, (int)subscribed), packet.QoS);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Newer_retained_message_replaces_the_older(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await PublishRetainedAsync(publisher, "ret/t", "old");
        await PublishRetainedAsync(publisher, "ret/t", "new");
        Assert.Equal(1, host.Broker.RetainedCount(""));

        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce);
        Assert.Equal("new", (await subscriber.ExpectPublishAsync()).Payload);
        await subscriber.PingAsync();
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Empty_retained_payload_deletes_the_retained_message(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await PublishRetainedAsync(publisher, "ret/t", "old");
        await PublishRetainedAsync(publisher, "ret/t", "");
        Assert.Equal(0, host.Broker.RetainedCount(""));

        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce);
        // Retained messages follow the SUBACK at once: none precedes the PINGRESP.
        await subscriber.PingAsync();
    }

    [Fact]
    public async Task Retain_handling_0_sends_retained_on_every_subscribe()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await PublishRetainedAsync(publisher, "ret/t", "kept");

        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce, packetId: 1, RetainHandling.SendAtSubscribe);
        Assert.Equal("kept", (await subscriber.ExpectPublishAsync()).Payload);
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce, packetId: 2, RetainHandling.SendAtSubscribe);
        Assert.Equal("kept", (await subscriber.ExpectPublishAsync()).Payload);
        await subscriber.PingAsync();
    }

    [Fact]
    public async Task Retain_handling_1_sends_retained_only_for_a_new_subscription()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await PublishRetainedAsync(publisher, "ret/t", "kept");

        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce, packetId: 1, RetainHandling.SendIfNewSubscription);
        Assert.Equal("kept", (await subscriber.ExpectPublishAsync()).Payload);

        // The same subscription again: not new, so nothing is resent.
        await subscriber.SubscribeAsync("ret/t", QoS.AtLeastOnce, packetId: 2, RetainHandling.SendIfNewSubscription);
        await subscriber.PingAsync();

        // After UNSUBSCRIBE it is new again.
        var unsubscribe = new UnsubscribePacket { PacketId = 3 };
        unsubscribe.Filters.Add("ret/t");
        await subscriber.SendAsync(unsubscribe);
        await subscriber.ExpectAsync<UnsubAckPacket>();
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce, packetId: 4, RetainHandling.SendIfNewSubscription);
        Assert.Equal("kept", (await subscriber.ExpectPublishAsync()).Payload);
        await subscriber.PingAsync();
    }

    [Fact]
    public async Task Retain_handling_2_never_sends_retained()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await PublishRetainedAsync(publisher, "ret/t", "kept");

        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("ret/t", QoS.AtMostOnce, packetId: 1, RetainHandling.DoNotSend);
        await subscriber.PingAsync();

        // The subscription itself works: live messages arrive.
        await publisher.SendAsync(Publish("ret/t", "live"));
        Assert.Equal("live", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Retain_as_published_keeps_the_retain_flag_on_live_messages()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var plain = await ConnectRawAsync(host, "plain", ProtocolVersion.V500);
        await plain.SubscribeAsync("ret/live", QoS.AtMostOnce, retainAsPublished: false);
        await using var rap = await ConnectRawAsync(host, "rap", ProtocolVersion.V500);
        await rap.SubscribeAsync("ret/live", QoS.AtMostOnce, retainAsPublished: true);
        await using var old = await ConnectRawAsync(host, "old", ProtocolVersion.V311);
        await old.SubscribeAsync("ret/live", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await PublishRetainedAsync(publisher, "ret/live", "retained");
        await publisher.SendAsync(Publish("ret/live", "not retained"));

        Assert.False((await plain.ExpectPublishAsync()).Packet.Retain);
        Assert.False((await plain.ExpectPublishAsync()).Packet.Retain);
        Assert.True((await rap.ExpectPublishAsync()).Packet.Retain);
        Assert.False((await rap.ExpectPublishAsync()).Packet.Retain);
        // 3.1.1 section 3.3.1.3: RETAIN is 0 on messages for established subscriptions.
        Assert.False((await old.ExpectPublishAsync()).Packet.Retain);
        Assert.False((await old.ExpectPublishAsync()).Packet.Retain);
    }

    [Theory]
    [InlineData("ret/#", new[] { "ret/a/1", "ret/a/2", "ret/b/1", "ret/c" })]
    [InlineData("ret/a/+", new[] { "ret/a/1", "ret/a/2" })]
    [InlineData("ret/+/1", new[] { "ret/a/1", "ret/b/1" })]
    [InlineData("+/+", new[] { "ret/c" })]
    [InlineData("#", new[] { "ret/a/1", "ret/a/2", "ret/b/1", "ret/c", "other" })]
    public async Task Wildcard_subscription_gets_every_matching_retained_message(string filter, string[] expected)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        foreach (var topic in new[] { "ret/a/1", "ret/a/2", "ret/b/1", "ret/c", "other" })
        {
            await PublishRetainedAsync(publisher, topic, topic);
        }

        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync(filter, QoS.AtMostOnce);
        var topics = new List<string>();
        foreach (var _ in expected)
        {
            var (packet, payload) = await subscriber.ExpectPublishAsync();
            Assert.True(packet.Retain);
            Assert.Equal(packet.Topic, payload);
            topics.Add(packet.Topic);
        }

        await subscriber.PingAsync();
        Assert.Equal(expected.Order(StringComparer.Ordinal), topics.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Retained_limit_refuses_new_topics_but_allows_replacement()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumRetainedMessages = 2);
        await using var live = await ConnectRawAsync(host, "live", ProtocolVersion.V500);
        await live.SubscribeAsync("lim/#", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await PublishRetainedAsync(publisher, "lim/1", "one");
        await PublishRetainedAsync(publisher, "lim/2", "two");
        await PublishRetainedAsync(publisher, "lim/3", "three");
        Assert.Equal(2, host.Broker.RetainedCount(""));
        await PublishRetainedAsync(publisher, "lim/1", "one again");
        Assert.Equal(2, host.Broker.RetainedCount(""));

        // Not stored, but still routed to those subscribed now.
        foreach (var expected in new[] { "one", "two", "three", "one again" })
        {
            Assert.Equal(expected, (await live.ExpectPublishAsync()).Payload);
        }

        await using (var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500))
        {
            await subscriber.SubscribeAsync("lim/#", QoS.AtMostOnce);
            var payloads = new[] { (await subscriber.ExpectPublishAsync()).Payload, (await subscriber.ExpectPublishAsync()).Payload };
            await subscriber.PingAsync();
            Assert.Equal(["one again", "two"], payloads.Order(StringComparer.Ordinal));
        }

        // Deleting one makes room again.
        await PublishRetainedAsync(publisher, "lim/2", "");
        await PublishRetainedAsync(publisher, "lim/3", "three");
        Assert.Equal(2, host.Broker.RetainedCount(""));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V500, MqttProtocolVersion.V311)]
    public async Task Retained_messages_cross_protocol_versions(MqttProtocolVersion publisherVersion, MqttProtocolVersion subscriberVersion)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", publisherVersion.ToOurs());
        await PublishRetainedAsync(publisher, "ret/x", "across");

        await using var subscriber = await ConnectRawAsync(host, "sub", subscriberVersion.ToOurs());
        await subscriber.SubscribeAsync("ret/x", QoS.AtLeastOnce);
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("across", payload);
        Assert.True(packet.Retain);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Retained_publish_is_refused_when_retain_is_not_available(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync(o => o.RetainAvailable = false);
        var (publisher, ack) = await RawClient.ConnectAsync(host, new ConnectPacket { ProtocolVersion = version.ToOurs(), ClientId = "pub" });
        await using var _ = publisher;
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal((byte)0, ack.Properties!.RetainAvailable);
        }

        await publisher.SendAsync(Publish("ret/t", "x", QoS.AtLeastOnce, packetId: 1, retain: true));
        var packets = await publisher.ReceiveUntilClosedAsync();
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(ReasonCode.RetainNotSupported, Assert.IsType<DisconnectPacket>(Assert.Single(packets)).ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }

        Assert.Equal(0, host.Broker.RetainedCount(""));
    }

    private static async Task PublishRetainedAsync(RawClient publisher, string topic, string payload, QoS qos = QoS.AtLeastOnce)
    {
        await publisher.SendAsync(Publish(topic, payload, qos, packetId: qos == QoS.AtMostOnce ? (ushort)0 : (ushort)1, retain: true));
        if (qos == QoS.AtLeastOnce)
        {
            await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        }
        else if (qos == QoS.ExactlyOnce)
        {
            await publisher.ExpectAckAsync(PacketType.PubRec, 1);
            await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 1));
            await publisher.ExpectAckAsync(PacketType.PubComp, 1);
        }
        else
        {
            await publisher.PingAsync();
        }
    }
}
