using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Formatter;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// On a cluster node whose link acknowledges after forwarding (<see cref="IMqttClusterLink.AcknowledgesAfterForward"/>,
/// <c>Cluster:AckAfterForward</c>), a client's QoS 1 or 2 message that another node's subscribers want is
/// acknowledged only once that node has it, and later acknowledgements keep their order behind it. The link here
/// stands for the other nodes: it forwards topics under <c>remote/</c> to one node and holds each receipt until the
/// test says that node has the message. Between real nodes: ClusterMqttTests.
/// </summary>
public class ClusterForwardAckTests
{
    private sealed class HoldingLink(bool acknowledgesAfterForward = true) : IMqttClusterLink
    {
        public Channel<(string Topic, IForwardReceipt Receipt)> Held { get; } = Channel.CreateUnbounded<(string, IForwardReceipt)>();

        public bool AcknowledgesAfterForward => acknowledgesAfterForward;

        public void OnRouteAdded(string ns, string filter)
        {
        }

        public void OnRouteRemoved(string ns, string filter)
        {
        }

        public void OnSharedRouteAdded(string ns, string group, string filter)
        {
        }

        public void OnSharedRouteRemoved(string ns, string group, string filter)
        {
        }

        /// <summary>How many messages the broker offered the link to forward.</summary>
        public int Offered;

        public int Forward(BrokerMessage message)
        {
            Interlocked.Increment(ref Offered);
            return message.Topic.StartsWith("remote/", StringComparison.Ordinal) ? 1 : 0;
        }

        public int Forward(BrokerMessage message, IForwardReceipt receipt)
        {
            if (Forward(message) == 0)
            {
                return 0;
            }

            Held.Writer.TryWrite((message.Topic, receipt));
            return 1;
        }

        public ValueTask<ClaimedSession> ClaimSessionAsync(string ns, string owner, string clientId, CancellationToken cancellationToken) =>
            ValueTask.FromResult(new ClaimedSession(Known: true, Session: null));

        public async Task<(string Topic, IForwardReceipt Receipt)> NextHeldAsync() => await Held.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    private static Task<BrokerHost> StartAsync(HoldingLink link) =>
        BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttClusterLink>(link));

    [Theory]
    [InlineData(MqttProtocolVersion.V500)]
    [InlineData(MqttProtocolVersion.V311)]
    public async Task QoS1_ForwardedToAnotherNode_IsAcknowledgedWhenThatNodeHasIt_AndLaterAcknowledgementsWaitInOrder(MqttProtocolVersion version)
    {
        var link = new HoldingLink();
        await using var host = await StartAsync(link);
        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("publisher", version));
        await using var c = client;

        await client.SendAsync(RawPackets.Publish("remote/meter/1", "42", QoS.AtLeastOnce, 1));
        await client.SendAsync(RawPackets.Publish("local/nobody", "43", QoS.AtLeastOnce, 2));
        await client.SendAsync(PingReqPacket.Instance);

        // Both read and routed (the ping is answered after them), neither acknowledged: the first waits for the node.
        var (topic, receipt) = await link.NextHeldAsync();
        Assert.Equal("remote/meter/1", topic);
        Assert.IsType<PingRespPacket>(await client.ReceiveAsync());

        // The node has it: both acknowledgements, in order.
        receipt.OnForwarded();
        var first = Assert.IsType<PublishAckPacket>(await client.ReceiveAsync());
        Assert.Equal((PacketType.PubAck, (ushort)1, ReasonCode.Success), (first.Type, first.PacketId, first.ReasonCode));
        var second = Assert.IsType<PublishAckPacket>(await client.ReceiveAsync());
        var none = version == MqttProtocolVersion.V500 ? ReasonCode.NoMatchingSubscribers : ReasonCode.Success;
        Assert.Equal((PacketType.PubAck, (ushort)2, none), (second.Type, second.PacketId, second.ReasonCode));
    }

    [Fact]
    public async Task QoS2_ForwardedToAnotherNode_GetsItsPubRecWhenThatNodeHasIt()
    {
        var link = new HoldingLink();
        await using var host = await StartAsync(link);
        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("publisher", MqttProtocolVersion.V500));
        await using var c = client;

        await client.SendAsync(RawPackets.Publish("remote/valve/1", "open", QoS.ExactlyOnce, 7));
        await client.SendAsync(PingReqPacket.Instance);
        var (_, receipt) = await link.NextHeldAsync();

        // The PUBREC, then the ping's answer: the connection read nothing more until the node had it.
        receipt.OnForwarded();
        var pubRec = Assert.IsType<PublishAckPacket>(await client.ReceiveAsync());
        Assert.Equal((PacketType.PubRec, (ushort)7), (pubRec.Type, pubRec.PacketId));
        Assert.IsType<PingRespPacket>(await client.ReceiveAsync());
        await client.SendAsync(new PublishAckPacket(PacketType.PubRel, 7));
        var pubComp = Assert.IsType<PublishAckPacket>(await client.ReceiveAsync());
        Assert.Equal((PacketType.PubComp, (ushort)7, ReasonCode.Success), (pubComp.Type, pubComp.PacketId, pubComp.ReasonCode));
    }

    [Fact]
    public async Task WithAcknowledgementAtRouting_TheLinkIsNotAsked_ToTellWhenTheNodeHasIt()
    {
        var link = new HoldingLink(acknowledgesAfterForward: false);
        await using var host = await StartAsync(link);
        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("publisher", MqttProtocolVersion.V500));
        await using var c = client;

        await client.SendAsync(RawPackets.Publish("remote/meter/2", "1", QoS.AtLeastOnce, 3));
        var ack = Assert.IsType<PublishAckPacket>(await client.ReceiveAsync());
        Assert.Equal((PacketType.PubAck, (ushort)3, ReasonCode.Success), (ack.Type, ack.PacketId, ack.ReasonCode));
        Assert.False(link.Held.Reader.TryRead(out _));
    }

    [Fact]
    public async Task PublishHere_ReachesThisNodesSubscribersOnly_IsNeverOfferedToTheLink_AndNeverRetained()
    {
        var link = new HoldingLink(acknowledgesAfterForward: false);
        await using var host = await StartAsync(link);
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        static PublishPacket Command(string topic) => new() { Topic = topic, Payload = Encoding.UTF8.GetBytes("reboot"), QoS = QoS.AtLeastOnce, Retain = true };

        // Another node has a subscriber for remote/: a publish counts it; a command for this node's devices does not.
        Assert.Equal(1, publisher.Publish("", Command("remote/device/1"), null));
        Assert.Equal(1, link.Offered);
        Assert.Equal(0, publisher.PublishHere("", Command("remote/device/1"), null));
        Assert.Equal(1, link.Offered);

        // A subscriber here gets it, as sent, but not as retained; nothing is kept for a later subscriber.
        await using var device = await ConnectRawAsync(host, "device", ProtocolVersion.V500);
        await device.SubscribeAsync("local/device/2/#", QoS.AtLeastOnce);
        Assert.Equal(1, publisher.PublishHere("", Command("local/device/2/rpc"), null));
        var (packet, payload) = await device.ExpectPublishAsync();
        Assert.Equal(("local/device/2/rpc", "reboot", false), (packet.Topic, payload, packet.Retain));
        Assert.Equal(1, link.Offered);
        Assert.Equal(1, host.Broker.RetainedCount(""));
    }
}
