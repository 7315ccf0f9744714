using Microsoft.Extensions.Logging.Abstractions;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Tests;

/// <summary>The broker's stored sessions: a session is keyed by its owner as well as its client id.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task BrokerSessions_OfTwoOwnersWithOneClientId_AreKeptApart()
    {
        var store = new SqlBrokerStateStore(Database, NullLogger<SqlBrokerStateStore>.Instance);
        StoredSession Session(string owner, string filter) => new()
        {
            Namespace = "tenant",
            ClientId = "a1-fw",
            Owner = owner,
            ExpiryInterval = 3600,
            Subscriptions = [new StoredSubscription(filter, QoS.AtLeastOnce, false, false, RetainHandling.SendAtSubscribe, 0)],
            Deliveries = [new StoredDelivery(new StoredMessage { Topic = filter, Payload = new byte[] { 1 }, QoS = QoS.AtLeastOnce, ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(T0) }, QoS.AtLeastOnce, false, null, 0, false)],
        };

        await store.SaveSessionsAsync([Session("device/1", "one/#"), Session("device/2", "two/#"), Session("", "anonymous/#")], [], CancellationToken.None);
        var loaded = (await store.LoadAsync(CancellationToken.None)).Sessions.ToDictionary(s => s.Owner);
        Assert.Equal(3, loaded.Count);
        Assert.Equal("one/#", Assert.Single(loaded["device/1"].Subscriptions).Filter);
        Assert.Equal("two/#", Assert.Single(loaded["device/2"].Subscriptions).Filter);
        Assert.Equal("two/#", Assert.Single(loaded["device/2"].Deliveries).Message.Topic);
        Assert.Equal("anonymous/#", Assert.Single(loaded[""].Subscriptions).Filter);

        await store.SaveSessionsAsync([], [new SessionKey("tenant", "a1-fw", "device/1")], CancellationToken.None);
        var left = (await store.LoadAsync(CancellationToken.None)).Sessions;
        Assert.Equal(["", "device/2"], left.Select(s => s.Owner).Order());

        // One session alone (a cluster node taking over the session of a node gone): by its whole key.
        var one = await store.LoadSessionAsync(new SessionKey("tenant", "a1-fw", "device/2"), CancellationToken.None);
        Assert.Equal(("device/2", 3600u, "two/#"), (one!.Owner, one.ExpiryInterval, Assert.Single(one.Subscriptions).Filter));
        Assert.Equal(new byte[] { 1 }, Assert.Single(one.Deliveries).Message.Payload.ToArray());
        Assert.Null(await store.LoadSessionAsync(new SessionKey("tenant", "a1-fw", "device/1"), CancellationToken.None));
        Assert.Null(await store.LoadSessionAsync(new SessionKey("other", "a1-fw", "device/2"), CancellationToken.None));
    }

    [Fact]
    public async Task BrokerSessions_LoadedByManyAtOnce_EachGetsItsOwn_AndOneWithNoneGetsNothing()
    {
        // A connect storm on a cluster node: the loads that come while others run go to the database together.
        var store = new SqlBrokerStateStore(Database, NullLogger<SqlBrokerStateStore>.Instance);
        var saved = new List<StoredSession>();
        for (var i = 0; i < 30; i++)
        {
            saved.Add(new StoredSession
            {
                Namespace = "tenant",
                ClientId = $"client-{i}",
                Owner = i % 2 == 0 ? "" : $"device/{i}",
                ExpiryInterval = 100u + (uint)i,
                Subscriptions = [new StoredSubscription($"filter/{i}/#", QoS.AtLeastOnce, false, false, RetainHandling.SendAtSubscribe, 0)],
                // Each session's own queued messages, in their order (every found session is read in the same statements).
                Deliveries = [.. Enumerable.Range(0, 1 + (i % 3)).Select(m => new StoredDelivery(
                    new StoredMessage { Topic = $"filter/{i}/{m}", Payload = new byte[] { (byte)i, (byte)m }, QoS = QoS.AtLeastOnce, ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(T0) },
                    QoS.AtLeastOnce, false, null, 0, false))],
            });
        }

        await store.SaveSessionsAsync(saved, [], CancellationToken.None);
        var loads = new List<Task<StoredSession?>>();
        for (var round = 0; round < 4; round++)
        {
            foreach (var session in saved)
            {
                loads.Add(Task.Run(() => store.LoadSessionAsync(new SessionKey(session.Namespace, session.ClientId, session.Owner), CancellationToken.None)));
                // The same client id under another owner, and in another namespace: no session.
                loads.Add(Task.Run(() => store.LoadSessionAsync(new SessionKey(session.Namespace, session.ClientId, session.Owner + "-other"), CancellationToken.None)));
                loads.Add(Task.Run(() => store.LoadSessionAsync(new SessionKey("other", session.ClientId, session.Owner), CancellationToken.None)));
            }
        }

        var loaded = await Task.WhenAll(loads);
        for (var i = 0; i < loaded.Length; i += 3)
        {
            var expected = saved[(i / 3) % saved.Count];
            var one = loaded[i]!;
            Assert.Equal((expected.ClientId, expected.Owner, expected.ExpiryInterval), (one.ClientId, one.Owner, one.ExpiryInterval));
            Assert.Equal(expected.Subscriptions[0].Filter, Assert.Single(one.Subscriptions).Filter);
            Assert.Equal(expected.Deliveries.Select(d => d.Message.Topic), one.Deliveries.Select(d => d.Message.Topic));
            Assert.Null(loaded[i + 1]);
            Assert.Null(loaded[i + 2]);
        }
    }

    [Fact]
    public async Task BrokerSessions_ManySavedInOneRound_AndSavedAgainChanged_AreReadBackAsLastSaved()
    {
        // A node taking over thousands of sessions writes them in one round: on PostgreSQL the statements go in
        // batches, which must keep each session's delete-then-insert order and leave nothing of the first save.
        var store = new SqlBrokerStateStore(Database, NullLogger<SqlBrokerStateStore>.Instance);
        StoredSession Session(int i, int version) => new()
        {
            Namespace = "tenant",
            ClientId = $"taken-{i}",
            Owner = $"device/{i}",
            ExpiryInterval = (uint)(1000 * version + i),
            Subscriptions = [.. Enumerable.Range(0, version == 1 ? 2 : 1).Select(f => new StoredSubscription($"v{version}/{i}/{f}/#", QoS.AtLeastOnce, false, false, RetainHandling.SendAtSubscribe, 0))],
            Deliveries = [.. Enumerable.Range(0, version == 1 ? 1 : 2).Select(m => new StoredDelivery(
                new StoredMessage { Topic = $"v{version}/{i}/{m}", Payload = new byte[] { (byte)version, (byte)m }, QoS = QoS.AtLeastOnce, ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(T0) },
                QoS.AtLeastOnce, false, null, (ushort)(m + 1), false))],
        };

        const int count = 700; // about 3,500 statements a round: several batches and a part of one
        await store.SaveSessionsAsync([.. Enumerable.Range(0, count).Select(i => Session(i, 1))], [], CancellationToken.None);
        await store.SaveSessionsAsync([.. Enumerable.Range(0, count).Where(i => i % 7 != 0).Select(i => Session(i, 2))],
            [.. Enumerable.Range(0, count).Where(i => i % 7 == 0).Select(i => new SessionKey("tenant", $"taken-{i}", $"device/{i}"))], CancellationToken.None);

        var loaded = (await store.LoadAsync(CancellationToken.None)).Sessions.Where(s => s.ClientId.StartsWith("taken-", StringComparison.Ordinal)).ToDictionary(s => s.ClientId);
        Assert.Equal(count - ((count + 6) / 7), loaded.Count);
        for (var i = 0; i < count; i++)
        {
            if (i % 7 == 0)
            {
                Assert.False(loaded.ContainsKey($"taken-{i}"));
                continue;
            }

            var one = loaded[$"taken-{i}"];
            Assert.Equal((uint)(2000 + i), one.ExpiryInterval);
            Assert.Equal($"v2/{i}/0/#", Assert.Single(one.Subscriptions).Filter);
            Assert.Equal([$"v2/{i}/0", $"v2/{i}/1"], one.Deliveries.Select(d => d.Message.Topic));
            Assert.Equal([(ushort)1, (ushort)2], one.Deliveries.Select(d => d.PacketId));
        }
    }
    [Fact]
    public async Task BrokerSessions_SavedByTwoWritersAtOnce_InOppositeOrders_NeitherFails_EachSessionWhole()
    {
        // Two cluster nodes writing an overlapping set of sessions at once (one taking over sessions its former node
        // still writes), each handing its sessions in its own order: on PostgreSQL, written in the order given, each
        // transaction held rows the other waited for, and one of them was aborted as deadlocked.
        var store = new SqlBrokerStateStore(Database, NullLogger<SqlBrokerStateStore>.Instance);
        StoredSession Session(int i, int writer) => new()
        {
            Namespace = "tenant",
            ClientId = $"both-{i}",
            Owner = $"device/{i}",
            ExpiryInterval = (uint)writer,
            Subscriptions = [new StoredSubscription($"w{writer}/{i}/#", QoS.AtLeastOnce, false, false, RetainHandling.SendAtSubscribe, 0)],
            Deliveries = [new StoredDelivery(new StoredMessage { Topic = $"w{writer}/{i}", Payload = new byte[] { (byte)writer }, QoS = QoS.AtLeastOnce, ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(T0) },
                QoS.AtLeastOnce, false, null, 1, false)],
        };

        const int count = 300; // more statements than one batch, so that each writer's first batch locks half of them
        for (var round = 0; round < 3; round++)
        {
            var ascending = Enumerable.Range(0, count).Select(i => Session(i, 1)).ToList();
            var descending = Enumerable.Range(0, count).Reverse().Select(i => Session(i, 2)).ToList();
            await Task.WhenAll(
                Task.Run(() => store.SaveSessionsAsync(ascending, [], CancellationToken.None)),
                Task.Run(() => store.SaveSessionsAsync(descending, [], CancellationToken.None)));
        }

        var loaded = (await store.LoadAsync(CancellationToken.None)).Sessions.Where(s => s.ClientId.StartsWith("both-", StringComparison.Ordinal)).ToList();
        Assert.Equal(count, loaded.Count);
        foreach (var one in loaded)
        {
            // Whichever writer came last, all of the session is its: nothing of the other's mixed in.
            var i = one.ClientId["both-".Length..];
            Assert.Equal($"w{one.ExpiryInterval}/{i}/#", Assert.Single(one.Subscriptions).Filter);
            Assert.Equal($"w{one.ExpiryInterval}/{i}", Assert.Single(one.Deliveries).Message.Topic);
        }
    }
    [Fact]
    public async Task RetainedMessages_SavedByTwoWritersAtOnce_InOppositeOrders_NeitherFails()
    {
        // Each node of a cluster writes the retained messages it is given: the same topics, at about the same time.
        var store = new SqlBrokerStateStore(Database, NullLogger<SqlBrokerStateStore>.Instance);
        RetainedChange Change(int i, byte writer) => new("tenant", $"lamps/{i}/state",
            new StoredMessage { Topic = $"lamps/{i}/state", Payload = new[] { writer }, QoS = QoS.AtLeastOnce, ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(T0) });

        const int count = 400;
        for (var round = 0; round < 3; round++)
        {
            var ascending = Enumerable.Range(0, count).Select(i => Change(i, 1)).ToList();
            var descending = Enumerable.Range(0, count).Reverse().Select(i => Change(i, 2)).ToList();
            await Task.WhenAll(
                Task.Run(() => store.SaveRetainedAsync(ascending, CancellationToken.None)),
                Task.Run(() => store.SaveRetainedAsync(descending, CancellationToken.None)));
        }

        var loaded = (await store.LoadAsync(CancellationToken.None)).Retained.Where(r => r.Topic.StartsWith("lamps/", StringComparison.Ordinal)).ToList();
        Assert.Equal(count, loaded.Count);
        Assert.All(loaded, r => Assert.Contains(r.Message!.Payload.ToArray()[0], new byte[] { 1, 2 }));
    }
}
