using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// Clean start, persistent sessions, offline queueing, expiry and resumption of unacknowledged deliveries. The
/// persistent client is a <see cref="RawClient"/> so that the test decides exactly what it acknowledges and when
/// its socket goes away; 3.1.1 uses Clean Session 0, 5.0 a Session Expiry Interval.
/// </summary>
public class SessionTests
{
    private static async Task<RawClient> ConnectPersistentAsync(BrokerHost host, string clientId, MqttProtocolVersion version, bool expectPresent, uint expiry = 3600)
    {
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect(clientId, version, cleanStart: false, sessionExpiry: expiry));
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Equal(expectPresent, ack.SessionPresent);
        return client;
    }

    private static async Task DisconnectAsync(RawClient client)
    {
        await client.SendAsync(new DisconnectPacket());
        Assert.Empty(await client.ReceiveUntilClosedAsync());
        await client.DisposeAsync();
    }

    private static Task<TestClient> PublisherAsync(BrokerHost host, MqttProtocolVersion version) =>
        TestClient.ConnectAsync(host, "publisher", version, b => b.WithKeepAlivePeriod(TimeSpan.Zero));

    private static Task Publish(TestClient publisher, string topic, string payload, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        publisher.Client.PublishStringAsync(topic, payload, qos);

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Clean_start_discards_the_previous_session(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("s/1", QoS.AtLeastOnce);
        await DisconnectAsync(first);
        await host.WaitUntilDetachedAsync("s1");

        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("s1", version, cleanStart: true));
        await using var _ = client;
        Assert.False(ack.SessionPresent);
        Assert.Equal(0, host.Broker.FindSession("", "s1")!.SubscriptionCount);
        await client.SubscribeAsync("marker", QoS.AtLeastOnce);

        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "s/1", "old subscription");
        await Publish(publisher, "marker", "marker");
        var publish = await client.ExpectAsync<PublishPacket>();
        Assert.Equal("marker", publish.Topic);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Persistent_session_keeps_subscriptions_and_reports_session_present(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("s/1", QoS.AtLeastOnce);
        await DisconnectAsync(first);
        await host.WaitUntilDetachedAsync("s1");
        Assert.Equal(1, host.Broker.FindSession("", "s1")!.SubscriptionCount);

        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: true);
        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "s/1", "still subscribed");
        var publish = await client.ExpectAsync<PublishPacket>();
        Assert.Equal("s/1", publish.Topic);
        Assert.Equal("still subscribed", publish.PayloadText());
        Assert.Equal(QoS.AtLeastOnce, publish.QoS);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Persistent_session_works_with_mqttnet(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        void Persistent(MqttClientOptionsBuilder b)
        {
            b.WithCleanSession(false);
            if (version == MqttProtocolVersion.V500)
            {
                b.WithSessionExpiryInterval(3600);
            }
        }

        await using (var first = await TestClient.ConnectAsync(host, "s1", version, Persistent))
        {
            Assert.False(first.ConnectResult!.IsSessionPresent);
            await first.Client.SubscribeAsync("s/1", MqttQualityOfServiceLevel.AtLeastOnce);
        }

        await host.WaitUntilDetachedAsync("s1");
        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "s/1", "queued");

        await using var second = await TestClient.ConnectAsync(host, "s1", version, Persistent);
        Assert.True(second.ConnectResult!.IsSessionPresent);
        var message = await second.NextAsync();
        Assert.Equal("queued", message.ApplicationMessage.ConvertPayloadToString());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task QoS_1_and_2_messages_are_queued_while_the_client_is_away(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("q/#", QoS.ExactlyOnce);
        await DisconnectAsync(first);
        await host.WaitUntilDetachedAsync("s1");

        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "q/1", "one", MqttQualityOfServiceLevel.AtLeastOnce);
        await Publish(publisher, "q/0", "zero", MqttQualityOfServiceLevel.AtMostOnce);
        await Publish(publisher, "q/2", "two", MqttQualityOfServiceLevel.ExactlyOnce);
        // QoS 0 for an absent client is not kept; the QoS 0 publish was handled before the QoS 2 one was acknowledged.
        Assert.Equal(2, host.Broker.FindSession("", "s1")!.QueuedCount);

        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: true);
        var one = await client.ExpectAsync<PublishPacket>();
        Assert.Equal(("q/1", "one", QoS.AtLeastOnce, false), (one.Topic, one.PayloadText(), one.QoS, one.Dup));
        var two = await client.ExpectAsync<PublishPacket>();
        Assert.Equal(("q/2", "two", QoS.ExactlyOnce, false), (two.Topic, two.PayloadText(), two.QoS, two.Dup));

        await client.SendAsync(new PublishAckPacket(PacketType.PubAck, one.PacketId));
        await client.SendAsync(new PublishAckPacket(PacketType.PubRec, two.PacketId));
        Assert.Equal(two.PacketId, (await client.ExpectAsync<PublishAckPacket>()).PacketId);
        await client.SendAsync(new PublishAckPacket(PacketType.PubComp, two.PacketId));

        await Publish(publisher, "q/marker", "marker");
        Assert.Equal("q/marker", (await client.ExpectAsync<PublishPacket>()).Topic);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Messages_beyond_the_queue_limit_are_dropped(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumQueuedMessages = 2);
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("q/#", QoS.AtLeastOnce);
        await DisconnectAsync(first);
        await host.WaitUntilDetachedAsync("s1");

        await using var publisher = await PublisherAsync(host, version);
        for (var i = 1; i <= 5; i++)
        {
            await Publish(publisher, "q/" + i, "m" + i);
        }

        Assert.Equal(2, host.Broker.FindSession("", "s1")!.QueuedCount);
        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: true);
        foreach (var expected in new[] { "m1", "m2" })
        {
            var publish = await client.ExpectAsync<PublishPacket>();
            Assert.Equal(expected, publish.PayloadText());
            await client.SendAsync(new PublishAckPacket(PacketType.PubAck, publish.PacketId));
        }

        await Publish(publisher, "q/marker", "marker");
        Assert.Equal("marker", (await client.ExpectAsync<PublishPacket>()).PayloadText());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Session_expires_after_its_interval(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        // 3.1.1 has no expiry of its own: the broker's PersistentSessionExpiryInterval applies.
        await using var host = await BrokerHost.StartAsync(o => o.PersistentSessionExpiryInterval = 10, time);
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false, expiry: 10);
        await first.SubscribeAsync("s/1", QoS.AtLeastOnce);
        await DisconnectAsync(first);
        await host.WaitUntilDetachedAsync("s1");

        time.Advance(TimeSpan.FromSeconds(9));
        Assert.NotNull(host.Broker.FindSession("", "s1"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(host.Broker.FindSession("", "s1"));
        Assert.Equal(0, host.Broker.SubscriptionCount(""));

        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: false, expiry: 10);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Unacknowledged_QoS_1_message_is_sent_again_with_dup_on_resume(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("r", QoS.AtLeastOnce);
        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "r", "once");
        var original = await first.ExpectAsync<PublishPacket>();
        Assert.False(original.Dup);
        await first.DisposeAsync(); // no PUBACK, no DISCONNECT

        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: true);
        var again = await client.ExpectAsync<PublishPacket>();
        Assert.True(again.Dup);
        Assert.Equal((original.PacketId, "r", "once", QoS.AtLeastOnce), (again.PacketId, again.Topic, again.PayloadText(), again.QoS));
        await client.SendAsync(new PublishAckPacket(PacketType.PubAck, again.PacketId));

        await Publish(publisher, "r", "marker");
        var marker = await client.ExpectAsync<PublishPacket>();
        Assert.Equal("marker", marker.PayloadText());
        Assert.False(marker.Dup);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Unacknowledged_QoS_2_message_is_sent_again_with_dup_on_resume(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("r", QoS.ExactlyOnce);
        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "r", "exactly", MqttQualityOfServiceLevel.ExactlyOnce);
        var original = await first.ExpectAsync<PublishPacket>();
        await first.DisposeAsync(); // no PUBREC

        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: true);
        var again = await client.ExpectAsync<PublishPacket>();
        Assert.True(again.Dup);
        Assert.Equal((original.PacketId, QoS.ExactlyOnce, "exactly"), (again.PacketId, again.QoS, again.PayloadText()));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Pubrel_is_sent_again_on_resume_when_pubrec_was_sent(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var first = await ConnectPersistentAsync(host, "s1", version, expectPresent: false);
        await first.SubscribeAsync("r", QoS.ExactlyOnce);
        await using var publisher = await PublisherAsync(host, version);
        await Publish(publisher, "r", "exactly", MqttQualityOfServiceLevel.ExactlyOnce);
        var publish = await first.ExpectAsync<PublishPacket>();
        await first.SendAsync(new PublishAckPacket(PacketType.PubRec, publish.PacketId));
        var rel = await first.ExpectAsync<PublishAckPacket>();
        Assert.Equal((PacketType.PubRel, publish.PacketId), (rel.Type, rel.PacketId));
        await first.DisposeAsync(); // no PUBCOMP

        await using var client = await ConnectPersistentAsync(host, "s1", version, expectPresent: true);
        var again = await client.ExpectAsync<PublishAckPacket>();
        Assert.Equal((PacketType.PubRel, publish.PacketId), (again.Type, again.PacketId));
        await client.SendAsync(new PublishAckPacket(PacketType.PubComp, publish.PacketId));
        await client.PingAsync(); // the PUBCOMP is handled before the marker is published on another connection

        // The message itself is not sent again: the next publish is the marker.
        await Publish(publisher, "r", "marker", MqttQualityOfServiceLevel.ExactlyOnce);
        var marker = await client.ExpectAsync<PublishPacket>();
        Assert.Equal("marker", marker.PayloadText());
        Assert.Equal(1, host.Broker.FindSession("", "s1")!.InflightCount); // only the marker
    }

    [Fact]
    public async Task Disconnect_setting_a_session_expiry_when_connect_had_none_is_a_protocol_error()
    {
        await using var host = await BrokerHost.StartAsync();
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("s1", MqttProtocolVersion.V500, cleanStart: false));
        await using var _ = client;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        await client.SendAsync(new DisconnectPacket { Properties = new MqttProperties { SessionExpiryInterval = 60 } });
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
        await host.WaitUntilSessionGoneAsync("s1");
    }

    [Fact]
    public async Task Disconnect_with_session_expiry_0_ends_a_persistent_session()
    {
        await using var host = await BrokerHost.StartAsync();
        var client = await ConnectPersistentAsync(host, "s1", MqttProtocolVersion.V500, expectPresent: false, expiry: 60);
        await client.SendAsync(new DisconnectPacket { Properties = new MqttProperties { SessionExpiryInterval = 0 } });
        Assert.Empty(await client.ReceiveUntilClosedAsync());
        await client.DisposeAsync();
        await host.WaitUntilSessionGoneAsync("s1");
        await using var again = await ConnectPersistentAsync(host, "s1", MqttProtocolVersion.V500, expectPresent: false);
    }

    [Fact]
    public async Task Disconnect_can_lengthen_the_session_expiry()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        var client = await ConnectPersistentAsync(host, "s1", MqttProtocolVersion.V500, expectPresent: false, expiry: 10);
        await client.SendAsync(new DisconnectPacket { Properties = new MqttProperties { SessionExpiryInterval = 100 } });
        Assert.Empty(await client.ReceiveUntilClosedAsync());
        await client.DisposeAsync();
        await host.WaitUntilDetachedAsync("s1");

        time.Advance(TimeSpan.FromSeconds(50));
        Assert.NotNull(host.Broker.FindSession("", "s1"));
        time.Advance(TimeSpan.FromSeconds(50));
        Assert.Null(host.Broker.FindSession("", "s1"));
    }
}
