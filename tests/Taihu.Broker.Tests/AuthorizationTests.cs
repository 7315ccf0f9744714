using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Formatter;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// Authorization of publish and subscribe (<see cref="IMqttAuthorizer"/>), and the built-in refusal of client
/// publishes to $SYS. The authorizer here refuses publishing under deny/ and subscribing under secret/. "Not
/// routed" is shown by a sentinel from the same publisher arriving first at a subscriber that would match both.
/// </summary>
public class AuthorizationTests
{
    private sealed class DenyingAuthorizer : IMqttAuthorizer
    {
        public ValueTask<ReasonCode> AuthorizePublishAsync(ClientIdentity identity, string clientId, string topic, CancellationToken cancellationToken) =>
            ValueTask.FromResult(topic.StartsWith("deny/", StringComparison.Ordinal) ? ReasonCode.NotAuthorized : ReasonCode.Success);

        public ValueTask<ReasonCode> AuthorizeSubscribeAsync(ClientIdentity identity, string clientId, string filter, CancellationToken cancellationToken) =>
            ValueTask.FromResult(filter.StartsWith("secret/", StringComparison.Ordinal) ? ReasonCode.NotAuthorized : ReasonCode.Success);
    }

    private static Task<BrokerHost> StartAsync() =>
        BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttAuthorizer, DenyingAuthorizer>());

    /// <summary>A subscriber to <paramref name="filter"/> and to "sentinel", both at QoS 1.</summary>
    private static async Task<RawClient> SubscriberAsync(BrokerHost host, ProtocolVersion version, string filter)
    {
        var subscriber = await ConnectRawAsync(host, "sub", version);
        Assert.Equal(ReasonCode.GrantedQoS1, Assert.Single((await subscriber.SubscribeAsync(filter, QoS.AtLeastOnce, packetId: 1)).ReasonCodes));
        Assert.Equal(ReasonCode.GrantedQoS1, Assert.Single((await subscriber.SubscribeAsync("sentinel", QoS.AtLeastOnce, packetId: 2)).ReasonCodes));
        return subscriber;
    }

    /// <summary>The publisher sends the sentinel at QoS 1; the subscriber's next message must be it.</summary>
    private static async Task AssertSentinelIsNextAsync(RawClient publisher, RawClient subscriber)
    {
        await publisher.SendAsync(Publish("sentinel", "s", QoS.AtLeastOnce, packetId: 99));
        await publisher.ExpectAckAsync(PacketType.PubAck, 99);
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal(("sentinel", "s"), (packet.Topic, payload));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.Success)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.NotAuthorized)]
    public async Task Refused_qos1_publish_is_acknowledged_with_the_authorizers_code_and_not_routed(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await StartAsync();
        await using var subscriber = await SubscriberAsync(host, version.ToOurs(), "deny/#");
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("deny/x", "refused", QoS.AtLeastOnce, packetId: 1));
        var ack = await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        Assert.Equal(expected, ack.ReasonCode);

        await AssertSentinelIsNextAsync(publisher, subscriber);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.Success)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.NotAuthorized)]
    public async Task Refused_qos2_publish_is_acknowledged_with_the_authorizers_code_and_not_routed(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await StartAsync();
        await using var subscriber = await SubscriberAsync(host, version.ToOurs(), "deny/#");
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("deny/x", "refused", QoS.ExactlyOnce, packetId: 1));
        var rec = await publisher.ExpectAckAsync(PacketType.PubRec, 1);
        Assert.Equal(expected, rec.ReasonCode);
        if (version == MqttProtocolVersion.V311)
        {
            // 3.1.1 cannot be told: the exchange completes as usual.
            await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 1));
            await publisher.ExpectAckAsync(PacketType.PubComp, 1);
        }

        await AssertSentinelIsNextAsync(publisher, subscriber);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Refused_qos0_publish_is_dropped_silently(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using var subscriber = await SubscriberAsync(host, version.ToOurs(), "deny/#");
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        var dropped = host.Broker.Metrics.Dropped;

        await publisher.SendAsync(Publish("deny/x", "refused"));
        // Nothing comes back for the refused publish: the PINGRESP is the next packet, and the connection stays.
        await publisher.PingAsync();
        Assert.True(host.Broker.Metrics.Dropped > dropped);

        await AssertSentinelIsNextAsync(publisher, subscriber);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.UnspecifiedError)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.NotAuthorized)]
    public async Task Refused_filter_gets_a_failure_code_while_another_in_the_same_subscribe_is_granted(MqttProtocolVersion version, ReasonCode expected)
    {
        await using var host = await StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        var subscribe = new SubscribePacket { PacketId = 7 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "secret/#", MaximumQoS = QoS.AtLeastOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "open/#", MaximumQoS = QoS.AtLeastOnce });
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "sentinel", MaximumQoS = QoS.AtLeastOnce });
        await subscriber.SendAsync(subscribe);
        var ack = await subscriber.ExpectAsync<SubAckPacket>();
        Assert.Equal(7, ack.PacketId);
        // 3.1.1 knows only 0x80 for a failure: the broker's 0x87 is written as 0x80, which decodes as UnspecifiedError.
        Assert.Equal([expected, ReasonCode.GrantedQoS1, ReasonCode.GrantedQoS1], ack.ReasonCodes);
        Assert.Equal(2, host.Broker.SubscriptionCount(""));

        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());
        await publisher.SendAsync(Publish("secret/a", "hidden", QoS.AtLeastOnce, packetId: 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("open/a", "visible", QoS.AtLeastOnce, packetId: 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);

        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal(("open/a", "visible"), (packet.Topic, payload));
        await AssertSentinelIsNextAsync(publisher, subscriber);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, ReasonCode.Success)]
    [InlineData(MqttProtocolVersion.V500, ReasonCode.NotAuthorized)]
    public async Task Client_publish_to_sys_is_refused_and_not_delivered(MqttProtocolVersion version, ReasonCode expected)
    {
        // No authorizer: $SYS is closed to clients by the broker itself. SysInterval is 0, so nothing else arrives on $SYS/#.
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await SubscriberAsync(host, version.ToOurs(), "$SYS/#");
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("$SYS/x", "forged", QoS.AtLeastOnce, packetId: 1));
        Assert.Equal(expected, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);
        await publisher.SendAsync(Publish("$SYS/broker/version", "forged", QoS.AtMostOnce, retain: true));

        await AssertSentinelIsNextAsync(publisher, subscriber);
        Assert.Equal(0, host.Broker.RetainedCount(""));
    }
}
