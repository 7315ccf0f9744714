using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Routing;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// What the broker does with the state that other nodes of a cluster hand it or take from it, through its public
/// calls for the cluster link (<see cref="MqttBroker.RouteFromNode"/>, <see cref="MqttBroker.RetainFromNode"/>,
/// <see cref="MqttBroker.EndSessionTakenOver"/>), with a state store in memory and fake time. The whole path
/// between real nodes is in the functional tests (ClusterStateTests).
/// </summary>
public class ClusterNodeStateTests
{
    private static Task<BrokerHost> StartAsync(MemoryStateStore store, FakeTimeProvider time) =>
        BrokerHost.StartAsync(null, time, services => services.AddSingleton<IBrokerStateStore>(store));

    private static BrokerMessage Retained(string topic, string payload, DateTimeOffset at) =>
        BrokerMessage.Create("", topic, Encoding.UTF8.GetBytes(payload), owner: null, QoS.AtLeastOnce, retain: true, properties: null, at, originClientId: "on-another-node");

    private static async Task PublishRetainedAsync(RawClient publisher, string topic, string payload, ushort packetId)
    {
        await publisher.SendAsync(Publish(topic, payload, QoS.AtLeastOnce, packetId, retain: true));
        await publisher.ExpectAckAsync(PacketType.PubAck, packetId);
    }

    [Fact]
    public async Task Retained_message_from_another_node_is_kept_and_delivered_but_written_by_its_own_node()
    {
        var time = new FakeTimeProvider();
        var store = new MemoryStateStore();
        await using var host = await StartAsync(store, time);
        await using var watcher = await ConnectRawAsync(host, "watcher", ProtocolVersion.V500);
        await watcher.SubscribeAsync("node/#", QoS.AtLeastOnce);

        var fromNode = Retained("node/1", "there", time.GetUtcNow());
        try
        {
            Assert.Equal(1, host.Broker.RouteFromNode(fromNode));
        }
        finally
        {
            fromNode.Release();
        }

        Assert.Equal("there", (await watcher.ExpectPublishAsync()).Payload);
        await using (var late = await ConnectRawAsync(host, "late", ProtocolVersion.V311))
        {
            await late.SubscribeAsync("node/1", QoS.AtLeastOnce);
            var (packet, payload) = await late.ExpectPublishAsync();
            Assert.Equal(("node/1", "there", true), (packet.Topic, payload, packet.Retain));
        }

        // A retained change accepted here is written; the other node's is not (that node writes it).
        await using var publisher = await ConnectRawAsync(host, "publisher", ProtocolVersion.V500);
        await PublishRetainedAsync(publisher, "node/2", "here", 1);
        Assert.Equal("here", (await watcher.ExpectPublishAsync()).Payload);
        time.Advance(host.Broker.Options.StateFlushInterval);
        Assert.Equal(["node/2"], (await store.NextRetainedWriteAsync()).Select(c => c.Topic));

        // An empty payload from the other node clears it here too.
        var clear = Retained("node/1", "", time.GetUtcNow());
        try
        {
            host.Broker.RouteFromNode(clear);
        }
        finally
        {
            clear.Release();
        }

        Assert.Equal(1, host.Broker.RetainedCount(""));
    }

    [Fact]
    public async Task Retained_set_of_an_older_node_fills_in_but_never_replaces_a_newer_message()
    {
        var time = new FakeTimeProvider();
        await using var host = await StartAsync(new MemoryStateStore(), time);
        await using var publisher = await ConnectRawAsync(host, "publisher", ProtocolVersion.V500);
        var before = time.GetUtcNow();
        time.Advance(TimeSpan.FromSeconds(5));
        await PublishRetainedAsync(publisher, "set/newer-here", "here", 1);

        foreach (var message in new[] { Retained("set/newer-here", "older", before), Retained("set/missing-here", "filled", before) })
        {
            try
            {
                host.Broker.RetainFromNode(message);
            }
            finally
            {
                message.Release();
            }
        }

        await using var subscriber = await ConnectRawAsync(host, "subscriber", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("set/#", QoS.AtLeastOnce);
        var received = new[] { await subscriber.ExpectPublishAsync(), await subscriber.ExpectPublishAsync() }.OrderBy(r => r.Packet.Topic).ToList();
        Assert.Equal([("set/missing-here", "filled"), ("set/newer-here", "here")], received.Select(r => (r.Packet.Topic, r.Payload)));
        await subscriber.PingAsync();
    }

    [Fact]
    public async Task Session_taken_over_by_another_node_is_handed_over_whole_and_not_deleted_from_the_store()
    {
        var time = new FakeTimeProvider();
        var store = new MemoryStateStore();
        await using var host = await StartAsync(store, time);
        await using (var mover = await ConnectRawAsync(host, "mover", ProtocolVersion.V500, new MqttProperties { SessionExpiryInterval = 3600 }, cleanStart: false))
        {
            await mover.SubscribeAsync("move/#", QoS.AtLeastOnce);
        }

        await host.WaitUntilDetachedAsync("mover");
        await using var publisher = await ConnectRawAsync(host, "publisher", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("move/1", "queued", QoS.AtLeastOnce, 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        time.Advance(host.Broker.Options.StateFlushInterval);
        Assert.Contains((await store.NextSessionWriteAsync()).Changed, s => s.ClientId == "mover");

        Assert.True(host.Broker.EndSessionTakenOver("", "", "mover", out var contents));
        Assert.Null(host.Broker.FindSession("", "mover"));
        Assert.Equal((3600u, "move/#"), (contents!.ExpiryInterval, contents.Subscriptions.Single().Filter));
        var delivery = contents.Deliveries.Single();
        Assert.Equal(("move/1", "queued", (ushort)0), (delivery.Message.Topic, Encoding.UTF8.GetString(delivery.Message.Payload.Span), delivery.PacketId));

        // The next write (another session's) neither rewrites nor deletes it: the node that took it over owns its rows.
        await using (var other = await ConnectRawAsync(host, "other", ProtocolVersion.V500, new MqttProperties { SessionExpiryInterval = 60 }, cleanStart: false))
        {
            await other.SubscribeAsync("other/#", QoS.AtLeastOnce);
            time.Advance(host.Broker.Options.StateFlushInterval);
            var (changed, removed) = await store.NextSessionWriteAsync();
            Assert.Equal(["other"], changed.Select(s => s.ClientId));
            Assert.Empty(removed);
        }

        Assert.Contains(store.Sessions.Keys, k => k.ClientId == "mover");
        Assert.False(host.Broker.EndSessionTakenOver("", "", "mover", out _));
    }

    [Fact]
    public async Task Session_of_a_dead_node_is_not_put_over_the_session_of_a_client_that_connected_while_it_was_read()
    {
        var time = new FakeTimeProvider();
        var store = new MemoryStateStore();
        await using var host = await StartAsync(store, time);

        // The dead node's last snapshot of "keeper", read by this node as its successor; the client connects here
        // during that read, and gets a session of its own, with a subscription of its own.
        store.Seed(new StoredSession
        {
            Namespace = "",
            ClientId = "keeper",
            ExpiryInterval = 3600,
            Subscriptions = [new StoredSubscription("stored/#", QoS.AtLeastOnce, false, false, RetainHandling.SendAtSubscribe, 0)],
        });
        var read = store.HoldNextSessionLoad();
        var adopting = host.Broker.AdoptStoredSessionAsync(new SessionKey("", "keeper", ""), 1, CancellationToken.None).AsTask();
        await read.Reading;
        await using var keeper = await ConnectRawAsync(host, "keeper", ProtocolVersion.V500, new MqttProperties { SessionExpiryInterval = 3600 }, cleanStart: false);
        await keeper.SubscribeAsync("live/#", QoS.AtLeastOnce);
        read.Release();
        Assert.False(await adopting);

        // The connection's session is still the one in place: it gets what its subscription matches, and the
        // stored subscription routes nothing.
        await using var publisher = await ConnectRawAsync(host, "publisher", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("stored/1", "not for it", QoS.AtLeastOnce, 1));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("live/1", "for it", QoS.AtLeastOnce, 2));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);
        var (packet, payload) = await keeper.ExpectPublishAsync();
        Assert.Equal(("live/1", "for it"), (packet.Topic, payload));
        Assert.Equal(1, host.Broker.SubscriptionCount(""));
    }
}
