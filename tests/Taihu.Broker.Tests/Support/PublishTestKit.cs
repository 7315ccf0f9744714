using System.Text;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests.Support;

/// <summary>
/// Short-hands for the publish-flow tests: connect a <see cref="RawClient"/> with the properties a test needs,
/// subscribe, build PUBLISH packets, and read the next packet as the type the test expects.
/// </summary>
internal static class PublishTestKit
{
    public static ProtocolVersion ToOurs(this MQTTnet.Formatter.MqttProtocolVersion version) =>
        version == MQTTnet.Formatter.MqttProtocolVersion.V500 ? ProtocolVersion.V500 : ProtocolVersion.V311;

    /// <summary>Connects a raw client and asserts the CONNACK is a success.</summary>
    public static async Task<RawClient> ConnectRawAsync(BrokerHost host, string clientId, ProtocolVersion version, MqttProperties? properties = null, bool cleanStart = true)
    {
        var (client, ack) = await RawClient.ConnectAsync(host, new ConnectPacket
        {
            ProtocolVersion = version,
            ClientId = clientId,
            CleanStart = cleanStart,
            Properties = version == ProtocolVersion.V500 ? properties : null,
        });
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        return client;
    }

    /// <summary>Subscribes and waits for the SUBACK; returns it.</summary>
    public static async Task<SubAckPacket> SubscribeAsync(this RawClient client, string filter, QoS qos, ushort packetId = 1, RetainHandling retainHandling = RetainHandling.SendAtSubscribe, bool retainAsPublished = false)
    {
        var subscribe = new SubscribePacket { PacketId = packetId };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = filter, MaximumQoS = qos, RetainHandling = retainHandling, RetainAsPublished = retainAsPublished });
        await client.SendAsync(subscribe);
        var ack = await client.ExpectAsync<SubAckPacket>();
        Assert.Equal(packetId, ack.PacketId);
        return ack;
    }

    public static PublishPacket Publish(string topic, string payload, QoS qos = QoS.AtMostOnce, ushort packetId = 0, bool retain = false, MqttProperties? properties = null) => new()
    {
        Topic = topic,
        Payload = Encoding.UTF8.GetBytes(payload),
        QoS = qos,
        PacketId = packetId,
        Retain = retain,
        Properties = properties,
    };

    /// <summary>The next packet, which must be a <typeparamref name="T"/>.</summary>
    public static async Task<T> ExpectAsync<T>(this RawClient client)
        where T : MqttPacket
    {
        var packet = await client.ReceiveAsync();
        Assert.NotNull(packet);
        return Assert.IsType<T>(packet);
    }

    /// <summary>The next packet, which must be the acknowledgement <paramref name="type"/>.</summary>
    public static async Task<PublishAckPacket> ExpectAckAsync(this RawClient client, PacketType type, ushort packetId)
    {
        var ack = await client.ExpectAsync<PublishAckPacket>();
        Assert.Equal(type, ack.Type);
        Assert.Equal(packetId, ack.PacketId);
        return ack;
    }

    /// <summary>The next packet, which must be a PUBLISH; returns it with its payload as text.</summary>
    public static async Task<(PublishPacket Packet, string Payload)> ExpectPublishAsync(this RawClient client)
    {
        var publish = await client.ExpectAsync<PublishPacket>();
        return (publish, Encoding.UTF8.GetString(publish.Payload.Span));
    }

    /// <summary>Sends PINGREQ and expects PINGRESP next: everything the broker had queued before it has been read.</summary>
    public static async Task PingAsync(this RawClient client)
    {
        await client.SendAsync(PingReqPacket.Instance);
        await client.ExpectAsync<PingRespPacket>();
    }
}
