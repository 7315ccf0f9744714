using MQTTnet;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>Topic aliases exist in MQTT 5.0 only.</summary>
public class TopicAliasTests
{
    [Fact]
    public async Task Connack_advertises_the_topic_alias_maximum()
    {
        await using var host = await BrokerHost.StartAsync(o => o.TopicAliasMaximum = 4);
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket { ProtocolVersion = ProtocolVersion.V500, ClientId = "c" });
        await using var _ = client;
        Assert.Equal((ushort)4, ack.Properties!.TopicAliasMaximum);
    }

    [Fact]
    public async Task Client_alias_is_resolved_and_subscribers_get_the_full_topic()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("alias/#", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("alias/a", "set", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { TopicAlias = 3 }));
        Assert.Equal(ReasonCode.Success, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);
        await publisher.SendAsync(Publish("", "use", QoS.AtLeastOnce, packetId: 2, properties: new MqttProperties { TopicAlias = 3 }));
        Assert.Equal(ReasonCode.Success, (await publisher.ExpectAckAsync(PacketType.PubAck, 2)).ReasonCode);

        foreach (var expected in new[] { "set", "use" })
        {
            var (packet, payload) = await subscriber.ExpectPublishAsync();
            Assert.Equal(expected, payload);
            Assert.Equal("alias/a", packet.Topic);
            // The publisher's alias belongs to its connection; this subscriber asked for none.
            Assert.Null(packet.Properties?.TopicAlias);
            await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, packet.PacketId));
        }
    }

    [Fact]
    public async Task Client_can_rebind_an_alias_to_another_topic()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await TestClient.ConnectAsync(host, "sub");
        await subscriber.Client.SubscribeAsync("alias/#");
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("alias/first", "1", properties: new MqttProperties { TopicAlias = 1 }));
        await publisher.SendAsync(Publish("alias/second", "2", properties: new MqttProperties { TopicAlias = 1 }));
        await publisher.SendAsync(Publish("", "3", properties: new MqttProperties { TopicAlias = 1 }));

        Assert.Equal("alias/first", (await subscriber.NextAsync()).ApplicationMessage.Topic);
        Assert.Equal("alias/second", (await subscriber.NextAsync()).ApplicationMessage.Topic);
        Assert.Equal("alias/second", (await subscriber.NextAsync()).ApplicationMessage.Topic);
    }

    [Theory]
    [InlineData((ushort)0)]
    [InlineData((ushort)11)]
    public async Task Alias_outside_the_topic_alias_maximum_disconnects_with_0x94(ushort alias)
    {
        await using var host = await BrokerHost.StartAsync(o => o.TopicAliasMaximum = 10);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("alias/t", "x", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { TopicAlias = alias }));
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await publisher.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.TopicAliasInvalid, disconnect.ReasonCode);
    }

    [Fact]
    public async Task Unknown_alias_with_an_empty_topic_disconnects_with_0x82()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("", "x", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { TopicAlias = 2 }));
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await publisher.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
    }

    [Fact]
    public async Task Aliases_do_not_survive_a_reconnect()
    {
        await using var host = await BrokerHost.StartAsync();
        await using (var first = await ConnectRawAsync(host, "pub", ProtocolVersion.V500, cleanStart: false, properties: new MqttProperties { SessionExpiryInterval = 60 }))
        {
            await first.SendAsync(Publish("alias/t", "x", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { TopicAlias = 1 }));
            await first.ExpectAckAsync(PacketType.PubAck, 1);
        }

        await using var second = await ConnectRawAsync(host, "pub", ProtocolVersion.V500, cleanStart: false, properties: new MqttProperties { SessionExpiryInterval = 60 });
        await second.SendAsync(Publish("", "x", QoS.AtLeastOnce, packetId: 2, properties: new MqttProperties { TopicAlias = 1 }));
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await second.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
    }

    [Fact]
    public async Task Broker_assigns_aliases_when_the_subscriber_allows_them()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { TopicAliasMaximum = 5 });
        await subscriber.SubscribeAsync("out/#", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("out/a", "1"));
        await publisher.SendAsync(Publish("out/a", "2"));
        await publisher.SendAsync(Publish("out/b", "3"));
        await publisher.SendAsync(Publish("out/b", "4"));
        await publisher.SendAsync(Publish("out/a", "5"));

        var (first, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal("out/a", first.Topic);
        var aliasA = first.Properties!.TopicAlias!.Value;
        Assert.InRange(aliasA, (ushort)1, (ushort)5);

        var (second, payload2) = await subscriber.ExpectPublishAsync();
        Assert.Equal("2", payload2);
        Assert.Equal("", second.Topic);
        Assert.Equal(aliasA, second.Properties!.TopicAlias);

        var (third, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal("out/b", third.Topic);
        var aliasB = third.Properties!.TopicAlias!.Value;
        Assert.NotEqual(aliasA, aliasB);
        Assert.InRange(aliasB, (ushort)1, (ushort)5);

        var (fourth, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal("", fourth.Topic);
        Assert.Equal(aliasB, fourth.Properties!.TopicAlias);

        var (fifth, payload5) = await subscriber.ExpectPublishAsync();
        Assert.Equal("5", payload5);
        Assert.Equal("", fifth.Topic);
        Assert.Equal(aliasA, fifth.Properties!.TopicAlias);
    }

    [Fact]
    public async Task Broker_sends_full_topics_once_the_subscribers_aliases_are_used_up()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { TopicAliasMaximum = 1 });
        await subscriber.SubscribeAsync("out/#", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("out/a", "1"));
        await publisher.SendAsync(Publish("out/b", "2"));
        await publisher.SendAsync(Publish("out/b", "3"));

        var (first, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal((ushort)1, first.Properties!.TopicAlias);
        for (var i = 0; i < 2; i++)
        {
            var (packet, _) = await subscriber.ExpectPublishAsync();
            Assert.Equal("out/b", packet.Topic);
            Assert.Null(packet.Properties?.TopicAlias);
        }
    }

    [Fact]
    public async Task Broker_sends_no_aliases_to_a_subscriber_that_did_not_ask()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("out/#", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("out/a", "1"));
        await publisher.SendAsync(Publish("out/a", "2"));

        for (var i = 0; i < 2; i++)
        {
            var (packet, _) = await subscriber.ExpectPublishAsync();
            Assert.Equal("out/a", packet.Topic);
            Assert.Null(packet.Properties?.TopicAlias);
        }
    }
}
