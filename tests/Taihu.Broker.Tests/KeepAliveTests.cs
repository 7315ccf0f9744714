using Microsoft.Extensions.Time.Testing;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// Keep alive (3.1.1 section 3.1.2.10, 5.0 section 3.1.2.10): a client silent for one and a half times its keep
/// alive is disconnected. Time moves only through a <see cref="FakeTimeProvider"/>; the raw client never pings by itself.
/// </summary>
public class KeepAliveTests
{
    private static async Task AssertAliveAsync(RawClient client)
    {
        await client.SendAsync(PingReqPacket.Instance);
        await client.ExpectAsync<PingRespPacket>();
    }

    private static void AssertTimedOut(List<MqttPacket> packets, MqttProtocolVersion version)
    {
        if (version == MqttProtocolVersion.V500)
        {
            var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
            Assert.Equal(ReasonCode.KeepAliveTimeout, disconnect.ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Client_silent_for_one_and_a_half_keep_alives_is_disconnected(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("k1", version, keepAlive: 10));
        await using var _ = client;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);

        time.Advance(TimeSpan.FromSeconds(14));
        await AssertAliveAsync(client);
        time.Advance(TimeSpan.FromSeconds(14));
        await AssertAliveAsync(client);

        time.Advance(TimeSpan.FromSeconds(15));
        AssertTimedOut(await client.ReceiveUntilClosedAsync(), version);
        await host.WaitUntilSessionGoneAsync("k1");
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Any_packet_counts_as_activity(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("k1", version, keepAlive: 10));
        await using var c = client;

        time.Advance(TimeSpan.FromSeconds(14));
        await client.SubscribeAsync("t", QoS.AtMostOnce);
        time.Advance(TimeSpan.FromSeconds(14));
        await AssertAliveAsync(client);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Keep_alive_0_never_times_out(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("k1", version, keepAlive: 0));
        await using var c = client;

        time.Advance(TimeSpan.FromHours(25));
        await AssertAliveAsync(client);
    }

    [Fact]
    public async Task Server_keep_alive_is_enforced()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(o => o.MaximumKeepAlive = 4, time);
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("k1", MqttProtocolVersion.V500, keepAlive: 60));
        await using var _ = client;
        Assert.Equal((ushort)4, ack.Properties?.ServerKeepAlive);

        time.Advance(TimeSpan.FromSeconds(5));
        await AssertAliveAsync(client);
        time.Advance(TimeSpan.FromSeconds(6));
        AssertTimedOut(await client.ReceiveUntilClosedAsync(), MqttProtocolVersion.V500);
    }

    [Fact]
    public async Task Connection_without_connect_is_closed_after_the_connect_timeout()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(o => o.ConnectTimeoutSeconds = 10, time);
        await using var client = await RawClient.OpenAsync(host);
        await BrokerState.WaitUntilAsync(() => host.Broker.ConnectionCount == 1, "the connection is accepted");

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Empty(await client.ReceiveUntilClosedAsync());
    }

    [Fact]
    public async Task Housekeeping_looks_again_only_at_connections_that_have_a_deadline()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        var quiet = new List<RawClient>();
        for (var i = 0; i < 3; i++)
        {
            quiet.Add((await RawClient.ConnectAsync(host, RawPackets.Connect($"q{i}", MqttProtocolVersion.V500, keepAlive: 0))).Client);
        }

        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("k1", MqttProtocolVersion.V500, keepAlive: 10));
        await using var c = client;

        // The first tick sees the four: those without keep alive are not looked at again.
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, host.Broker.ScheduledTimeoutChecks);

        // Activity moves the deadline: the connection is put back, not closed at its first deadline.
        time.Advance(TimeSpan.FromSeconds(13));
        await AssertAliveAsync(client);
        time.Advance(TimeSpan.FromSeconds(14));
        await AssertAliveAsync(client);
        Assert.Equal(1, host.Broker.ScheduledTimeoutChecks);

        time.Advance(TimeSpan.FromSeconds(15));
        AssertTimedOut(await client.ReceiveUntilClosedAsync(), MqttProtocolVersion.V500);
        Assert.Equal(0, host.Broker.ScheduledTimeoutChecks);
        foreach (var q in quiet)
        {
            await AssertAliveAsync(q);
            await q.DisposeAsync();
        }
    }

    [Fact]
    public async Task Housekeeping_looks_only_at_sessions_whose_client_is_away()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time);
        var (other, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("clean", MqttProtocolVersion.V500));
        await using var o = other;
        var connect = RawPackets.Connect("p1", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 100);
        var (first, _) = await RawClient.ConnectAsync(host, connect);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, host.Broker.AwaySessionCount);

        await first.SendAsync(new DisconnectPacket());
        await first.DisposeAsync();
        await host.WaitUntilDetachedAsync("p1");

        // The session shows detached a moment before the registry adds it to those looked at (same lock, next line).
        await BrokerState.WaitUntilAsync(() => host.Broker.AwaySessionCount == 1, "the session is looked at by housekeeping");

        // Back before its expiry: the next tick drops it from the sessions looked at.
        var (second, ack) = await RawClient.ConnectAsync(host, connect);
        Assert.True(ack.SessionPresent);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, host.Broker.AwaySessionCount);

        // Away again and past its expiry: housekeeping ends it.
        await second.SendAsync(new DisconnectPacket());
        await second.DisposeAsync();
        await host.WaitUntilDetachedAsync("p1");
        await BrokerState.WaitUntilAsync(() => host.Broker.AwaySessionCount == 1, "the session is looked at by housekeeping");
        time.Advance(TimeSpan.FromSeconds(101));
        await host.WaitUntilSessionGoneAsync("p1");
        Assert.Equal(0, host.Broker.AwaySessionCount);
    }
}
