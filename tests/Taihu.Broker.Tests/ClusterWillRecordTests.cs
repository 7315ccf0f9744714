using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// On a cluster node the broker tells its link of each will, so that the cluster keeps a copy for the node that
/// would succeed this one (<see cref="IMqttClusterLink.OnWillSet"/>), and when this node is done with it
/// (<see cref="IMqttClusterLink.OnWillDone"/>): sent, dropped by a normal DISCONNECT, or sent after its delay.
/// A client without a will costs the link nothing. The whole path between real nodes is ClusterDeadNodeTests.
/// </summary>
public class ClusterWillRecordTests
{
    /// <summary>A link of one node alone: every claim finds the session here; it records the will calls.</summary>
    private sealed class RecordingLink : IMqttClusterLink
    {
        public Channel<string> Calls { get; } = Channel.CreateUnbounded<string>();

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

        public int Forward(BrokerMessage message) => 0;

        public ValueTask<ClaimedSession> ClaimSessionAsync(string ns, string owner, string clientId, CancellationToken cancellationToken) =>
            ValueTask.FromResult(new ClaimedSession(Known: true, Session: null));

        public void OnWillSet(string ns, string owner, string clientId, string topic, ReadOnlySpan<byte> payload, QoS qos, bool retain, MqttProperties? properties, uint delay) =>
            Calls.Writer.TryWrite($"set {clientId} {topic} {System.Text.Encoding.UTF8.GetString(payload)} {qos} {retain} {delay}");

        public void OnWillDone(string ns, string owner, string clientId) => Calls.Writer.TryWrite($"done {clientId}");

        public async Task<string> NextAsync() => await Calls.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    private static Task<BrokerHost> StartAsync(RecordingLink link, TimeProvider? time = null) =>
        BrokerHost.StartAsync(time: time, services: s => s.AddSingleton<IMqttClusterLink>(link));

    [Fact]
    public async Task Will_is_recorded_at_connect_and_done_at_a_normal_disconnect_a_client_without_one_records_nothing()
    {
        var link = new RecordingLink();
        await using var host = await StartAsync(link);

        var (plain, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("plain", MqttProtocolVersion.V500));
        await plain.SendAsync(new DisconnectPacket());
        await plain.ReceiveUntilClosedAsync();
        await plain.DisposeAsync();

        var (client, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", MqttProtocolVersion.V500,
            will: RawPackets.Will("will/w1", "gone", QoS.AtLeastOnce, retain: true)));
        await using var c = client;
        Assert.Equal("set w1 will/w1 gone AtLeastOnce True 0", await link.NextAsync());
        await client.SendAsync(new DisconnectPacket());
        await client.ReceiveUntilClosedAsync();
        Assert.Equal("done w1", await link.NextAsync());
        Assert.False(link.Calls.Reader.TryRead(out _));
    }

    [Fact]
    public async Task Will_sent_when_the_connection_drops_is_done_a_delayed_one_only_when_its_delay_is_over()
    {
        var time = new FakeTimeProvider();
        var link = new RecordingLink();
        await using var host = await StartAsync(link, time);
        await using var watcher = await TestClient.ConnectAsync(host, "watcher", MqttProtocolVersion.V500, b => b.WithKeepAlivePeriod(TimeSpan.Zero));
        await watcher.Client.SubscribeAsync("will/#", MqttQualityOfServiceLevel.AtLeastOnce);

        var (delayed, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("delayed", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60,
            will: RawPackets.Will("will/delayed", "later", properties: new MqttProperties { WillDelayInterval = 10 })));
        Assert.Equal("set delayed will/delayed later AtMostOnce False 10", await link.NextAsync());
        await delayed.DisposeAsync();
        await BrokerState.WaitUntilAsync(() => host.Broker.FindSession("", "delayed") is { IsWillPending: true }, "the will of 'delayed' is pending");

        // Dropped at once: sent, and done. Nothing of the delayed one came before.
        var (atOnce, _) = await RawClient.ConnectAsync(host, RawPackets.Connect("at-once", MqttProtocolVersion.V311, will: RawPackets.Will("will/at-once", "now")));
        Assert.Equal("set at-once will/at-once now AtMostOnce False 0", await link.NextAsync());
        await atOnce.DisposeAsync();
        Assert.Equal("will/at-once", (await watcher.NextAsync()).ApplicationMessage.Topic);
        Assert.Equal("done at-once", await link.NextAsync());

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal("will/delayed", (await watcher.NextAsync()).ApplicationMessage.Topic);
        Assert.Equal("done delayed", await link.NextAsync());
    }
}
