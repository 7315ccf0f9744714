using System.Buffers.Binary;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// <see cref="BrokerOptions.MaximumOutboundQueue"/> bounds acknowledgements too. A client that subscribes to a
/// flood and publishes QoS 1 without reading: its socket and its outbound queue fill with the flood (QoS 0, the
/// excess dropped), and its PUBACKs join the queue. The broker then stops reading from it (TCP pushes back on the
/// client) instead of queueing acknowledgements without end, and drops none of them: once the client reads, every
/// PUBACK arrives, in order.
/// </summary>
public sealed class OutboundBackPressureTests
{
    private const int Limit = 16;
    private const int Publishes = 2000;

    [Fact]
    public async Task A_client_that_does_not_read_is_paused_and_loses_no_acknowledgement()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumOutboundQueue = Limit);
        await using var deaf = await ConnectRawAsync(host, "deaf", ProtocolVersion.V311);
        await deaf.SubscribeAsync("flood", QoS.AtMostOnce);
        await using var flooder = await ConnectRawAsync(host, "flooder", ProtocolVersion.V311);

        // 1 KB QoS 0 messages, 64 to a write, until the deaf client's socket and queue are full and the flood is dropped.
        var one = PacketWriter.ToArray(Publish("flood", new string('x', 1024)), ProtocolVersion.V311);
        var batch = new byte[one.Length * 64];
        for (var i = 0; i < 64; i++)
        {
            one.CopyTo(batch, i * one.Length);
        }

        // The flood goes on meanwhile, so that the broker's sender for the deaf client stays stuck on its full
        // socket and the PUBACKs below queue behind it.
        using var stop = new CancellationTokenSource();
        var flooding = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await flooder.SendAsync(batch);
                await flooder.PingAsync();
            }
        });
        await BrokerState.WaitUntilAsync(() => host.Broker.Metrics.Dropped > 0, "the flood fills the deaf client's queue");

        // PUBLISH QoS 1 to "a" with no payload: 32 03 00 01 'a' id id; 3.1.1 answers 40 02 id id.
        var publishes = new byte[7 * Publishes];
        for (var i = 0; i < Publishes; i++)
        {
            var span = publishes.AsSpan(i * 7, 7);
            span[0] = 0x32;
            span[1] = 5;
            span[2] = 0;
            span[3] = 1;
            span[4] = (byte)'a';
            BinaryPrimitives.WriteUInt16BigEndian(span[5..], (ushort)(i + 1));
        }

        var sending = deaf.SendAsync(publishes);
        var channel = host.Broker.FindChannel("", "deaf")!;
        await BrokerState.WaitUntilAsync(() => host.Broker.Metrics.ReadingPausedCount > 0 || channel.OutboundHighWater > Limit + 1, "the broker stops reading from the client");
        await stop.CancelAsync();
        await flooding;
        Assert.InRange(channel.OutboundHighWater, Limit, Limit + 1);

        // Reading now, the client gets every acknowledgement, in order, among what is left of the flood.
        var expected = 1;
        while (expected <= Publishes)
        {
            var packet = await deaf.ReceiveAsync();
            Assert.NotNull(packet);
            if (packet is PublishAckPacket ack)
            {
                Assert.Equal(PacketType.PubAck, ack.Type);
                Assert.Equal(expected, ack.PacketId);
                expected++;
            }
        }

        await sending;
        Assert.InRange(channel.OutboundHighWater, Limit, Limit + 1);
        Assert.True(host.Broker.Metrics.ReadingPausedCount > 0);
    }
}
