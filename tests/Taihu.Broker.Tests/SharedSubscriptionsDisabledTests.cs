using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// <see cref="BrokerOptions.SharedSubscriptionsEnabled"/> = false: CONNACK (5.0) says Shared Subscription Available
/// 0, and a $share filter is refused with 0x9E (5.0) or 0x80 (3.1.1), while the other filters of the same
/// SUBSCRIBE are granted.
/// </summary>
public class SharedSubscriptionsDisabledTests
{
    private static Task<BrokerHost> StartAsync() => BrokerHost.StartAsync(o => o.SharedSubscriptionsEnabled = false);

    [Fact]
    public async Task Connack_says_shared_subscriptions_are_not_available()
    {
        await using var host = await StartAsync();
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("c1", ProtocolVersion.V500));
        await using var _ = client;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Equal((byte)0, ack.Properties?.SharedSubscriptionAvailable);
    }

    [Fact]
    public async Task Connack_leaves_the_property_out_when_shared_subscriptions_are_enabled()
    {
        // Absent means available (5.0 section 3.2.2.3.15).
        await using var host = await BrokerHost.StartAsync();
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("c1", ProtocolVersion.V500));
        await using var _ = client;
        Assert.NotNull(ack.Properties);
        Assert.Null(ack.Properties.SharedSubscriptionAvailable);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.UnspecifiedError)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.SharedSubscriptionsNotSupported)]
    public async Task Share_filter_is_refused_and_a_plain_filter_in_the_same_subscribe_is_granted(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        var subscribe = new SubscribePacket { PacketId = 3 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "$share/g/t", MaximumQoS = QoS.AtLeastOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "sentinel", MaximumQoS = QoS.AtLeastOnce });
        await subscriber.SendAsync(subscribe);
        var ack = await subscriber.ExpectAsync<SubAckPacket>();
        // 3.1.1 has only 0x80 for a failure, which decodes as UnspecifiedError.
        Assert.Equal([expected, ReasonCode.GrantedQoS1], ack.ReasonCodes);
        Assert.Equal(1, host.Broker.SubscriptionCount(""));

        // Nothing published to t reaches the subscriber: the sentinel comes first.
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await publisher.SendAsync(Publish("t", "shared", QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("sentinel", "s", QoS.AtLeastOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        var (packet, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal("sentinel", packet.Topic);
    }
}
