using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

public class UnsubscribeTests
{
    [Fact]
    public async Task Unsuback_carries_a_reason_code_per_filter_in_5_0()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "raw");
        var subscribe = new SubscribePacket { PacketId = 1 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "u/a" });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "u/+/b" });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "$share/g/u/c" });
        await raw.SendAsync(subscribe);
        await raw.ExpectAsync<SubAckPacket>();
        Assert.Equal(3, host.Broker.SubscriptionCount(""));

        var unsubscribe = new UnsubscribePacket { PacketId = 2 };
        unsubscribe.Filters.AddRange(["u/a", "never/subscribed", "u/+/b", "u/a", "$share/g/u/c", "u/#/x"]);
        await raw.SendAsync(unsubscribe);
        var ack = await raw.ExpectAsync<UnsubAckPacket>();
        Assert.Equal(2, ack.PacketId);
        Assert.Equal([ReasonCode.Success, ReasonCode.NoSubscriptionExisted, ReasonCode.Success, ReasonCode.NoSubscriptionExisted, ReasonCode.Success, ReasonCode.TopicFilterInvalid], ack.ReasonCodes);
        Assert.Equal(0, host.Broker.SubscriptionCount(""));
    }

    [Fact]
    public async Task Unsuback_in_3_1_1_has_only_the_packet_identifier()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V311, "raw");
        var subscribe = new SubscribePacket { PacketId = 1 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "u/a" });
        await raw.SendAsync(subscribe);
        await raw.ExpectAsync<SubAckPacket>();

        // UNSUBSCRIBE id 0x1234 for "u/a" and "none": UNSUBACK is B0 02 12 34, exactly.
        await raw.SendHexAsync("A2 0D 1234 0003 752F61 0004 6E6F6E65");
        var ack = await raw.ExpectAsync<UnsubAckPacket>();
        Assert.Equal(0x1234, ack.PacketId);
        Assert.Empty(ack.ReasonCodes);
        Assert.Equal(0, host.Broker.SubscriptionCount(""));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Messages_stop_after_unsubscribe(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await TestClient.ConnectAsync(host, "sub", version);
        await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
        await subscriber.Client.SubscribeAsync("stop/#", MqttQualityOfServiceLevel.AtLeastOnce);
        await subscriber.Client.SubscribeAsync("sentinel", MqttQualityOfServiceLevel.AtLeastOnce);
        await publisher.Client.PublishStringAsync("stop/1", "before", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("before", (await subscriber.NextAsync()).ApplicationMessage.ConvertPayloadToString());

        var result = await subscriber.Client.UnsubscribeAsync("stop/#");
        Assert.Equal(MqttClientUnsubscribeResultCode.Success, Assert.Single(result.Items).ResultCode);
        await publisher.Client.PublishStringAsync("stop/1", "after", MqttQualityOfServiceLevel.AtLeastOnce);
        await publisher.Client.PublishStringAsync("sentinel", "s", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("sentinel", (await subscriber.NextAsync()).ApplicationMessage.Topic);
        Assert.False(subscriber.HasPending);
    }
}
