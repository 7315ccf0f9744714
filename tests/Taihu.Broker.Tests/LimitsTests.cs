using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

public class LimitsTests
{
    private static Task<BrokerHost> StartAsync() => BrokerHost.StartAsync(o =>
    {
        o.MaximumTopicLength = 16;
        o.MaximumTopicLevels = 3;
    });

    [Theory]
    [InlineData("0123456789abcdef", true)]
    [InlineData("0123456789abcdefg", false)]
    [InlineData("a/b/c", true)]
    [InlineData("a/b/c/d", false)]
    [InlineData("é/0123456789abcd", false)] // 16 characters, 17 UTF-8 bytes.
    public async Task Topic_limits_apply_to_publish(string topic, bool accepted)
    {
        await using var host = await StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "raw");
        var subscribe = new SubscribePacket { PacketId = 1 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "#" });
        await raw.SendAsync(subscribe);
        await raw.ExpectAsync<SubAckPacket>();

        await raw.SendAsync(new PublishPacket { Topic = topic, Payload = "x"u8.ToArray() });
        if (accepted)
        {
            Assert.Equal(topic, (await raw.ExpectAsync<PublishPacket>()).Topic);
            return;
        }

        var packets = await raw.ReceiveUntilClosedAsync();
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
        Assert.Equal(ReasonCode.TopicNameInvalid, disconnect.ReasonCode);
    }

    [Fact]
    public async Task Topic_limits_close_a_3_1_1_publisher_without_a_packet()
    {
        await using var host = await StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V311, "raw");
        await raw.SendAsync(new PublishPacket { Topic = "a/b/c/d", Payload = "x"u8.ToArray() });
        Assert.Empty(await raw.ReceiveUntilClosedAsync());
    }

    [Theory]
    [InlineData(ProtocolVersion.V311, ReasonCode.UnspecifiedError)]
    [InlineData(ProtocolVersion.V500, ReasonCode.TopicFilterInvalid)]
    public async Task Topic_limits_apply_to_subscribe(ProtocolVersion version, ReasonCode refused)
    {
        await using var host = await StartAsync();
        await using var raw = await RawSession.ConnectAsync(host, version, "raw");
        var subscribe = new SubscribePacket { PacketId = 1 };
        foreach (var filter in new[] { "0123456789abcdef", "0123456789abcdefg", "a/+/#", "a/b/c/#", "$share/g/a/b/c", "$share/g/a/b/c/d" })
        {
            subscribe.Subscriptions.Add(new TopicSubscription { Filter = filter });
        }

        await raw.SendAsync(subscribe);
        var ack = await raw.ExpectAsync<SubAckPacket>();
        Assert.Equal([ReasonCode.GrantedQoS0, refused, ReasonCode.GrantedQoS0, refused, ReasonCode.GrantedQoS0, refused], ack.ReasonCodes);

        // Still connected and serving.
        await raw.SendAsync(new PublishPacket { Topic = "a/b/c", Payload = "x"u8.ToArray() });
        Assert.Equal("a/b/c", (await raw.ExpectAsync<PublishPacket>()).Topic);
    }
}
