using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

public class SharedSubscriptionTests
{
    private const string Done = "done";

    private static async Task SubscribeAsync(TestClient client, string filter, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var result = await client.Client.SubscribeAsync(filter, qos);
        Assert.Equal((int)qos, (int)Assert.Single(result.Items).ResultCode);
    }

    /// <summary>Reads payloads until the "done" sentinel (published after everything else, to a plain subscription).</summary>
    private static async Task<List<string>> ReadUntilDoneAsync(TestClient client)
    {
        var payloads = new List<string>();
        while (true)
        {
            var message = (await client.NextAsync()).ApplicationMessage;
            if (message.Topic == Done)
            {
                return payloads;
            }

            payloads.Add(message.ConvertPayloadToString());
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Messages_are_spread_over_the_members_of_a_group(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var members = new List<TestClient>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var member = await TestClient.ConnectAsync(host, $"m{i}", version);
                members.Add(member);
                await SubscribeAsync(member, "$share/g/t/#");
                await SubscribeAsync(member, Done);
            }

            await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
            for (var i = 0; i < 30; i++)
            {
                await publisher.Client.PublishStringAsync($"t/{i % 4}", i.ToString(System.Globalization.CultureInfo.InvariantCulture), MqttQualityOfServiceLevel.AtLeastOnce);
            }

            await publisher.Client.PublishStringAsync(Done, "", MqttQualityOfServiceLevel.AtLeastOnce);
            var all = new List<string>();
            foreach (var member in members)
            {
                var got = await ReadUntilDoneAsync(member);
                Assert.NotEmpty(got);
                all.AddRange(got);
            }

            Assert.Equal(30, all.Count);
            Assert.Equal(30, all.Distinct().Count());
        }
        finally
        {
            foreach (var member in members)
            {
                await member.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Every_group_gets_every_message(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var a1 = await TestClient.ConnectAsync(host, "a1", version);
        await using var a2 = await TestClient.ConnectAsync(host, "a2", version);
        await using var b1 = await TestClient.ConnectAsync(host, "b1", version);
        await using var b2 = await TestClient.ConnectAsync(host, "b2", version);
        foreach (var (client, group) in new[] { (a1, "a"), (a2, "a"), (b1, "b"), (b2, "b") })
        {
            await SubscribeAsync(client, $"$share/{group}/s/+");
            await SubscribeAsync(client, Done);
        }

        await using var publisher = await TestClient.ConnectAsync(host, "pub", version);
        for (var i = 0; i < 10; i++)
        {
            await publisher.Client.PublishStringAsync("s/x", $"m{i}", MqttQualityOfServiceLevel.AtLeastOnce);
        }

        await publisher.Client.PublishStringAsync(Done, "", MqttQualityOfServiceLevel.AtLeastOnce);
        var expected = Enumerable.Range(0, 10).Select(i => $"m{i}").ToList();
        var groupA = (await ReadUntilDoneAsync(a1)).Concat(await ReadUntilDoneAsync(a2)).Order().ToList();
        var groupB = (await ReadUntilDoneAsync(b1)).Concat(await ReadUntilDoneAsync(b2)).Order().ToList();
        Assert.Equal(expected.Order(), groupA);
        Assert.Equal(expected.Order(), groupB);
    }

    [Fact]
    public async Task Unacknowledged_messages_of_a_leaving_member_go_to_another_member()
    {
        await using var host = await BrokerHost.StartAsync();
        var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "leaver");
        var subscribe = new SubscribePacket { PacketId = 1 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "$share/g/job/#", MaximumQoS = QoS.AtLeastOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = Done, MaximumQoS = QoS.AtLeastOnce });
        await raw.SendAsync(subscribe);
        Assert.Equal([ReasonCode.GrantedQoS1, ReasonCode.GrantedQoS1], (await raw.ExpectAsync<SubAckPacket>()).ReasonCodes);

        await using var stayer = await TestClient.ConnectAsync(host, "stayer");
        await SubscribeAsync(stayer, "$share/g/job/#");
        await SubscribeAsync(stayer, Done);

        await using var publisher = await TestClient.ConnectAsync(host, "pub");
        for (var i = 0; i < 6; i++)
        {
            await publisher.Client.PublishStringAsync("job/1", $"j{i}", MqttQualityOfServiceLevel.AtLeastOnce);
        }

        await publisher.Client.PublishStringAsync(Done, "", MqttQualityOfServiceLevel.AtLeastOnce);

        // The raw member reads its share and never acknowledges it.
        var unacknowledged = new List<string>();
        while (await raw.ExpectAsync<PublishPacket>() is { } publish && publish.Topic != Done)
        {
            Assert.Equal(QoS.AtLeastOnce, publish.QoS);
            unacknowledged.Add(System.Text.Encoding.UTF8.GetString(publish.Payload.Span));
        }

        Assert.NotEmpty(unacknowledged);
        var received = await ReadUntilDoneAsync(stayer);
        Assert.Equal(6 - unacknowledged.Count, received.Count);

        await raw.DisposeAsync();
        for (var i = 0; i < unacknowledged.Count; i++)
        {
            received.Add((await stayer.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        }

        Assert.Equal(Enumerable.Range(0, 6).Select(i => $"j{i}").Order(), received.Order());
        await publisher.Client.PublishStringAsync(Done, "", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal(Done, (await stayer.NextAsync()).ApplicationMessage.Topic);
    }

    [Fact]
    public async Task No_local_on_a_shared_subscription_is_a_protocol_error()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "raw");
        var subscribe = new SubscribePacket { PacketId = 3 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "$share/g/t", NoLocal = true });
        await raw.SendAsync(subscribe);
        var packets = await raw.ReceiveUntilClosedAsync();
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
    }

    [Theory]
    [InlineData(ProtocolVersion.V311, ReasonCode.UnspecifiedError)]
    [InlineData(ProtocolVersion.V500, ReasonCode.TopicFilterInvalid)]
    public async Task Invalid_share_names_are_refused(ProtocolVersion version, ReasonCode refused)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, version, "raw");
        var subscribe = new SubscribePacket { PacketId = 4 };
        foreach (var filter in new[] { "$share/g", "$share//t", "$share/g+/t", "$share/g#/t", "$share/g/t/#/x", "$share/ok/t" })
        {
            subscribe.Subscriptions.Add(new TopicSubscription { Filter = filter, MaximumQoS = QoS.AtLeastOnce });
        }

        await raw.SendAsync(subscribe);
        var ack = await raw.ExpectAsync<SubAckPacket>();
        Assert.Equal([refused, refused, refused, refused, refused, ReasonCode.GrantedQoS1], ack.ReasonCodes);
    }

    [Fact]
    public async Task Shared_subscriptions_get_no_retained_messages_but_carry_their_subscription_identifier()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var member = await TestClient.ConnectAsync(host, "member");
        await member.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("sr/t").WithPayload("old").WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await member.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("$share/g/sr/#", MqttQualityOfServiceLevel.AtLeastOnce).WithSubscriptionIdentifier(9).Build());
        await member.Client.PublishStringAsync("sr/t", "new", MqttQualityOfServiceLevel.AtLeastOnce);
        var message = (await member.NextAsync()).ApplicationMessage;
        Assert.Equal("new", message.ConvertPayloadToString());
        Assert.Equal([9u], message.SubscriptionIdentifiers);
    }

    [Fact]
    public async Task Queued_messages_of_a_leaving_member_go_to_another_member()
    {
        await using var host = await BrokerHost.StartAsync();

        // Receive Maximum 1: one message in flight to the raw member, the rest of its share waits in its session.
        var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "leaver", c => c.Properties = new MqttProperties { ReceiveMaximum = 1 });
        var subscribe = new SubscribePacket { PacketId = 1 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "$share/g/q/#", MaximumQoS = QoS.ExactlyOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = Done, MaximumQoS = QoS.AtMostOnce });
        await raw.SendAsync(subscribe);
        await raw.ExpectAsync<SubAckPacket>();

        await using var stayer = await TestClient.ConnectAsync(host, "stayer");
        await SubscribeAsync(stayer, "$share/g/q/#", MqttQualityOfServiceLevel.ExactlyOnce);
        await SubscribeAsync(stayer, Done);

        await using var publisher = await TestClient.ConnectAsync(host, "pub");
        for (var i = 0; i < 8; i++)
        {
            await publisher.Client.PublishStringAsync("q/1", $"q{i}", i % 2 == 0 ? MqttQualityOfServiceLevel.AtLeastOnce : MqttQualityOfServiceLevel.ExactlyOnce);
        }

        await publisher.Client.PublishStringAsync(Done, "", MqttQualityOfServiceLevel.AtMostOnce);
        var inFlight = await raw.ExpectAsync<PublishPacket>();
        Assert.Equal(Done, (await raw.ExpectAsync<PublishPacket>()).Topic);
        var received = await ReadUntilDoneAsync(stayer);
        Assert.Equal(4, received.Count);
        Assert.DoesNotContain(System.Text.Encoding.UTF8.GetString(inFlight.Payload.Span), received);

        await raw.DisposeAsync();
        for (var i = 0; i < 4; i++)
        {
            received.Add((await stayer.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        }

        Assert.Equal(Enumerable.Range(0, 8).Select(i => $"q{i}").Order(), received.Order());
        await publisher.Client.PublishStringAsync(Done, "", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal(Done, (await stayer.NextAsync()).ApplicationMessage.Topic);
    }
}
