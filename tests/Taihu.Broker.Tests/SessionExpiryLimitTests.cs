using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// The server's cap on the Session Expiry Interval (<see cref="BrokerOptions.MaximumSessionExpiryInterval"/>, 5.0
/// section 3.2.2.3.2): a larger request is cut to the cap, CONNACK tells the client the value in force, and the
/// session really ends at the cap. The same cap applies to a new interval sent on DISCONNECT.
/// </summary>
public class SessionExpiryLimitTests
{
    private const uint Cap = 60;

    private static Task<BrokerHost> StartAsync(FakeTimeProvider? time = null) =>
        BrokerHost.StartAsync(o => o.MaximumSessionExpiryInterval = Cap, time);

    private static async Task<(RawClient Client, ConnAckPacket Ack)> ConnectAsync(BrokerHost host, uint expiry)
    {
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("s1", ProtocolVersion.V500, cleanStart: false, sessionExpiry: expiry));
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        return (client, ack);
    }

    private static async Task DisconnectAsync(RawClient client, uint? expiry = null)
    {
        await client.SendAsync(new DisconnectPacket { Properties = expiry is { } e ? new MqttProperties { SessionExpiryInterval = e } : null });
        Assert.Empty(await client.ReceiveUntilClosedAsync());
        await client.DisposeAsync();
    }

    [Fact]
    public async Task Request_above_the_cap_is_cut_and_connack_says_so()
    {
        await using var host = await StartAsync();
        var (client, ack) = await ConnectAsync(host, 3600);
        await using var _ = client;
        Assert.Equal(Cap, ack.Properties?.SessionExpiryInterval);
    }

    [Fact]
    public async Task Request_within_the_cap_is_kept_and_connack_leaves_the_property_out()
    {
        await using var host = await StartAsync();
        var (client, ack) = await ConnectAsync(host, 30);
        await using var _ = client;
        Assert.NotNull(ack.Properties);
        Assert.Null(ack.Properties.SessionExpiryInterval);
    }

    [Fact]
    public async Task Session_asking_for_an_hour_ends_at_the_cap()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var host = await StartAsync(time);
        var (client, _) = await ConnectAsync(host, 3600);
        await client.SubscribeAsync("s/1", QoS.AtLeastOnce);
        await DisconnectAsync(client);
        await host.WaitUntilDetachedAsync("s1");

        time.Advance(TimeSpan.FromSeconds(Cap - 1));
        Assert.NotNull(host.Broker.FindSession("", "s1"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(host.Broker.FindSession("", "s1"));
        Assert.Equal(0, host.Broker.SubscriptionCount(""));

        var (again, ack) = await ConnectAsync(host, 3600);
        await using var __ = again;
        Assert.False(ack.SessionPresent);
    }

    [Fact]
    public async Task Longer_expiry_on_disconnect_is_cut_to_the_cap()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var host = await StartAsync(time);
        var (client, _) = await ConnectAsync(host, 10);
        await DisconnectAsync(client, expiry: 3600);
        await host.WaitUntilDetachedAsync("s1");

        // Past the 10 s asked in CONNECT: DISCONNECT's new interval applies, up to the cap.
        time.Advance(TimeSpan.FromSeconds(Cap - 1));
        Assert.NotNull(host.Broker.FindSession("", "s1"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(host.Broker.FindSession("", "s1"));
    }
}
