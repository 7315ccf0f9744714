using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;
using Xunit.Abstractions;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A node killed with SIGKILL is succeeded by the surviving node that holds the event log lease (two real server
/// processes on one PostgreSQL database): the wills its clients left are sent to subscribers on the other node (a
/// delayed one after its delay, none for a client that connected again elsewhere), a device connected to it goes
/// inactive past its profile's timeout, a persistent session it held keeps receiving until its client comes back,
/// and the persistent RPC calls it had sent carry on (a delivered one times out, one not acknowledged is sent again).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterDeadNodeTests(PostgresServer postgres, ITestOutputHelper log)
{
    /// <summary>Sessions are written a second after they change, so that a node killed soon after has written them.</summary>
    private static readonly Dictionary<string, string> s_settings = new() { ["Broker__SessionSnapshotInterval"] = "00:00:01" };

    [Fact]
    public async Task KilledNode_ItsWillsReachSubscribersElsewhere_ADelayedOneAfterItsDelay_NoneForAClientBackElsewhere()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "wills", 2, nodes, s_settings);
            var (a, b) = (nodes[0], nodes[1]);
            await using var watcher = await MqttTestClient.ConnectTcpAsync(a, "watcher");
            await watcher.SubscribeAsync("will/#");

            // Three clients with wills on B: one sent at once (retained), one after 3 s, and one that is back on A
            // before its will's 2 s are over.
            using var atOnce = await ConnectWithWillAsync(b, "at-once", "will/at-once", delay: 0, retain: true);
            using var delayed = await ConnectWithWillAsync(b, "delayed", "will/delayed", delay: 3);
            using var comesBack = await ConnectWithWillAsync(b, "comes-back", "will/comes-back", delay: 2);
            await ClusterSettings.WaitForCountAsync(postgres, database, "SELECT count(*) FROM cluster_wills", 3);

            var clock = Stopwatch.StartNew();
            await b.KillAsync();
            await using var back = await MqttTestClient.ConnectPersistentTcpAsync(a, "comes-back", MqttProtocolVersion.V500, sessionExpiry: 60);
            var backAfter = clock.Elapsed;

            var first = await watcher.NextAsync();
            var firstAfter = clock.Elapsed;
            Assert.Equal(("will/at-once", "gone:at-once"), (first.Topic, Text(first)));
            var second = await watcher.NextAsync();
            var secondAfter = clock.Elapsed;
            var secondAt = DateTime.UtcNow;
            // In the order they were due: had comes-back's will (due 2 s after the detection) gone, it would be here.
            Assert.Equal(("will/delayed", "gone:delayed"), (second.Topic, Text(second)));
            // When A saw B dead, as it logs it (the delays count from then; one clock, this machine's, for both processes).
            var seenLine = await a.WaitForLineAsync(line => line.Contains("is seen dead at ", StringComparison.Ordinal));
            var seenAt = DateTime.Parse(seenLine[(seenLine.IndexOf("is seen dead at ", StringComparison.Ordinal) + "is seen dead at ".Length)..seenLine.LastIndexOf(": the delays", StringComparison.Ordinal)],
                CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
            log.WriteLine($"comes-back connected to A {backAfter.TotalMilliseconds:F0} ms after the SIGKILL; the will without delay arrived {firstAfter.TotalMilliseconds:F0} ms " +
                $"after it, the one with 3 s {secondAfter.TotalMilliseconds:F0} ms after it and {(secondAt - seenAt).TotalMilliseconds:F0} ms after A saw B dead.");
            Assert.True(secondAfter >= TimeSpan.FromSeconds(3), $"The will with a 3 s delay arrived {secondAfter.TotalMilliseconds:F0} ms after the kill.");
            // Counted from the detection, not from the will's arrival there: taking the dead node's sessions over
            // comes first (so that their subscribers get the wills) and may take a while on a busy machine. (The
            // test once measured from when A's log line reached it, which came up to 0.54 s after the detection.)
            Assert.True(secondAt - seenAt >= TimeSpan.FromSeconds(2.95), $"The will with a 3 s delay came {(secondAt - seenAt).TotalMilliseconds:F0} ms after A saw B dead.");

            // The retained will is kept: a later subscriber on A gets it, flagged retained.
            await using (var late = await MqttTestClient.ConnectTcpAsync(a, "late"))
            {
                await late.SubscribeAsync("will/at-once");
                var retained = await late.NextAsync();
                Assert.Equal(("will/at-once", "gone:at-once", true), (retained.Topic, Text(retained), retained.Retain));
            }

            // Nothing else came: a marker published now is the next message.
            await using var publisher = await MqttTestClient.ConnectTcpAsync(a, "publisher");
            await publisher.PublishAsync("will/marker", "marker");
            Assert.Equal("will/marker", (await watcher.NextAsync()).Topic);
            using var http = new HttpClient { BaseAddress = a.HttpBaseAddress };
            Assert.Equal((double?)2, await Metrics.ReadAsync(http, "taihu_cluster_wills_sent_total"));
            await ClusterSettings.WaitForCountAsync(postgres, database, "SELECT count(*) FROM cluster_wills WHERE client_id <> 'comes-back'", 0);
        }
        finally
        {
            await ClusterSettings.DisposeAsync(postgres, nodes, database);
        }
    }

    [Fact]
    public async Task KilledNode_ItsDevicesGoInactive_PastTheirProfilesTimeout_ThoseOfTheLiveNodeStayActive()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "devices", 2, nodes, s_settings);
            var (a, b) = (nodes[0], nodes[1]);
            using var sysAdmin = await PlatformApi.SysAdminAsync(a);
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Dead node");
            using var _ = admin;
            var profile = await admin.PostAsync("/api/deviceProfile", new { name = "short", profileData = new { inactivityTimeoutMs = 3000 } });

            // Eight devices, one after another, so that their connectivity partitions (by row number) are spread
            // over both nodes: four connected to B, which is killed, and four to A. Each is shown through the API
            // of the node it is not connected to.
            var lamps = new List<(Guid Id, DeviceClient Client, bool OnKilledNode)>();
            for (var i = 0; i < 8; i++)
            {
                var device = await admin.PostAsync("/api/device", new
                {
                    name = $"lamp-{i}",
                    deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profile["id"]!["id"]!.GetValue<string>() },
                });
                var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
                var token = (await admin.GetAsync($"/api/device/{id}/credentials"))["credentialsId"]!.GetValue<string>();
                var onKilled = i % 2 == 0;
                var client = await DeviceClient.ConnectAsync(onKilled ? b : a, token);
                await client.PublishAsync("v1/devices/me/telemetry", """{"on": true}""");
                lamps.Add((id, client, onKilled));
            }

            try
            {
                foreach (var (id, _, _) in lamps)
                {
                    await admin.EventuallyAsync(Attributes(id), v => Value(v, "active") is true && Value(v, "lastConnectTime") is not null);
                }

                var clock = Stopwatch.StartNew();
                var killedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                await b.KillAsync();
                foreach (var (id, _, onKilled) in lamps)
                {
                    if (!onKilled)
                    {
                        continue;
                    }

                    JsonNode inactive;
                    try
                    {
                        inactive = await admin.EventuallyAsync(Attributes(id), v => Value(v, "active") is false);
                    }
                    catch (Exception) when (Log(a.Output))
                    {
                        throw;
                    }

                    // The disconnect is recorded once the death is known: after the kill, before it was shown inactive.
                    var disconnect = Value(inactive, "lastDisconnectTime") as long?;
                    Assert.NotNull(disconnect);
                    Assert.InRange(disconnect.Value, killedAt, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                }

                log.WriteLine($"The devices of the killed node were shown inactive through A's API {clock.ElapsedMilliseconds} ms after the SIGKILL (timeout 3 s).");

                // Those connected to A, silent for longer than their timeout by now, are connected: active, and never
                // disconnected, whichever node their partition lived on.
                foreach (var (id, _, onKilled) in lamps)
                {
                    if (!onKilled)
                    {
                        var shown = await admin.GetAsync(Attributes(id));
                        Assert.Equal(true, Value(shown, "active"));
                        Assert.Null(Value(shown, "lastDisconnectTime"));
                    }
                }
            }
            finally
            {
                foreach (var (_, client, _) in lamps)
                {
                    await client.DisposeAsync();
                }
            }
        }
        finally
        {
            await ClusterSettings.DisposeAsync(postgres, nodes, database);
        }

        static string Attributes(Guid id) => $"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=active,lastConnectTime,lastDisconnectTime";
    }

    [Fact]
    public async Task KilledNode_ItsPersistentCallsCarryOn_ADeliveredOneTimesOut_AnUnacknowledgedOneIsSentAgainElsewhere()
    {
        string read;
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "calls", 2, nodes, s_settings);
            var (a, b) = (nodes[0], nodes[1]);
            using var sysAdmin = await PlatformApi.SysAdminAsync(a);
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Dead node's calls");
            using var _ = admin;
            var (meterId, meterToken) = await admin.CreateDeviceAsync("meter");
            var (valveId, valveToken) = await admin.CreateDeviceAsync("valve");

            // Both devices on B. The meter's call is made through B's API, so its RPC owner (a grain, placed where
            // it is first needed) lives on B and dies with it; the valve's through A, so its owner lives on A and
            // outlives the node it sent through. The meter acknowledges its call (DELIVERED) and never replies; the
            // valve receives its call and does not acknowledge it (SENT).
            await using var meter = await DeviceClient.ConnectAsync(b, meterToken);
            await meter.SubscribeAsync("v1/devices/me/rpc/request/+");
            using (var adminOnB = new PlatformApi(b, admin.Token))
            {
                read = await SubmitAsync(adminOnB, meterId, "read", timeoutMs: 8_000, retries: 0);
            }

            await meter.NextAsync();
            await admin.EventuallyAsync($"/api/rpc/persistent/{read}", c => (string?)c["status"] == "DELIVERED");

            using var valve = new MqttClientFactory().CreateMqttClient();
            var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            valve.ApplicationMessageReceivedAsync += e =>
            {
                e.AutoAcknowledge = false;
                received.TrySetResult(e.ApplicationMessage.Topic);
                return Task.CompletedTask;
            };
            await valve.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", b.TcpPort).WithClientId("valve").WithCredentials(valveToken).Build());
            await valve.SubscribeAsync("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtLeastOnce);
            var open = await SubmitAsync(admin, valveId, "open", timeoutMs: 60_000, retries: 2);
            var firstTopic = await received.Task.WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal("SENT", (string?)(await admin.GetAsync($"/api/rpc/persistent/{open}"))["status"]);

            var clock = Stopwatch.StartNew();
            await b.KillAsync();
            Assert.Equal("DELIVERED", (string?)(await admin.GetAsync($"/api/rpc/persistent/{read}"))["status"]);

            try
            {
            // The valve is back on A: its call is sent again (a retry, with the same request id), and its reply ends it.
            await using var valveBack = await DeviceClient.ConnectAsync(a, valveToken);
            await valveBack.SubscribeAsync("v1/devices/me/rpc/request/+");
            var again = await valveBack.NextAsync();
            var againAfter = clock.Elapsed;
            Assert.Equal((firstTopic, "{\"method\":\"open\",\"params\":1}"), (again.Topic, again.ConvertPayloadToString()));
            await valveBack.PublishAsync("v1/devices/me/rpc/response/" + again.Topic.Split('/')[^1], "{\"open\":true}");
            var done = await admin.EventuallyAsync($"/api/rpc/persistent/{open}", c => (string?)c["status"] == "SUCCESSFUL");

            // The move costs one retry. One more only when the valve's owner lost its activation on A: Orleans' grain
            // directory kept its entry on B, and A deactivates the grains whose entries were there (seen in CI). The
            // new owner cannot know whether the call sent before reached the device, sends it again, and says so.
            var attempts = (int)done["attempts"]!;
            if (attempts != 2)
            {
                Assert.Equal(3, attempts);
                Assert.Contains($"RPC owner of device {valveId} took 1 call(s) from the store", a.Output, StringComparison.Ordinal);
            }

            // The meter's call, delivered by the dead node, times out through A 8 s after its delivery: its owner is
            // activated again on A (the successor wakes it) and takes the call from the store.
            var timedOut = await admin.EventuallyAsync($"/api/rpc/persistent/{read}", c => (string?)c["status"] != "DELIVERED");
            Assert.Equal("TIMEOUT", (string?)timedOut["status"]);
            log.WriteLine($"The valve's call was sent again on A {againAfter.TotalMilliseconds:F0} ms after the SIGKILL; the meter's delivered call " +
                $"ended TIMEOUT {clock.ElapsedMilliseconds} ms after it (its reply timeout: 8 s from its delivery).");
            }
            catch (Exception) when (Log(a.Output))
            {
            }
        }
        finally
        {
            await ClusterSettings.DisposeAsync(postgres, nodes, database);
        }
    }

    /// <summary>Writes the surviving node's output to the test's log (for a failure), and lets the failure through.</summary>
    private bool Log(string output)
    {
        log.WriteLine($"Node A's output:\n{output}");
        return false;
    }

    private static async Task<string> SubmitAsync(PlatformApi admin, Guid deviceId, string method, long timeoutMs, int retries)
    {
        var response = await admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{deviceId}", new
        {
            method,
            @params = 1,
            persistent = true,
            timeout = timeoutMs,
            retries,
        });
        var body = await PlatformApi.ExpectAsync(response, System.Net.HttpStatusCode.OK);
        return (string)body["rpcId"]!;
    }

    [Fact]
    public async Task KilledNode_ItsPersistentSessionKeepsReceiving_UntilItsClientIsBackElsewhere()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "keep", 2, nodes, s_settings);
            var (a, b) = (nodes[0], nodes[1]);
            await using (var keeperOnB = await MqttTestClient.ConnectPersistentTcpAsync(b, "keeper", MqttProtocolVersion.V311))
            {
                await keeperOnB.SubscribeAsync("keep/#");
                // B has written the session, and that it is B's.
                await ClusterSettings.WaitForCountAsync(postgres, database, "SELECT count(*) FROM cluster_sessions WHERE client_id = 'keeper'", 1);
                await ClusterSettings.WaitForCountAsync(postgres, database, "SELECT count(*) FROM mqtt_session_subscriptions WHERE client_id = 'keeper'", 1);

                var clock = Stopwatch.StartNew();
                await b.KillAsync();
                await Metrics.WaitForAsync(a, "taihu_cluster_sessions_taken_over_total", count => count == 1);
                log.WriteLine($"The persistent session of the killed node was taken over by A {clock.ElapsedMilliseconds} ms after the SIGKILL.");
            }

            // Published on A while keeper is connected nowhere: queued in its session, now A's.
            await using var publisher = await MqttTestClient.ConnectTcpAsync(a, "publisher");
            await publisher.PublishAsync("keep/1", "while-away");

            await using var keeperOnA = await MqttTestClient.ConnectPersistentTcpAsync(a, "keeper", MqttProtocolVersion.V311);
            Assert.True(keeperOnA.ConnectResult!.IsSessionPresent);
            var queued = await keeperOnA.NextAsync();
            Assert.Equal(("keep/1", "while-away"), (queued.Topic, Text(queued)));
            await publisher.PublishAsync("keep/2", "live");
            Assert.Equal("live", Text(await keeperOnA.NextAsync()));
        }
        finally
        {
            await ClusterSettings.DisposeAsync(postgres, nodes, database);
        }
    }

    /// <summary>A 5.0 client with a will (QoS 1, payload "gone:{clientId}") and a session that outlives its delay.</summary>
    private static async Task<IMqttClient> ConnectWithWillAsync(ServerProcess server, string clientId, string topic, uint delay, bool retain = false)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", server.TcpPort)
            .WithClientId(clientId)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithSessionExpiryInterval(60)
            .WithWillTopic(topic)
            .WithWillPayload("gone:" + clientId)
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithWillRetain(retain)
            .WithWillDelayInterval(delay)
            .WithTimeout(ServerProcess.Guard)
            .Build();
        var result = await client.ConnectAsync(options).WaitAsync(ServerProcess.Guard);
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        return client;
    }

    private static object? Value(System.Text.Json.Nodes.JsonNode attributes, string key)
    {
        foreach (var entry in attributes.AsArray())
        {
            if ((string?)entry!["key"] == key)
            {
                var value = entry["value"]!;
                return value.GetValueKind() switch
                {
                    System.Text.Json.JsonValueKind.True => true,
                    System.Text.Json.JsonValueKind.False => false,
                    System.Text.Json.JsonValueKind.Number => value.GetValue<long>(),
                    _ => value.ToString(),
                };
            }
        }

        return null;
    }

    private static string Text(MqttApplicationMessage message) => Encoding.UTF8.GetString(message.Payload);
}
