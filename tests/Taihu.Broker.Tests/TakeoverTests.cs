using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>A second connection with a client id already connected takes the session over (3.1.1 section 3.1.4, 5.0 section 3.1.4).</summary>
public class TakeoverTests
{
    private static void AssertKicked(List<MqttPacket> packets, MqttProtocolVersion version)
    {
        if (version == MqttProtocolVersion.V500)
        {
            var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
            Assert.Equal(ReasonCode.SessionTakenOver, disconnect.ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Second_connection_takes_over_and_the_session_continues(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var (old, oldAck) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: false, sessionExpiry: 3600));
        await using var _ = old;
        Assert.False(oldAck.SessionPresent);
        await old.SubscribeAsync("t/#", QoS.AtLeastOnce);

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: false, sessionExpiry: 3600));
        await using var __ = taker;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.True(ack.SessionPresent);
        AssertKicked(await old.ReceiveUntilClosedAsync(), version);

        await using var publisher = await TestClient.ConnectAsync(host, "publisher", version);
        await publisher.Client.PublishStringAsync("t/1", "after takeover", MqttQualityOfServiceLevel.AtLeastOnce);
        var publish = await taker.ExpectAsync<PublishPacket>();
        Assert.Equal(("t/1", "after takeover"), (publish.Topic, publish.PayloadText()));
        Assert.Equal(2, host.Broker.SessionCount); // "dev" and the publisher
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Takeover_with_clean_start_discards_the_subscriptions(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var (old, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: false, sessionExpiry: 3600));
        await using var o = old;
        await old.SubscribeAsync("t/#", QoS.AtLeastOnce);

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: true));
        await using var t = taker;
        Assert.False(ack.SessionPresent);
        AssertKicked(await old.ReceiveUntilClosedAsync(), version);
        await taker.SubscribeAsync("marker", QoS.AtLeastOnce);

        await using var publisher = await TestClient.ConnectAsync(host, "publisher", version);
        await publisher.Client.PublishStringAsync("t/1", "old subscription", MqttQualityOfServiceLevel.AtLeastOnce);
        await publisher.Client.PublishStringAsync("marker", "marker", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("marker", (await taker.ExpectAsync<PublishPacket>()).Topic);
    }

    /// <summary>
    /// A clean session (3.1.1 Clean Session 1; 5.0 Session Expiry 0, whatever Clean Start says) ends with its
    /// connection, so a persistent connection that takes it over has nothing to resume: Session Present 0 and
    /// none of the old subscriptions (5.0 section 3.1.2.11.2, as Mosquitto does).
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V311, true)]
    [InlineData(MqttProtocolVersion.V500, true)]
    [InlineData(MqttProtocolVersion.V500, false)]
    public async Task Persistent_connection_taking_over_a_clean_session_gets_a_fresh_one(MqttProtocolVersion version, bool oldCleanStart)
    {
        await using var host = await BrokerHost.StartAsync();
        var (old, oldAck) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: oldCleanStart, sessionExpiry: 0));
        await using var o = old;
        Assert.Equal(ReasonCode.Success, oldAck.ReasonCode);
        await old.SubscribeAsync("t/#", QoS.AtLeastOnce);

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: false, sessionExpiry: 3600));
        await using var t = taker;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.False(ack.SessionPresent);
        AssertKicked(await old.ReceiveUntilClosedAsync(), version);
        await taker.SubscribeAsync("marker", QoS.AtLeastOnce);
        Assert.Equal(1, host.Broker.FindSession("", "dev")!.SubscriptionCount);

        await using var publisher = await TestClient.ConnectAsync(host, "publisher", version);
        await publisher.Client.PublishStringAsync("t/1", "old subscription", MqttQualityOfServiceLevel.AtLeastOnce);
        await publisher.Client.PublishStringAsync("marker", "marker", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("marker", (await taker.ExpectAsync<PublishPacket>()).Topic);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Unacknowledged_message_moves_to_the_new_connection(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var (old, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: false, sessionExpiry: 3600));
        await using var o = old;
        await old.SubscribeAsync("t", QoS.AtLeastOnce);
        await using var publisher = await TestClient.ConnectAsync(host, "publisher", version);
        await publisher.Client.PublishStringAsync("t", "in flight", MqttQualityOfServiceLevel.AtLeastOnce);
        var first = await old.ExpectAsync<PublishPacket>();

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("dev", version, cleanStart: false, sessionExpiry: 3600));
        await using var t = taker;
        Assert.True(ack.SessionPresent);
        var again = await taker.ExpectAsync<PublishPacket>();
        Assert.True(again.Dup);
        Assert.Equal((first.PacketId, "in flight"), (again.PacketId, again.PayloadText()));
    }

    [Fact]
    public async Task Mqttnet_client_is_told_its_session_was_taken_over()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var old = await TestClient.ConnectAsync(host, "dev");
        var disconnected = new TaskCompletionSource<MqttClientDisconnectReason>(TaskCreationOptions.RunContinuationsAsynchronously);
        old.Client.DisconnectedAsync += e =>
        {
            disconnected.TrySetResult(e.Reason);
            return Task.CompletedTask;
        };

        await using var taker = await TestClient.ConnectAsync(host, "dev");
        Assert.Equal(MqttClientDisconnectReason.SessionTakenOver, await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(taker.Client.IsConnected);
    }
}
