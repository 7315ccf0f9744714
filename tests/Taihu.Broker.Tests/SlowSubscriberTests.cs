using System.Text;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// A QoS 1 subscriber that falls behind: its publishers are held back (acknowledgement and reading wait) while its
/// queue is full, instead of its messages being dropped; and a subscriber that stops reading altogether holds them
/// back only for <see cref="BrokerOptions.FullQueuePublisherWait"/>.
/// </summary>
public sealed class SlowSubscriberTests
{
    private const int Publishers = 3;
    private const int MessagesEach = 60;

    /// <summary>
    /// The subscriber reads nothing until every publisher is held back, then reads and acknowledges one message at a
    /// time. With a queue of 10 and an inflight window of 5, 180 messages overflow it many times over: every one
    /// must arrive, in order per publisher, and nothing may be counted as dropped.
    /// </summary>
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task A_subscriber_that_reads_slowly_loses_no_QoS_1_message(MqttProtocolVersion version)
    {
        // Fake time: the publisher wait never runs out here, so the test is about holding back, not about timing.
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(o =>
        {
            o.MaximumQueuedMessages = 10;
            o.MaximumInflightMessages = 5;
        }, time);
        await using var subscriber = await PublishTestKit.ConnectRawAsync(host, "slow", version.ToOurs());
        await subscriber.SubscribeAsync("slow/#", QoS.AtLeastOnce);

        var publishers = new List<TestClient>();
        var sends = new List<Task>();
        try
        {
            for (var p = 0; p < Publishers; p++)
            {
                var publisher = await TestClient.ConnectAsync(host, $"pub-{p}", version, b => b.WithTimeout(TimeSpan.FromSeconds(60)));
                publishers.Add(publisher);
                sends.Add(PublishAllAsync(publisher.Client, p));
            }

            // Reading nothing, the subscriber's queue fills. Every publisher then adds one message past the limit
            // and waits for room; a broker that drops instead counts the drops.
            var session = host.Broker.FindSession("", "slow")!;
            // A publisher's message is queued before it asks for room: waiting for the queue alone let this test
            // read (and make room) before a publisher had asked, and then none was counted as held back (CI saw it).
            await BrokerState.WaitUntilAsync(
                () => host.Broker.Metrics.Dropped > 0 || (session.QueuedCount >= 10 + Publishers && host.Broker.Metrics.PublishersHeldBack >= Publishers),
                "every publisher is held back, or a message is dropped");
            Assert.Equal(0, host.Broker.Metrics.Dropped);

            var next = new int[Publishers];
            for (var received = 0; received < Publishers * MessagesEach; received++)
            {
                var publish = await subscriber.ExpectAsync<PublishPacket>();
                var parts = publish.PayloadText().Split(':');
                var from = int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
                Assert.Equal(next[from], int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
                next[from]++;
                await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, publish.PacketId));
            }

            await Task.WhenAll(sends);
            Assert.All(next, n => Assert.Equal(MessagesEach, n));
            Assert.Equal(0, host.Broker.Metrics.Dropped);
            Assert.True(host.Broker.Metrics.PublishersHeldBack > 0);
        }
        finally
        {
            foreach (var publisher in publishers)
            {
                await publisher.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// A subscriber that never reads: the publisher is held back for the configured wait, then goes on; what
    /// overflows the subscriber's queue from then on is dropped and counted, and the publisher is not held again.
    /// </summary>
    [Fact]
    public async Task A_subscriber_that_stops_reading_holds_publishers_back_only_for_the_configured_wait()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(o =>
        {
            o.MaximumQueuedMessages = 4;
            o.MaximumInflightMessages = 2;
            o.FullQueuePublisherWait = TimeSpan.FromSeconds(5);
        }, time);
        await using var subscriber = await PublishTestKit.ConnectRawAsync(host, "stuck", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("stuck/#", QoS.AtLeastOnce);
        await using var publisher = await PublishTestKit.ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        // 2 in flight and 4 queued fill it; the 7th is queued past the limit and its PUBACK is held.
        for (ushort id = 1; id <= 6; id++)
        {
            await publisher.SendAsync(PublishTestKit.Publish("stuck/a", "m" + id, QoS.AtLeastOnce, id));
            await publisher.ExpectAckAsync(PacketType.PubAck, id);
        }

        await publisher.SendAsync(PublishTestKit.Publish("stuck/a", "m7", QoS.AtLeastOnce, 7));
        await BrokerState.WaitUntilAsync(() => host.Broker.Metrics.PublishersHeldBack == 1, "the publisher is held back");
        Assert.Equal(5, host.Broker.FindSession("", "stuck")!.QueuedCount);

        time.Advance(TimeSpan.FromSeconds(5));
        await publisher.ExpectAckAsync(PacketType.PubAck, 7);

        // Stalled: the next one is dropped at once, and the publisher is not held again.
        await publisher.SendAsync(PublishTestKit.Publish("stuck/a", "m8", QoS.AtLeastOnce, 8));
        await publisher.ExpectAckAsync(PacketType.PubAck, 8);
        Assert.Equal(1, host.Broker.Metrics.PublishersHeldBack);
        Assert.Equal(1, host.Broker.Metrics.Dropped);
        Assert.Equal(5, host.Broker.FindSession("", "stuck")!.QueuedCount);

        // Once the subscriber reads and its queue has room again, publishers are held for it again, not dropped.
        for (var i = 0; i < 2; i++)
        {
            var publish = await subscriber.ExpectAsync<PublishPacket>();
            await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, publish.PacketId));
        }

        await BrokerState.WaitUntilAsync(() => host.Broker.FindSession("", "stuck")!.QueuedCount == 3, "two queued messages move into flight");
        await publisher.SendAsync(PublishTestKit.Publish("stuck/a", "m9", QoS.AtLeastOnce, 9));
        await publisher.ExpectAckAsync(PacketType.PubAck, 9);
        Assert.Equal(1, host.Broker.Metrics.Dropped);
    }

    /// <summary>The byte limit (Mosquitto's max_queued_bytes) fills a queue as the message limit does, and its drops are counted apart.</summary>
    [Fact]
    public async Task A_queue_is_limited_in_bytes_too()
    {
        await using var host = await BrokerHost.StartAsync(o =>
        {
            o.MaximumQueuedMessages = 1000;
            o.MaximumQueuedBytes = 1000;
            o.FullQueuePublisherWait = TimeSpan.Zero;
        });
        var first = await PublishTestKit.ConnectRawAsync(host, "offline", ProtocolVersion.V500, new MqttProperties { SessionExpiryInterval = 600 }, cleanStart: false);
        await first.SubscribeAsync("b/#", QoS.AtLeastOnce);
        await first.SendAsync(new DisconnectPacket());
        await first.DisposeAsync();
        await host.WaitUntilDetachedAsync("offline");

        await using var publisher = await PublishTestKit.ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        var payload = new string('x', 297); // 300 bytes with the topic "b/1"
        for (ushort id = 1; id <= 5; id++)
        {
            await publisher.SendAsync(PublishTestKit.Publish("b/1", payload, QoS.AtLeastOnce, id));
            await publisher.ExpectAckAsync(PacketType.PubAck, id);
        }

        Assert.Equal(3, host.Broker.FindSession("", "offline")!.QueuedCount);
        Assert.Equal(2, host.Broker.Metrics.Dropped);
    }

    private static async Task PublishAllAsync(IMqttClient client, int publisher)
    {
        // Sequential, as a device sends: each waits for its PUBACK, which the broker holds while the queue is full.
        for (var i = 0; i < MessagesEach; i++)
        {
            var message = new MqttApplicationMessageBuilder()
                .WithTopic($"slow/{publisher}")
                .WithPayload(Encoding.UTF8.GetBytes($"{publisher}:{i}"))
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .Build();
            await client.PublishAsync(message);
        }
    }
}
