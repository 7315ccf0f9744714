using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// <see cref="BrokerOptions.MaximumOutboundQueue"/>: a QoS 0 subscriber that stops reading fills its socket, then
/// its outbound queue; further QoS 0 deliveries to it are dropped and counted instead of piling up in memory. The
/// subscriber is a <see cref="RawClient"/> that does not read while 50 MB are published to it.
/// </summary>
public class OutboundQueueTests
{
    private const int Messages = 50_000;
    private const int PerWrite = 64;

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Qos0_deliveries_to_a_stalled_subscriber_are_dropped_and_the_broker_keeps_serving(MqttProtocolVersion version)
    {
        var level = version.ToOurs();
        await using var host = await BrokerHost.StartAsync(o => o.MaximumOutboundQueue = 16);
        await using var stalled = await ConnectRawAsync(host, "stalled", level);
        await stalled.SubscribeAsync("flood", QoS.AtMostOnce, packetId: 1);
        await stalled.SubscribeAsync("sentinel", QoS.AtLeastOnce, packetId: 2);
        await using var publisher = await ConnectRawAsync(host, "pub", level);

        // 50,000 identical QoS 0 PUBLISH packets of 1 KB, written 64 to a write.
        var one = PacketWriter.ToArray(Publish("flood", new string('x', 1024)), level);
        var batch = new byte[one.Length * PerWrite];
        for (var i = 0; i < PerWrite; i++)
        {
            one.CopyTo(batch, i * one.Length);
        }

        for (var sent = 0; sent < Messages; sent += PerWrite)
        {
            var count = Math.Min(PerWrite, Messages - sent);
            await publisher.SendAsync(count == PerWrite ? batch : batch[..(count * one.Length)]);
        }

        await BrokerState.WaitUntilAsync(() => host.Broker.Metrics.Dropped > 0, "messages for the stalled subscriber are dropped");

        // Other clients are served while the stalled one is still not reading.
        await publisher.PingAsync();
        await using (var fresh = await ConnectRawAsync(host, "fresh", level))
        {
            await fresh.SubscribeAsync("fresh/t", QoS.AtLeastOnce);
            await fresh.SendAsync(Publish("fresh/t", "works", QoS.AtLeastOnce, packetId: 1));
            var (packet, payload) = await fresh.ExpectPublishAsync();
            Assert.Equal(("fresh/t", "works"), (packet.Topic, payload));
            await fresh.ExpectAckAsync(PacketType.PubAck, 1);
        }

        // The sentinel follows the flood on the same connection, so every flood message was routed before it:
        // each one was either delivered or dropped, and only the stalled subscriber's queue drops anything here.
        await publisher.SendAsync(Publish("sentinel", "end", QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        var delivered = 0;
        while (true)
        {
            var (packet, _) = await stalled.ExpectPublishAsync();
            if (packet.Topic == "sentinel")
            {
                break;
            }

            delivered++;
        }

        var dropped = host.Broker.Metrics.Dropped;
        Assert.True(dropped > 0);
        Assert.True(delivered < Messages);
        Assert.Equal(Messages, delivered + dropped);
        await stalled.PingAsync();
    }
}
