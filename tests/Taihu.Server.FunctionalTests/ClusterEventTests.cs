using System.Globalization;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The platform's event log on a cluster of three real server processes (loopback, one private PostgreSQL
/// database): the alarm rules and the integrations run on the one node that holds the event log lease, whichever
/// node took the device's data or the API call, and each node's live subscribers get every node's changes.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterEventTests(PostgresServer postgres)
{
    private const string Password = "tenant-admin-pw";
    private const string Secret = "cluster-webhook-secret";

    [Fact]
    public async Task ThreeNodes_AlarmRaisedOnce_WebhookGetsEachEventOnce_LiveSubscriberGetsEveryNodesTelemetry()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "events", 3, nodes);
            var holder = await LeaseHolderAsync(nodes);
            using var sysAdmin = await PlatformApi.SysAdminAsync(nodes[0]);
            var email = $"events-{Guid.NewGuid():N}@example.com";
            var (_, admin0) = await sysAdmin.CreateTenantWithAdminAsync("Events", email, Password);
            using var _ = admin0;
            using var admin2 = await LogInAsync(nodes[2], email);

            // A webhook made through node 2's API; the node holding the lease fills and delivers its outbox.
            var log = new ReceiverLog();
            await using var receiver = await WebhookReceiver.StartAsync(Secret, log: log);
            var integration = (await admin2.PostAsync("/api/integration", new
            {
                name = "hook-" + Guid.NewGuid().ToString("N")[..8],
                type = "HTTP",
                messageTypes = new[] { "TELEMETRY" },
                configuration = new { url = receiver.Url, secret = Secret, requestTimeoutMs = 5000 },
            }))["id"]!["id"]!.GetValue<string>();

            // Alarms: the profile with its rule and the device through node 0; the device publishes to node 1.
            var (deviceId, token) = await DeviceInProfileAsync(admin0, "air-" + Guid.NewGuid().ToString("N")[..8]);
            // A live alarm subscriber on a node that does not run the rules (its first frame: it is registered).
            var watcher = nodes[(holder + 1) % nodes.Count];
            using var watcherAdmin = await LogInAsync(watcher, email);
            await using var alarmLive = await LiveClient.ConnectAsync(watcher, watcherAdmin.Token!, AlarmRulesTests.AlarmData(deviceId));
            while ((await alarmLive.NextAsync())["cmdId"]?.GetValue<int>() != 1)
            {
            }

            await PublishAsync(nodes[1], token, """{"pm25": 80}""");
            var alarms = await admin2.EventuallyAsync($"/api/alarm/DEVICE/{deviceId}?pageSize=10&page=0", a => a["totalElements"]!.GetValue<long>() > 0);
            Assert.Equal(1, alarms["totalElements"]!.GetValue<long>());
            Assert.Equal(("High PM2.5", "MAJOR"), (alarms["data"]![0]!["type"]!.GetValue<string>(), alarms["data"]![0]!["severity"]!.GetValue<string>()));
            var heard = await AlarmRulesTests.NextUpdateAsync(alarmLive);
            Assert.Equal((alarms["data"]![0]!["id"]!["id"]!.GetValue<string>(), "ACTIVE_UNACK"), (heard["id"]!["id"]!.GetValue<string>(), heard["status"]!.GetValue<string>()));

            // Decided once: by the lease holder's rules, the only node whose rules consumer reads the log at all.
            await Metrics.WaitForAsync(nodes[holder], "taihu_rules_alarm_changes_total", count => count >= 1);
            var changes = new double[nodes.Count];
            var rulesRunning = new bool[nodes.Count];
            for (var i = 0; i < nodes.Count; i++)
            {
                using var http = new HttpClient { BaseAddress = nodes[i].HttpBaseAddress };
                changes[i] = await Metrics.ReadAsync(http, "taihu_rules_alarm_changes_total") ?? 0;
                rulesRunning[i] = (await http.GetStringAsync("/metrics")).Contains("consumer=\"rules\"", StringComparison.Ordinal);
            }

            Assert.Equal(1, changes.Sum());
            Assert.Equal(1, changes[holder]);
            Assert.Equal([.. Enumerable.Range(0, nodes.Count).Select(i => i == holder)], rulesRunning);

            // Integrations: a device on each node publishes five numbered points; each reaches the webhook once.
            var names = new List<string>();
            for (var i = 0; i < nodes.Count; i++)
            {
                var name = $"pump-{i}-" + Guid.NewGuid().ToString("N")[..8];
                var (_, pumpToken) = await admin0.CreateDeviceAsync(name);
                names.Add(name);
                for (var n = 0; n < 5; n++)
                {
                    await NumberedTelemetry.PublishAsync(nodes[i], pumpToken, n);
                }
            }

            await log.WaitAsync(events => names.All(name => NumberedTelemetry.Numbers(events, name).Distinct().Count() == 5));
            // Every outbox row delivered and deleted: a second copy of any event, in any node's outbox, has come by now.
            await admin2.EventuallyAsync($"/api/integration/{integration}/stats", s => s["outboxSize"]!.GetValue<long>() == 0);
            foreach (var name in names)
            {
                Assert.Equal([0, 1, 2, 3, 4], NumberedTelemetry.Numbers(log.Snapshot(), name));
            }

            var ids = log.Snapshot().Select(e => e.Body["id"]!.GetValue<string>()).ToList();
            Assert.Equal(ids.Count, ids.Distinct().Count());

            // The live feed: a subscriber on node 2 gets the device's telemetry from every node, each point once, in order.
            await using var live = await LiveClient.ConnectAsync(nodes[2], admin2.Token!,
                new { type = "TIMESERIES", cmdId = 3, entityType = "DEVICE", entityId = deviceId, keys = "level" });
            Assert.Equal(3, (await live.NextAsync())["subscriptionId"]!.GetValue<int>());
            var order = new[] { 1, 2, 0, 1 };
            for (var k = 0; k < order.Length; k++)
            {
                var ts = (1_764_115_200_000 + k).ToString(CultureInfo.InvariantCulture);
                await PublishAsync(nodes[order[k]], token, "{\"ts\": " + ts + ", \"values\": {\"level\": " + k.ToString(CultureInfo.InvariantCulture) + "}}");
                var update = await live.NextOfAsync(3);
                Assert.Equal($$"""{"level":[[{{1_764_115_200_000 + k}},"{{k}}"]]}""", update["data"]!.ToJsonString());
            }
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }

            await postgres.DropDatabaseAsync(database);
        }
    }

    [Fact]
    public async Task LeaseHolderKilled_TheSurvivorsTakeTheRulesOver_NoAlarmLostOrDoubled()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "failover", 3, nodes);
            var holder = await LeaseHolderAsync(nodes);
            var survivors = Enumerable.Range(0, nodes.Count).Where(i => i != holder).Select(i => nodes[i]).ToList();
            using var sysAdmin = await PlatformApi.SysAdminAsync(survivors[0]);
            var email = $"failover-{Guid.NewGuid():N}@example.com";
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Failover", email, Password);
            using var _ = admin;
            var name = "air-" + Guid.NewGuid().ToString("N")[..8];
            var (first, firstToken) = await DeviceInProfileAsync(admin, name);
            var profileId = (await admin.GetAsync($"/api/device/{first}"))["deviceProfileId"]!["id"]!.GetValue<string>();
            var (before, beforeToken) = await DeviceInProfileAsync(admin, name + "-b", profileId);
            var (after, afterToken) = await DeviceInProfileAsync(admin, name + "-c", profileId);

            // The holder's rules raise the first alarm, so that they hold rule state when the node dies.
            await PublishAsync(survivors[0], firstToken, """{"pm25": 80}""");
            await admin.EventuallyAsync($"/api/alarm/DEVICE/{first}?pageSize=10&page=0", a => a["totalElements"]!.GetValue<long>() == 1);

            // One point just before the kill (taken by the old holder or, from its last position, by the new one),
            // the others after it: each alarm is raised, once.
            await PublishAsync(survivors[1], beforeToken, """{"pm25": 90}""");
            await nodes[holder].KillAsync();
            // After the kill: a point for the device whose rule state the dead node held, and one for a new device.
            await PublishAsync(survivors[0], firstToken, """{"pm25": 120}""");
            await PublishAsync(survivors[0], afterToken, """{"pm25": 100}""");

            var newHolder = await LeaseHolderAsync(survivors);
            // Each device's alarm is written in its own order (not in the log's), so each is waited for; then none is doubled.
            foreach (var device in new[] { first, before, after })
            {
                await admin.EventuallyAsync($"/api/alarm/DEVICE/{device}?pageSize=10&page=0", a => a["totalElements"]!.GetValue<long>() > 0);
            }

            foreach (var device in new[] { first, before, after })
            {
                var alarms = await admin.GetAsync($"/api/alarm/DEVICE/{device}?pageSize=10&page=0");
                Assert.Equal(1, alarms["totalElements"]!.GetValue<long>());
            }

            // The new holder decided the alarms after the kill (its counter follows the alarm's write).
            await Metrics.WaitForAsync(survivors[newHolder], "taihu_rules_alarm_changes_total", count => count >= 1);
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }

            await postgres.DropDatabaseAsync(database);
        }
    }

    /// <summary>The index of the one node that holds the event log lease (waits until exactly one does).</summary>
    internal static async Task<int> LeaseHolderAsync(IReadOnlyList<ServerProcess> nodes)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var holders = new List<int>();
            for (var i = 0; i < nodes.Count; i++)
            {
                using var http = new HttpClient { BaseAddress = nodes[i].HttpBaseAddress };
                if (await Metrics.ReadAsync(http, "taihu_cluster_event_lease") == 1)
                {
                    holders.Add(i);
                }
            }

            if (holders.Count == 1)
            {
                return holders[0];
            }

            Assert.True(holders.Count == 0 && clock.Elapsed < LiveClient.Guard, $"Nodes {string.Join(", ", holders)} hold the event log lease at once.");
        }
    }

    private static async Task<PlatformApi> LogInAsync(ServerProcess node, string email)
    {
        var api = new PlatformApi(node);
        api.Token = await api.LoginAsync(email, Password);
        return api;
    }

    /// <summary>A device in a new profile with the rule (named <paramref name="name"/>), or in profile <paramref name="profileId"/>.</summary>
    internal static async Task<(Guid Id, string Token)> DeviceInProfileAsync(PlatformApi admin, string name, string? profileId = null)
    {
        profileId ??= (await admin.PostAsync("/api/deviceProfile", AlarmRulesTests.Profile(name, AlarmRulesTests.Simple)))["id"]!["id"]!.GetValue<string>();
        var device = await admin.PostAsync("/api/device", new { name, type = "air", deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profileId } });
        var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        var credentials = await admin.GetAsync($"/api/device/{id}/credentials");
        return (id, credentials["credentialsId"]!.GetValue<string>());
    }

    private static async Task PublishAsync(ServerProcess server, string token, string json)
    {
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-q", "1", "-t", "v1/devices/me/telemetry", "-m", json);
        Assert.True(exit == 0, output);
    }
}
