using System.Text;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// The will message (3.1.1 section 3.1.2.5, 5.0 sections 3.1.2.5 and 3.1.3.2): published when the connection ends
/// without a normal DISCONNECT, after the Will Delay Interval in 5.0. The client with the will is a
/// <see cref="RawClient"/>; a watcher (MQTTnet, keep alive off so fake time cannot disconnect it) subscribes to will/#.
/// "Not published" is shown by a marker on the same path arriving first.
/// </summary>
public class WillTests
{
    private static async Task<TestClient> WatcherAsync(BrokerHost host, MqttProtocolVersion version = MqttProtocolVersion.V500, string clientId = "watcher")
    {
        var watcher = await TestClient.ConnectAsync(host, clientId, version, b => b.WithKeepAlivePeriod(TimeSpan.Zero));
        await watcher.Client.SubscribeAsync("will/#", MqttQualityOfServiceLevel.AtLeastOnce);
        return watcher;
    }

    private static async Task<RawClient> ConnectWithWillAsync(BrokerHost host, string clientId, MqttProtocolVersion version, WillMessage will, ushort keepAlive = 0, bool cleanStart = true, uint? sessionExpiry = null)
    {
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect(clientId, version, cleanStart, keepAlive, sessionExpiry, will));
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        return client;
    }

    /// <summary>Publishes a marker through the will path itself: a second client whose connection drops.</summary>
    private static async Task SendMarkerAsync(BrokerHost host, MqttProtocolVersion version)
    {
        var marker = await ConnectWithWillAsync(host, "marker", version, RawPackets.Will("will/marker", "marker"));
        await marker.DisposeAsync();
    }

    private static async Task AssertNextIsMarkerAsync(TestClient watcher)
    {
        var next = await watcher.NextAsync();
        Assert.Equal("will/marker", next.ApplicationMessage.Topic);
    }

    private static async Task AssertWillAsync(TestClient watcher, string topic = "will/w1", string payload = "gone")
    {
        var message = await watcher.NextAsync();
        Assert.Equal(topic, message.ApplicationMessage.Topic);
        Assert.Equal(payload, message.ApplicationMessage.ConvertPayloadToString());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Will_is_published_when_the_socket_closes_without_disconnect(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var watcher = await WatcherAsync(host, version);
        var client = await ConnectWithWillAsync(host, "w1", version, RawPackets.Will("will/w1", "gone", QoS.AtLeastOnce));
        await client.DisposeAsync();

        var message = await watcher.NextAsync();
        Assert.Equal(("will/w1", "gone", MqttQualityOfServiceLevel.AtLeastOnce), (message.ApplicationMessage.Topic, message.ApplicationMessage.ConvertPayloadToString(), message.ApplicationMessage.QualityOfServiceLevel));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Will_is_published_on_keep_alive_timeout(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host, version);
        await using var client = await ConnectWithWillAsync(host, "w1", version, RawPackets.Will("will/w1", "gone"), keepAlive: 10);

        time.Advance(TimeSpan.FromSeconds(15));
        await AssertWillAsync(watcher);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Will_is_not_published_after_a_normal_disconnect(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var watcher = await WatcherAsync(host, version);
        await using var client = await ConnectWithWillAsync(host, "w1", version, RawPackets.Will("will/w1", "gone"));
        await client.SendAsync(new DisconnectPacket());
        Assert.Empty(await client.ReceiveUntilClosedAsync());
        await host.WaitUntilSessionGoneAsync("w1");

        await SendMarkerAsync(host, version);
        await AssertNextIsMarkerAsync(watcher);
    }

    [Theory]
    [InlineData(ReasonCode.DisconnectWithWillMessage)]
    [InlineData(ReasonCode.UnspecifiedError)]
    [InlineData(ReasonCode.ImplementationSpecificError)]
    public async Task Will_is_published_after_a_disconnect_with_any_code_but_normal(ReasonCode code)
    {
        // 5.0 section 3.1.2.5: only DISCONNECT 0x00 removes the will.
        await using var host = await BrokerHost.StartAsync();
        await using var watcher = await WatcherAsync(host);
        await using var client = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, RawPackets.Will("will/w1", "gone"));
        await client.SendAsync(new DisconnectPacket { ReasonCode = code });
        Assert.Empty(await client.ReceiveUntilClosedAsync());
        await AssertWillAsync(watcher);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Will_is_published_when_the_session_is_taken_over(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var watcher = await WatcherAsync(host, version);
        await using var old = await ConnectWithWillAsync(host, "w1", version, RawPackets.Will("will/w1", "gone"));
        var (taker, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", version));
        await using var t = taker;
        await AssertWillAsync(watcher);
    }

    [Fact]
    public async Task Will_delay_holds_the_will_until_it_passes()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", properties: new MqttProperties { WillDelayInterval = 10 });
        var client = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: false, sessionExpiry: 60);
        await client.DisposeAsync();
        await WaitUntilWillPendingAsync(host, "w1");

        time.Advance(TimeSpan.FromSeconds(9));
        await SendMarkerAsync(host, MqttProtocolVersion.V500);
        await AssertNextIsMarkerAsync(watcher);

        time.Advance(TimeSpan.FromSeconds(1));
        await AssertWillAsync(watcher);
    }

    [Fact]
    public async Task Will_delay_is_cut_to_the_session_expiry()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", properties: new MqttProperties { WillDelayInterval = 100 });
        var client = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: false, sessionExpiry: 5);
        await client.DisposeAsync();
        await WaitUntilWillPendingAsync(host, "w1");

        time.Advance(TimeSpan.FromSeconds(5));
        await AssertWillAsync(watcher);
        Assert.Null(host.Broker.FindSession("", "w1"));
    }

    [Fact]
    public async Task Reconnecting_within_the_will_delay_cancels_the_will()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", properties: new MqttProperties { WillDelayInterval = 10 });
        var client = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: false, sessionExpiry: 60);
        await client.DisposeAsync();
        await WaitUntilWillPendingAsync(host, "w1");

        time.Advance(TimeSpan.FromSeconds(5));
        var (again, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60));
        await using var a = again;
        Assert.True(ack.SessionPresent);

        time.Advance(TimeSpan.FromSeconds(20));
        await SendMarkerAsync(host, MqttProtocolVersion.V500);
        await AssertNextIsMarkerAsync(watcher);
    }

    /// <summary>
    /// Mosquitto's rule for a reconnect within the Will Delay Interval: a session that ended with its connection
    /// (Session Expiry 0) is not resumed, so the will of the connection taken over goes out at once.
    /// </summary>
    [Fact]
    public async Task Takeover_of_a_non_persistent_session_sends_its_delayed_will_at_once()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", properties: new MqttProperties { WillDelayInterval = 60 });
        await using var old = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: true, sessionExpiry: 0);

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60));
        await using var t = taker;
        Assert.False(ack.SessionPresent);
        await AssertWillAsync(watcher);
    }

    /// <summary>Clean Start 1 within the Will Delay Interval: the old session ends, and its will goes out at once.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Clean_start_within_the_will_delay_sends_the_will_at_once(bool oldStillConnected)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", properties: new MqttProperties { WillDelayInterval = 30 });
        await using var old = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: false, sessionExpiry: 60);
        if (!oldStillConnected)
        {
            await old.DisposeAsync();
            await WaitUntilWillPendingAsync(host, "w1");
            time.Advance(TimeSpan.FromSeconds(5));
        }

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", MqttProtocolVersion.V500, cleanStart: true, sessionExpiry: 60));
        await using var t = taker;
        Assert.False(ack.SessionPresent);
        await AssertWillAsync(watcher);
    }

    /// <summary>A persistent session taken over with Clean Start 0 is resumed within the delay: its delayed will is cancelled.</summary>
    [Fact]
    public async Task Takeover_of_a_persistent_session_within_the_will_delay_cancels_the_will()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", properties: new MqttProperties { WillDelayInterval = 10 });
        await using var old = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: false, sessionExpiry: 60);

        var (taker, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60));
        await using var t = taker;
        Assert.True(ack.SessionPresent);
        Assert.Single(await old.ReceiveUntilClosedAsync());

        time.Advance(TimeSpan.FromSeconds(20));
        await SendMarkerAsync(host, MqttProtocolVersion.V500);
        await AssertNextIsMarkerAsync(watcher);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Will_with_retain_is_stored_as_retained(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using (var watcher = await WatcherAsync(host, version))
        {
            var client = await ConnectWithWillAsync(host, "w1", version, RawPackets.Will("will/w1", "gone", QoS.AtLeastOnce, retain: true));
            await client.DisposeAsync();
            await AssertWillAsync(watcher);
        }

        Assert.Equal(1, host.Broker.RetainedCount(""));
        await using var late = await WatcherAsync(host, version, "late");
        var retained = await late.NextAsync();
        Assert.Equal(("will/w1", "gone", true), (retained.ApplicationMessage.Topic, retained.ApplicationMessage.ConvertPayloadToString(), retained.ApplicationMessage.Retain));
    }

    [Fact]
    public async Task Will_properties_reach_the_receiver()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var watcher = await WatcherAsync(host);
        var properties = new MqttProperties
        {
            ContentType = "text/plain",
            PayloadFormatIndicator = 1,
            MessageExpiryInterval = 300,
            ResponseTopic = "reply/w1",
            CorrelationData = Encoding.UTF8.GetBytes("corr"),
            UserProperties = [new UserProperty("device", "w1"), new UserProperty("reason", "lost")],
        };
        var client = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, RawPackets.Will("will/w1", "gone", properties: properties));
        await client.DisposeAsync();

        var message = (await watcher.NextAsync()).ApplicationMessage;
        Assert.Equal("text/plain", message.ContentType);
        Assert.Equal(MqttPayloadFormatIndicator.CharacterData, message.PayloadFormatIndicator);
        Assert.InRange(message.MessageExpiryInterval, 299u, 300u);
        Assert.Equal("reply/w1", message.ResponseTopic);
        Assert.Equal("corr", Encoding.UTF8.GetString(message.CorrelationData));
        Assert.Equal([("device", "w1"), ("reason", "lost")], message.UserProperties.Select(p => (p.Name, p.ReadValueAsString())));
    }

    [Fact]
    public async Task Will_message_expiry_counts_from_when_the_delayed_will_is_published()
    {
        // 5.0 section 3.1.3.2.4: the will's Message Expiry Interval is its lifetime "when the Server publishes" it.
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await WatcherAsync(host);
        var will = RawPackets.Will("will/w1", "gone", retain: true, properties: new MqttProperties { WillDelayInterval = 10, MessageExpiryInterval = 5 });
        var client = await ConnectWithWillAsync(host, "w1", MqttProtocolVersion.V500, will, cleanStart: false, sessionExpiry: 60);
        await client.DisposeAsync();
        await WaitUntilWillPendingAsync(host, "w1");

        time.Advance(TimeSpan.FromSeconds(10));
        var message = (await watcher.NextAsync()).ApplicationMessage;
        Assert.Equal("will/w1", message.Topic);
        Assert.Equal(5u, message.MessageExpiryInterval);
        Assert.Equal(1, host.Broker.RetainedCount(""));
    }

    private static Task WaitUntilWillPendingAsync(BrokerHost host, string clientId) =>
        BrokerState.WaitUntilAsync(() =>
        {
            var session = host.Broker.FindSession("", clientId);
            if (session is null)
            {
                return false;
            }

            return session.IsWillPending;
        }, $"the will of '{clientId}' is pending");
}
