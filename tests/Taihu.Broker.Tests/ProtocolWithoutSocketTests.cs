using System.Text;
using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.RawPackets;

namespace Taihu.Broker.Tests;

/// <summary>
/// The protocol state machine driven directly, without sockets or Kestrel: packets in, packets out, with a real
/// broker behind the channels and fake time. What the socket tests show end to end, shown here step by step.
/// </summary>
public sealed class ProtocolWithoutSocketTests : IDisposable
{
    private readonly FakeTimeProvider _time = new();
    private readonly BrokerMetrics _metrics = new();
    private readonly MqttBroker _broker;

    public ProtocolWithoutSocketTests()
    {
        _broker = new MqttBroker(new BrokerOptions { SysInterval = 0, MaximumInflightMessages = 2, MaximumQueuedMessages = 2 }, _time, _metrics);
    }

    public void Dispose() => _metrics.Dispose();

    [Theory]
    [InlineData(ProtocolVersion.V311)]
    [InlineData(ProtocolVersion.V500)]
    public async Task Connect_is_answered_with_connack(ProtocolVersion version)
    {
        var client = new SocketlessConnection(_broker);
        var ack = await client.ConnectAsync("c1", version);
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.False(ack.SessionPresent);
        Assert.True(client.Channel.IsConnected);
        if (version == ProtocolVersion.V500)
        {
            Assert.Equal((ushort)2, ack.Properties?.ReceiveMaximum);
        }
    }

    [Fact]
    public async Task A_packet_before_connect_closes_the_connection_with_nothing_sent()
    {
        var client = new SocketlessConnection(_broker);
        Assert.False(await client.HandleAsync(new PingReqPacket()));
        Assert.Empty(client.TakeSent());
        Assert.True(client.StoppedReceiving);
        Assert.True(client.Channel.IsClosing);
    }

    [Fact]
    public async Task A_second_connect_is_a_protocol_error()
    {
        var client = new SocketlessConnection(_broker);
        await client.ConnectAsync("c1", ProtocolVersion.V500);
        Assert.False(await client.HandleAsync(new ConnectPacket { ProtocolVersion = ProtocolVersion.V500, ClientId = "c1" }));
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(client.TakeSent()));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
    }

    [Fact]
    public async Task A_QoS_1_publish_is_acknowledged_and_delivered_within_the_inflight_window()
    {
        var subscriber = new SocketlessConnection(_broker, 50_001);
        await subscriber.ConnectAsync("sub", ProtocolVersion.V500);
        Assert.True(await subscriber.HandleAsync(Subscribe(1, "t/#", QoS.AtLeastOnce)));
        Assert.IsType<SubAckPacket>(Assert.Single(subscriber.TakeSent()));

        var publisher = new SocketlessConnection(_broker, 50_002);
        await publisher.ConnectAsync("pub", ProtocolVersion.V311);
        for (ushort id = 1; id <= 3; id++)
        {
            Assert.True(await publisher.HandleAsync(Publish("t/1", "m" + id, QoS.AtLeastOnce, id)));
            var ack = Assert.IsType<PublishAckPacket>(Assert.Single(publisher.TakeSent()));
            Assert.Equal((PacketType.PubAck, id), (ack.Type, ack.PacketId));
        }

        // Receive Maximum 2 (ours): two go out, the third waits in the session queue until one is acknowledged.
        var first = subscriber.TakeSent().Cast<PublishPacket>().ToList();
        Assert.Equal(["m1", "m2"], first.Select(p => Encoding.UTF8.GetString(p.Payload.Span)));
        Assert.Equal(1, _broker.FindSession("", "sub")!.QueuedCount);

        Assert.True(await subscriber.HandleAsync(new PublishAckPacket(PacketType.PubAck, first[0].PacketId)));
        var third = Assert.IsType<PublishPacket>(Assert.Single(subscriber.TakeSent()));
        Assert.Equal("m3", Encoding.UTF8.GetString(third.Payload.Span));
        Assert.Equal(0, _broker.FindSession("", "sub")!.QueuedCount);
    }

    /// <summary>
    /// Back-pressure at the level of the state machine: with the subscriber's queue full, the publisher's PUBLISH
    /// is not finished (its handling is still pending, so its connection reads nothing more) and it has no PUBACK
    /// yet; the subscriber's acknowledgement makes room, and then the publisher is acknowledged.
    /// </summary>
    [Fact]
    public async Task A_publish_into_a_full_queue_waits_until_the_subscriber_makes_room()
    {
        var subscriber = new SocketlessConnection(_broker, 50_001);
        await subscriber.ConnectAsync("sub", ProtocolVersion.V500);
        Assert.True(await subscriber.HandleAsync(Subscribe(1, "t/#", QoS.AtLeastOnce)));
        subscriber.TakeSent();

        var publisher = new SocketlessConnection(_broker, 50_002);
        await publisher.ConnectAsync("pub", ProtocolVersion.V500);

        // 2 in flight and 2 queued fill the subscriber; the 5th is queued past the limit and waits.
        for (ushort id = 1; id <= 4; id++)
        {
            Assert.True(await publisher.HandleAsync(Publish("t/1", "m" + id, QoS.AtLeastOnce, id)));
        }

        Assert.Equal(4, publisher.TakeSent().Count);
        var pending = publisher.HandleAsync(Publish("t/1", "m5", QoS.AtLeastOnce, 5));
        Assert.False(pending.IsCompleted);
        Assert.Empty(publisher.TakeSent());
        Assert.Equal(3, _broker.FindSession("", "sub")!.QueuedCount);

        // The subscriber acknowledges both in flight: two queued move into flight, the queue is back under its limit.
        var inflight = subscriber.TakeSent().Cast<PublishPacket>().ToList();
        Assert.Equal(2, inflight.Count);
        foreach (var publish in inflight)
        {
            Assert.True(await subscriber.HandleAsync(new PublishAckPacket(PacketType.PubAck, publish.PacketId)));
        }

        Assert.True(await pending);
        var ack = Assert.IsType<PublishAckPacket>(Assert.Single(publisher.TakeSent()));
        Assert.Equal((ushort)5, ack.PacketId);
        Assert.Equal(0, _metrics.Dropped);
    }
}
