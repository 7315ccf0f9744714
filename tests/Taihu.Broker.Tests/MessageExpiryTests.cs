using System.Diagnostics.Metrics;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// Message Expiry Interval (5.0): set by a 5.0 publisher, honoured for every subscriber (3.1.1 ones just do not
/// see the property). Time moves only when the test advances the <see cref="FakeTimeProvider"/>.
/// </summary>
public class MessageExpiryTests
{
    [Fact]
    public async Task Online_subscriber_gets_the_full_expiry_interval()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("exp/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("exp/t", "m", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { MessageExpiryInterval = 10 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);

        var (packet, _) = await subscriber.ExpectPublishAsync();
        Assert.Equal(10u, packet.Properties!.MessageExpiryInterval);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Queued_message_is_delivered_with_the_remaining_interval(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await ConnectRawAsync(host, "watcher", ProtocolVersion.V500);
        await watcher.SubscribeAsync("gone/#", QoS.AtMostOnce);
        await GoOfflineAsync(host, watcher, "sub", version.ToOurs(), "exp/t");

        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("exp/t", "queued", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { MessageExpiryInterval = 10 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        Assert.Equal(1, host.Broker.FindSession("", "sub")!.QueuedCount);

        time.Advance(TimeSpan.FromSeconds(4));
        await using var subscriber = await ReconnectAsync(host, "sub", version.ToOurs());
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("queued", payload);
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(6u, packet.Properties!.MessageExpiryInterval);
        }
        else
        {
            Assert.Null(packet.Properties);
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Queued_message_past_its_expiry_is_never_delivered(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var watcher = await ConnectRawAsync(host, "watcher", ProtocolVersion.V500);
        await watcher.SubscribeAsync("gone/#", QoS.AtMostOnce);
        await GoOfflineAsync(host, watcher, "sub", version.ToOurs(), "exp/t");

        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("exp/t", "expires", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { MessageExpiryInterval = 10 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("exp/t", "sentinel", QoS.AtLeastOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        Assert.Equal(2, host.Broker.FindSession("", "sub")!.QueuedCount);

        time.Advance(TimeSpan.FromSeconds(11));
        await using var subscriber = await ReconnectAsync(host, "sub", version.ToOurs());
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Message_expiring_while_queued_behind_a_full_window_is_skipped()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500, new MqttProperties { ReceiveMaximum = 1 });
        await subscriber.SubscribeAsync("exp/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("exp/t", "first", QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("exp/t", "expires", QoS.AtLeastOnce, packetId: 2, properties: new MqttProperties { MessageExpiryInterval = 5 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        await publisher.SendAsync(Publish("exp/t", "sentinel", QoS.AtLeastOnce, packetId: 3));
        await publisher.ExpectAckAsync(PacketType.PubAck, 3);

        var (first, _) = await subscriber.ExpectPublishAsync();
        time.Advance(TimeSpan.FromSeconds(6));
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, first.PacketId));
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Expired_messages_do_not_keep_an_offline_sessions_queue_full()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(o => o.MaximumQueuedMessages = 2, time: time);
        await using var watcher = await ConnectRawAsync(host, "watcher", ProtocolVersion.V500);
        await watcher.SubscribeAsync("gone/#", QoS.AtMostOnce);
        await GoOfflineAsync(host, watcher, "sub", ProtocolVersion.V500, "exp/t");

        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        for (ushort id = 1; id <= 2; id++)
        {
            await publisher.SendAsync(Publish("exp/t", "expires", QoS.AtLeastOnce, packetId: id, properties: new MqttProperties { MessageExpiryInterval = 5 }));
            await publisher.ExpectAckAsync(PacketType.PubAck, id);
        }

        time.Advance(TimeSpan.FromSeconds(6));
        await publisher.SendAsync(Publish("exp/t", "fresh", QoS.AtLeastOnce, packetId: 3));
        await publisher.ExpectAckAsync(PacketType.PubAck, 3);

        await using var subscriber = await ReconnectAsync(host, "sub", ProtocolVersion.V500);
        Assert.Equal("fresh", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Retained_message_expires(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("exp/retained", "r", QoS.AtLeastOnce, packetId: 1, retain: true, properties: new MqttProperties { MessageExpiryInterval = 10 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        Assert.Equal(1, host.Broker.RetainedCount(""));

        time.Advance(TimeSpan.FromSeconds(4));
        await using (var early = await ConnectRawAsync(host, "early", version.ToOurs()))
        {
            await early.SubscribeAsync("exp/retained", QoS.AtLeastOnce);
            var (packet, payload) = await early.ExpectPublishAsync();
            Assert.Equal("r", payload);
            Assert.True(packet.Retain);
            Assert.Equal(version == MqttProtocolVersion.V500 ? 6u : null, packet.Properties?.MessageExpiryInterval);
        }

        time.Advance(TimeSpan.FromSeconds(7));
        Assert.Equal(0, host.Broker.RetainedCount(""));
        await using var late = await ConnectRawAsync(host, "late", version.ToOurs());
        await late.SubscribeAsync("exp/retained", QoS.AtLeastOnce);
        // Retained messages follow the SUBACK at once: none precedes the PINGRESP.
        await late.PingAsync();
    }

    [Fact]
    public async Task Queued_message_past_its_expiry_is_counted_as_expired()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        using var expired = new ExpiredDropCounter(host);
        await using var watcher = await ConnectRawAsync(host, "watcher", ProtocolVersion.V500);
        await watcher.SubscribeAsync("gone/#", QoS.AtMostOnce);
        await GoOfflineAsync(host, watcher, "sub", ProtocolVersion.V500, "exp/t");

        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("exp/t", "expires", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { MessageExpiryInterval = 10 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("exp/t", "sentinel", QoS.AtLeastOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        Assert.Equal(0, expired.Count);

        time.Advance(TimeSpan.FromSeconds(11));
        await using var subscriber = await ReconnectAsync(host, "sub", ProtocolVersion.V500);
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
        Assert.Equal(1, expired.Count);
        Assert.Equal(0, host.Broker.FindSession("", "sub")!.QueuedCount);
    }

    /// <summary>
    /// 5.0 section 3.3.2.3.3: a message past its expiry is deleted only if its onward delivery has not started.
    /// One sent and not acknowledged has started, and section 4.4 says it must be sent again on resume: so it is,
    /// with DUP, its packet identifier, and the interval it has left (0 once past its expiry). Mosquitto drops it.
    /// </summary>
    [Fact]
    public async Task Unacknowledged_message_is_sent_again_on_resume_even_past_its_expiry()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        using var expired = new ExpiredDropCounter(host);
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket
        {
            ProtocolVersion = ProtocolVersion.V500,
            ClientId = "sub",
            CleanStart = true,
            Properties = new MqttProperties { SessionExpiryInterval = 3600 },
        });
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        await client.SubscribeAsync("exp/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("exp/t", "short", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { MessageExpiryInterval = 5 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("exp/t", "long", QoS.AtLeastOnce, packetId: 2, properties: new MqttProperties { MessageExpiryInterval = 100 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        var (first, _) = await client.ExpectPublishAsync();
        var (second, _) = await client.ExpectPublishAsync();
        await client.DisposeAsync();
        await host.WaitUntilDetachedAsync("sub");

        time.Advance(TimeSpan.FromSeconds(10));
        await using var subscriber = await ReconnectAsync(host, "sub", ProtocolVersion.V500);
        var (again, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal(("short", first.PacketId, true, 0u), (payload, again.PacketId, again.Dup, again.Properties!.MessageExpiryInterval));
        (again, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal(("long", second.PacketId, true, 90u), (payload, again.PacketId, again.Dup, again.Properties!.MessageExpiryInterval));
        Assert.Equal(0, expired.Count);
    }

    /// <summary>Counts drops tagged reason=expired on this host's own meter (tests run in parallel, each broker has its own).</summary>
    private sealed class ExpiredDropCounter : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _count;

        public ExpiredDropCounter(BrokerHost host)
        {
            var factory = host.Services.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, factory) && instrument.Name == "taihu.mqtt.messages.dropped")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "reason" && Equals(tag.Value, "expired"))
                    {
                        Interlocked.Add(ref _count, value);
                    }
                }
            });
            _listener.Start();
        }

        public long Count => Interlocked.Read(ref _count);

        public void Dispose() => _listener.Dispose();
    }

    /// <summary>
    /// Creates a persistent session for <paramref name="clientId"/> subscribed to <paramref name="filter"/>, then drops
    /// the connection and waits until the broker has detached the session: its will reaches <paramref name="watcher"/>.
    /// </summary>
    private static async Task GoOfflineAsync(BrokerHost host, RawClient watcher, string clientId, ProtocolVersion version, string filter)
    {
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket
        {
            ProtocolVersion = version,
            ClientId = clientId,
            CleanStart = version == ProtocolVersion.V500,
            Properties = version == ProtocolVersion.V500 ? new MqttProperties { SessionExpiryInterval = 3600 } : null,
            Will = new WillMessage { Topic = "gone/" + clientId, Payload = Encoding.UTF8.GetBytes("gone") },
        });
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        await client.SubscribeAsync(filter, QoS.AtLeastOnce);
        await client.DisposeAsync();

        var (will, _) = await watcher.ExpectPublishAsync();
        Assert.Equal("gone/" + clientId, will.Topic);
        Assert.NotNull(host.Broker.FindSession("", clientId));
    }

    private static async Task<RawClient> ReconnectAsync(BrokerHost host, string clientId, ProtocolVersion version)
    {
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket
        {
            ProtocolVersion = version,
            ClientId = clientId,
            CleanStart = false,
            Properties = version == ProtocolVersion.V500 ? new MqttProperties { SessionExpiryInterval = 3600 } : null,
        });
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.True(ack.SessionPresent);
        return client;
    }
}
