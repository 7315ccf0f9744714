using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// Per-connection publish rate limits (messages and payload bytes per second), token buckets on the broker's
/// clock: the clock here is fake and never moves unless the test moves it, so a burst is exactly the bucket.
/// Going over ends the connection: 5.0 with DISCONNECT 0x96 and a reason string that names the limit, 3.1.1 by
/// closing. The authenticator's identity overrides the broker's default either way.
/// </summary>
public class PublishRateLimitTests
{
    private static Task<BrokerHost> StartAsync(Action<BrokerOptions> configure, FakeTimeProvider time, Action<IServiceCollection>? services = null) =>
        BrokerHost.StartAsync(configure, time, services);

    private static async Task PublishAcknowledgedAsync(RawClient client, ushort packetId, int payloadBytes = 1)
    {
        await client.SendAsync(new PublishPacket { Topic = "t", Payload = new byte[payloadBytes], QoS = QoS.AtLeastOnce, PacketId = packetId });
        await client.ExpectAckAsync(PacketType.PubAck, packetId);
    }

    private static async Task<DisconnectPacket> PublishRefusedAsync(RawClient client, ushort packetId, int payloadBytes = 1)
    {
        await client.SendAsync(new PublishPacket { Topic = "t", Payload = new byte[payloadBytes], QoS = QoS.AtLeastOnce, PacketId = packetId });
        var packets = await client.ReceiveUntilClosedAsync();
        return Assert.IsType<DisconnectPacket>(Assert.Single(packets));
    }

    [Fact]
    public async Task Going_over_the_message_rate_gets_0x96_with_a_reason_string_naming_the_limit()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o => o.MaximumPublishRatePerConnection = 5, time);
        using var limited = new TaggedCounter(host, "taihu.mqtt.connections.rate_limited", "limit", "messages");
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "fast");
        for (ushort id = 1; id <= 5; id++)
        {
            await PublishAcknowledgedAsync(client, id);
        }

        var disconnect = await PublishRefusedAsync(client, 6);
        Assert.Equal(ReasonCode.MessageRateTooHigh, disconnect.ReasonCode);
        Assert.Equal("publish rate limit of 5 messages per second exceeded", disconnect.Properties?.ReasonString);
        Assert.Equal(1, limited.Count);
    }

    [Fact]
    public async Task Going_over_the_message_rate_closes_a_3_1_1_client_without_a_packet()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o => o.MaximumPublishRatePerConnection = 3, time);
        await using var watcher = await RawSession.ConnectAsync(host, ProtocolVersion.V311, "watcher");
        await watcher.SubscribeAsync("gone", QoS.AtMostOnce);
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V311, "fast", c => c.Will = new WillMessage { Topic = "gone", Payload = "fast"u8.ToArray() });
        for (ushort id = 1; id <= 3; id++)
        {
            await PublishAcknowledgedAsync(client, id);
        }

        await client.SendAsync(new PublishPacket { Topic = "t", Payload = new byte[1], QoS = QoS.AtLeastOnce, PacketId = 4 });
        Assert.Empty(await client.ReceiveUntilClosedAsync());

        // Ended by the broker, not by the client: the will goes out.
        var (will, payload) = await watcher.ExpectPublishAsync();
        Assert.Equal(("gone", "fast"), (will.Topic, payload));
    }

    [Theory]
    [InlineData(ProtocolVersion.V311)]
    [InlineData(ProtocolVersion.V500)]
    public async Task Publishing_at_the_limit_for_several_seconds_is_never_refused(ProtocolVersion version)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o => o.MaximumPublishRatePerConnection = 4, time);
        await using var client = await RawSession.ConnectAsync(host, version, "steady");
        ushort id = 1;
        for (var second = 0; second < 5; second++)
        {
            for (var i = 0; i < 4; i++)
            {
                await PublishAcknowledgedAsync(client, id++);
            }

            time.Advance(TimeSpan.FromSeconds(1));
        }

        await client.PingAsync();
    }

    [Fact]
    public async Task Half_a_second_refills_half_the_bucket()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o => o.MaximumPublishRatePerConnection = 4, time);
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "refill");
        for (ushort id = 1; id <= 4; id++)
        {
            await PublishAcknowledgedAsync(client, id);
        }

        time.Advance(TimeSpan.FromMilliseconds(500));
        await PublishAcknowledgedAsync(client, 5);
        await PublishAcknowledgedAsync(client, 6);
        Assert.Equal(ReasonCode.MessageRateTooHigh, (await PublishRefusedAsync(client, 7)).ReasonCode);
    }

    [Fact]
    public async Task Going_over_the_byte_rate_gets_0x96_naming_the_byte_limit()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o => o.MaximumPublishBytesRatePerConnection = 1000, time);
        using var limited = new TaggedCounter(host, "taihu.mqtt.connections.rate_limited", "limit", "bytes");
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "bulky");
        await PublishAcknowledgedAsync(client, 1, 400);
        await PublishAcknowledgedAsync(client, 2, 400);
        var disconnect = await PublishRefusedAsync(client, 3, 400);
        Assert.Equal(ReasonCode.MessageRateTooHigh, disconnect.ReasonCode);
        Assert.Equal("publish byte rate limit of 1000 bytes per second exceeded", disconnect.Properties?.ReasonString);
        Assert.Equal(1, limited.Count);
    }

    [Fact]
    public async Task A_payload_larger_than_a_seconds_bytes_passes_from_a_full_bucket_and_leaves_it_in_debt()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o => o.MaximumPublishBytesRatePerConnection = 1000, time);
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "large");
        await PublishAcknowledgedAsync(client, 1, 2500);

        // 1000 - 2500 = -1500; two seconds bring it back to 500, enough for 500 bytes.
        time.Advance(TimeSpan.FromSeconds(2));
        await PublishAcknowledgedAsync(client, 2, 500);
        Assert.Equal(ReasonCode.MessageRateTooHigh, (await PublishRefusedAsync(client, 3, 1)).ReasonCode);
    }

    private sealed class LimitingAuthenticator : IMqttAuthenticator
    {
        public ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken) =>
            ValueTask.FromResult(AuthenticationResult.Success(context.UserName switch
            {
                "limited" => new ClientIdentity("", "limited") { MaximumPublishRate = 2 },
                "unlimited" => new ClientIdentity("", "unlimited") { MaximumPublishRate = 0, MaximumPublishBytesRate = 0 },
                _ => ClientIdentity.Anonymous,
            }));
    }

    [Fact]
    public async Task The_identity_overrides_the_brokers_limits()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(o =>
        {
            o.MaximumPublishRatePerConnection = 3;
            o.MaximumPublishBytesRatePerConnection = 10;
        }, time, s => s.AddSingleton<IMqttAuthenticator, LimitingAuthenticator>());

        await using (var unlimited = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "u", c => c.UserName = "unlimited"))
        {
            for (ushort id = 1; id <= 20; id++)
            {
                await PublishAcknowledgedAsync(unlimited, id, 100);
            }
        }

        await using (var limited = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "l", c => c.UserName = "limited"))
        {
            // The identity's message limit of 2 replaces the broker's 3; its byte limit is the broker's 10.
            await PublishAcknowledgedAsync(limited, 1, 5);
            await PublishAcknowledgedAsync(limited, 2, 5);
            Assert.Equal("publish rate limit of 2 messages per second exceeded", (await PublishRefusedAsync(limited, 3, 0)).Properties?.ReasonString);
        }

        await using var byDefault = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "d");
        await PublishAcknowledgedAsync(byDefault, 1, 10);
        Assert.Equal("publish byte rate limit of 10 bytes per second exceeded", (await PublishRefusedAsync(byDefault, 2, 1)).Properties?.ReasonString);
    }

    [Fact]
    public async Task Without_limits_a_burst_is_never_refused()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await StartAsync(_ => { }, time);
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "burst");
        for (ushort id = 1; id <= 200; id++)
        {
            await PublishAcknowledgedAsync(client, id, 1000);
        }
    }
}
