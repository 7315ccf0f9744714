using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

public class SubscribeTests
{
    private static MqttTopicFilter Filter(string topic, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtMostOnce, bool noLocal = false, bool retainAsPublished = false) =>
        new MqttTopicFilterBuilder().WithTopic(topic).WithQualityOfServiceLevel(qos).WithNoLocal(noLocal).WithRetainAsPublished(retainAsPublished).Build();

    private static async Task SubscribeAsync(TestClient client, MqttTopicFilter filter, uint subscriptionId = 0)
    {
        var builder = new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter);
        if (subscriptionId != 0)
        {
            builder.WithSubscriptionIdentifier(subscriptionId);
        }

        var result = await client.Client.SubscribeAsync(builder.Build());
        Assert.Equal((int)filter.QualityOfServiceLevel, (int)Assert.Single(result.Items).ResultCode);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Plus_and_hash_match_levels_and_hash_matches_its_parent(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await TestClient.ConnectAsync(host, "sub", version);
        await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
        await SubscribeAsync(subscriber, Filter("w/+/c"));
        await SubscribeAsync(subscriber, Filter("h/#"));
        await SubscribeAsync(subscriber, Filter("end"));

        string[] sent = ["w/b/c", "w/b/d", "w/b/c/d", "w/c", "w//c", "h", "h/x", "h/x/y", "hx", "end"];
        foreach (var topic in sent)
        {
            await publisher.Client.PublishStringAsync(topic, topic);
        }

        string[] expected = ["w/b/c", "w//c", "h", "h/x", "h/x/y", "end"];
        foreach (var topic in expected)
        {
            Assert.Equal(topic, (await subscriber.NextAsync()).ApplicationMessage.Topic);
        }

        Assert.False(subscriber.HasPending);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Sys_topics_are_not_matched_by_leading_wildcards(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var wildcard = await TestClient.ConnectAsync(host, "wild", version);
        await using var sys = await TestClient.ConnectAsync(host, "sys", version);
        await SubscribeAsync(wildcard, Filter("#"));
        await SubscribeAsync(wildcard, Filter("+/x"));
        await SubscribeAsync(sys, Filter("$SYS/x"));

        host.Broker.Publish("", new PublishPacket { Topic = "$SYS/x", Payload = Encoding.UTF8.GetBytes("sys") });
        Assert.Equal("$SYS/x", (await sys.NextAsync()).ApplicationMessage.Topic);

        // The sentinel matches both "#" and "+/x": it is the first and only thing the wildcard client gets.
        await sys.Client.PublishStringAsync("sentinel/x", "s");
        Assert.Equal("sentinel/x", (await wildcard.NextAsync()).ApplicationMessage.Topic);
        await sys.Client.PublishStringAsync("end/x", "e");
        Assert.Equal("end/x", (await wildcard.NextAsync()).ApplicationMessage.Topic);
    }

    [Theory]
    [InlineData(ProtocolVersion.V311, ReasonCode.UnspecifiedError)]
    [InlineData(ProtocolVersion.V500, ReasonCode.TopicFilterInvalid)]
    public async Task Invalid_filters_are_refused_one_by_one_while_valid_ones_are_granted(ProtocolVersion version, ReasonCode refused)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, version, "raw");
        var subscribe = new SubscribePacket { PacketId = 7 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "ok/1", MaximumQoS = QoS.AtLeastOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "a/b#" });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "ok/+", MaximumQoS = QoS.ExactlyOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "a/#/b" });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "a+/c" });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "ok/0" });
        await raw.SendAsync(subscribe);
        var ack = await raw.ExpectAsync<SubAckPacket>();
        Assert.Equal(7, ack.PacketId);
        Assert.Equal([ReasonCode.GrantedQoS1, refused, ReasonCode.GrantedQoS2, refused, refused, ReasonCode.GrantedQoS0], ack.ReasonCodes);

        await raw.SendAsync(new PublishPacket { Topic = "ok/0", Payload = "x"u8.ToArray() });
        var delivered = await raw.ExpectAsync<PublishPacket>();
        Assert.Equal("ok/0", delivered.Topic);
        Assert.Equal(QoS.AtMostOnce, delivered.QoS);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Granted_qos_is_the_requested_qos(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "c", version);
        var options = new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(Filter("g/0", MqttQualityOfServiceLevel.AtMostOnce))
            .WithTopicFilter(Filter("g/1", MqttQualityOfServiceLevel.AtLeastOnce))
            .WithTopicFilter(Filter("g/2", MqttQualityOfServiceLevel.ExactlyOnce))
            .Build();
        var result = await client.Client.SubscribeAsync(options);
        Assert.Equal(
            [MqttClientSubscribeResultCode.GrantedQoS0, MqttClientSubscribeResultCode.GrantedQoS1, MqttClientSubscribeResultCode.GrantedQoS2],
            result.Items.Select(i => i.ResultCode));

        await client.Client.PublishStringAsync("g/2", "x", MqttQualityOfServiceLevel.ExactlyOnce);
        Assert.Equal(MqttQualityOfServiceLevel.ExactlyOnce, (await client.NextAsync()).ApplicationMessage.QualityOfServiceLevel);
        await client.Client.PublishStringAsync("g/1", "x", MqttQualityOfServiceLevel.ExactlyOnce);
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, (await client.NextAsync()).ApplicationMessage.QualityOfServiceLevel);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Overlapping_subscriptions_deliver_one_copy_at_the_highest_qos(MqttProtocolVersion version)
    {
        var v5 = version == MqttProtocolVersion.V500;
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await TestClient.ConnectAsync(host, "sub", version);
        await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
        await SubscribeAsync(subscriber, Filter("o/#", MqttQualityOfServiceLevel.AtMostOnce), v5 ? 1u : 0u);
        await SubscribeAsync(subscriber, Filter("o/+", MqttQualityOfServiceLevel.ExactlyOnce), v5 ? 2u : 0u);
        await SubscribeAsync(subscriber, Filter("o/x", MqttQualityOfServiceLevel.AtLeastOnce), v5 ? 3u : 0u);

        await publisher.Client.PublishStringAsync("o/x", "one", MqttQualityOfServiceLevel.ExactlyOnce);
        await publisher.Client.PublishStringAsync("o/y/z", "two", MqttQualityOfServiceLevel.ExactlyOnce);

        var first = (await subscriber.NextAsync()).ApplicationMessage;
        Assert.Equal("o/x", first.Topic);
        Assert.Equal(MqttQualityOfServiceLevel.ExactlyOnce, first.QualityOfServiceLevel);
        var second = (await subscriber.NextAsync()).ApplicationMessage;
        Assert.Equal("o/y/z", second.Topic);
        Assert.Equal(MqttQualityOfServiceLevel.AtMostOnce, second.QualityOfServiceLevel);
        if (v5)
        {
            Assert.Equal([1u, 2u, 3u], first.SubscriptionIdentifiers.Order());
            Assert.Equal([1u], second.SubscriptionIdentifiers);
        }

        Assert.False(subscriber.HasPending);
    }

    [Fact]
    public async Task Subscription_identifier_is_carried_on_live_and_retained_delivery()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await TestClient.ConnectAsync(host, "sub");
        await using var publisher = await TestClient.ConnectAsync(host, "pub");
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("id/r").WithPayload("r").WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await SubscribeAsync(subscriber, Filter("id/#", MqttQualityOfServiceLevel.AtLeastOnce), 268_435_455);
        var retained = (await subscriber.NextAsync()).ApplicationMessage;
        Assert.Equal("id/r", retained.Topic);
        Assert.Equal([268_435_455u], retained.SubscriptionIdentifiers);

        await SubscribeAsync(subscriber, Filter("plain/#"));
        await publisher.Client.PublishStringAsync("id/live", "l");
        await publisher.Client.PublishStringAsync("plain/x", "p");
        Assert.Equal([268_435_455u], (await subscriber.NextAsync()).ApplicationMessage.SubscriptionIdentifiers);
        var plain = (await subscriber.NextAsync()).ApplicationMessage;
        Assert.Equal("plain/x", plain.Topic);
        Assert.True(plain.SubscriptionIdentifiers is null or { Count: 0 });
    }

    [Fact]
    public async Task No_local_keeps_a_clients_own_publishes_from_it()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var self = await TestClient.ConnectAsync(host, "self");
        await using var other = await TestClient.ConnectAsync(host, "other");
        await SubscribeAsync(self, Filter("nl/t", MqttQualityOfServiceLevel.AtLeastOnce, noLocal: true));
        await SubscribeAsync(other, Filter("nl/t", MqttQualityOfServiceLevel.AtLeastOnce));

        await self.Client.PublishStringAsync("nl/t", "mine", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("mine", (await other.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        await other.Client.PublishStringAsync("nl/t", "theirs", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("theirs", (await self.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        Assert.False(self.HasPending);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Retain_as_published_keeps_the_retain_flag_on_live_delivery(MqttProtocolVersion version)
    {
        var v5 = version == MqttProtocolVersion.V500;
        await using var host = await BrokerHost.StartAsync();
        await using var keeps = await TestClient.ConnectAsync(host, "keeps", version);
        await using var clears = await TestClient.ConnectAsync(host, "clears", version);
        await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
        await SubscribeAsync(keeps, Filter("rap/t", retainAsPublished: v5));
        await SubscribeAsync(clears, Filter("rap/t"));

        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("rap/t").WithPayload("r").WithRetainFlag().Build());
        Assert.Equal(v5, (await keeps.NextAsync()).ApplicationMessage.Retain);
        Assert.False((await clears.NextAsync()).ApplicationMessage.Retain);

        // A new subscription gets the stored message with the retain flag set, whatever the option.
        await using var late = await TestClient.ConnectAsync(host, "late", version);
        await SubscribeAsync(late, Filter("rap/t"));
        Assert.True((await late.NextAsync()).ApplicationMessage.Retain);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Subscribing_again_to_the_same_filter_replaces_the_subscription(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "c", version);
        await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
        await SubscribeAsync(client, Filter("again/t", MqttQualityOfServiceLevel.AtMostOnce));
        await SubscribeAsync(client, Filter("again/t", MqttQualityOfServiceLevel.ExactlyOnce));
        Assert.Equal(1, host.Broker.SubscriptionCount(""));

        await publisher.Client.PublishStringAsync("again/t", "1", MqttQualityOfServiceLevel.ExactlyOnce);
        await SubscribeAsync(client, Filter("again/end"));
        await publisher.Client.PublishStringAsync("again/end", "3");
        var first = (await client.NextAsync()).ApplicationMessage;
        Assert.Equal(("again/t", MqttQualityOfServiceLevel.ExactlyOnce), (first.Topic, first.QualityOfServiceLevel));
        Assert.Equal("3", (await client.NextAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task Retain_handling_decides_whether_retained_messages_follow_the_suback()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "c");
        await client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("rh/t").WithPayload("kept").WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());

        async Task SubscribeWithAsync(string filter, MqttRetainHandling handling) =>
            await client.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(new MqttTopicFilterBuilder().WithTopic(filter).WithRetainHandling(handling).Build()).Build());

        await SubscribeWithAsync("rh/+", MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly);
        Assert.Equal("rh/t", (await client.NextAsync()).ApplicationMessage.Topic);
        await SubscribeWithAsync("rh/+", MqttRetainHandling.SendAtSubscribeIfNewSubscriptionOnly);
        await SubscribeWithAsync("rh/#", MqttRetainHandling.DoNotSendOnSubscribe);
        await SubscribeWithAsync("rh/t", MqttRetainHandling.SendAtSubscribe);
        var again = (await client.NextAsync()).ApplicationMessage;
        Assert.True(again.Retain);

        // Sentinel: nothing else was queued by the two subscriptions that must not send.
        await client.Client.UnsubscribeAsync("rh/#");
        await client.Client.UnsubscribeAsync("rh/t");
        await client.Client.PublishStringAsync("rh/sentinel", "s");
        Assert.Equal("rh/sentinel", (await client.NextAsync()).ApplicationMessage.Topic);
    }
}
