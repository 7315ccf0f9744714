using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// The first packet is judged from its fixed header, before its body is buffered: anything but CONNECT, a CONNECT
/// announcing more than Broker:MaximumConnectPacketSize, or a remaining length that can only end malformed or too
/// large closes the connection at once with nothing sent. Each frame stops where a broker that waited for the
/// body would wait; the broker runs on a fake clock that never moves, so its CONNECT timeout cannot close the
/// socket instead (RawClient gives up after 10 s, which fails the test).
/// </summary>
public class FirstPacketTests
{
    public static TheoryData<string, string, string> Frames => new()
    {
        { "PUBLISH first byte alone", "30", "first_packet_not_connect" },
        { "PUBLISH announcing 512 KiB, then nothing", "30 80 80 20", "first_packet_not_connect" },
        { "SUBSCRIBE first byte alone", "82", "first_packet_not_connect" },
        { "PINGREQ first byte alone", "C0", "first_packet_not_connect" },
        { "CONNECT announcing 64 KiB, then nothing", "10 80 80 04", "connect_too_large" },
        { "CONNECT announcing 1 MiB minus 5, then nothing", "10 FB FF 3F", "connect_too_large" },
        { "CONNECT remaining length cut short after three continuation bytes", "10 FF FF FF", "connect_too_large" },
    };

    [Theory]
    [MemberData(nameof(Frames))]
    public async Task First_packet_is_judged_from_its_fixed_header_and_closed_at_once(string name, string hex, string reason)
    {
        await using var host = await BrokerHost.StartAsync(time: new FakeTimeProvider(DateTimeOffset.UtcNow));
        using var refused = new TaggedCounter(host, "taihu.mqtt.connections.refused", "reason", reason);
        await using (var raw = await RawClient.OpenAsync(host))
        {
            await raw.SendHexAsync(hex);
            Assert.True((await raw.ReceiveUntilClosedAsync()).Count == 0, name);
        }

        Assert.Equal(1, refused.Count);
        await AssertStillServesAsync(host);
    }

    [Theory]
    [InlineData(ProtocolVersion.V311)]
    [InlineData(ProtocolVersion.V500)]
    public async Task Connect_within_the_limit_is_accepted_and_one_over_it_is_closed(ProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumConnectPacketSize = 256, new FakeTimeProvider(DateTimeOffset.UtcNow));
        using var refused = new TaggedCounter(host, "taihu.mqtt.connections.refused", "reason", "connect_too_large");
        static ConnectPacket WithWill(ProtocolVersion version, int payload) => new()
        {
            ProtocolVersion = version,
            ClientId = "c",
            CleanStart = true,
            Will = new WillMessage { Topic = "w", Payload = new byte[payload] },
        };

        // Find the will payload that makes the CONNECT exactly 256 bytes (its remaining length then takes two bytes).
        var fits = 256 - (PacketWriter.ToArray(WithWill(version, 0), version).Length + 1);
        Assert.Equal(256, PacketWriter.ToArray(WithWill(version, fits), version).Length);

        var (accepted, ack) = await RawClient.ConnectAsync(host, WithWill(version, fits));
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        await accepted.DisposeAsync();

        await using var tooLarge = await RawClient.OpenAsync(host);
        tooLarge.Version = version;
        await tooLarge.SendAsync(WithWill(version, fits + 1));
        Assert.Empty(await tooLarge.ReceiveUntilClosedAsync());
        Assert.Equal(1, refused.Count);
    }

    [Fact]
    public async Task Large_publish_after_connect_still_follows_maximum_packet_size()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "big");
        await client.Client.SubscribeAsync("big");
        await client.Client.PublishBinaryAsync("big", new byte[100_000]);
        Assert.Equal(100_000, (await client.NextAsync()).ApplicationMessage.Payload.Length);
    }

    private static async Task AssertStillServesAsync(BrokerHost host)
    {
        await using var raw = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "after");
        await raw.SendAsync(PingReqPacket.Instance);
        Assert.IsType<PingRespPacket>(await raw.ReceiveAsync());
    }
}
