using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Restart in the middle: the webhook receiver is down, devices publish with <c>mosquitto_pub -q 1</c>, the server
/// is killed (SIGKILL) with events waiting in the outbox (and perhaps some not yet read from the event log) and
/// started again on the same data directory, more telemetry comes, and the receiver comes back: every event
/// arrives, signed, in order per device; duplicates (at least once) are allowed and counted.
/// </summary>
public sealed class IntegrationRestartTests
{
    private const string Secret = "restart-webhook-secret";
    private const string Password = "restart-admin-password";
    private const int BeforeKill = 10;
    private const int AfterRestart = 5;

    [Fact]
    public async Task KilledWhileTheReceiverIsDown_EveryEventArrivesInOrderPerDevice_AfterTheRestart()
    {
        var dataDirectory = ServerProcess.NewDataDirectory();
        var log = new ReceiverLog();
        int port;
        await using (var probe = await WebhookReceiver.StartAsync(Secret, log: log))
        {
            // The receiver's port, taken and given back: nothing listens there until the receiver comes back.
            port = probe.Port;
        }

        try
        {
            var email = $"restart-{Guid.NewGuid():N}@example.com";
            string[] names = ["north-well", "south-well"];
            var tokens = new string[names.Length];
            string integration;
            long failedBeforeKill;
            await using (var server = await ServerProcess.StartAsync(dataDirectory: dataDirectory))
            {
                using var sysAdmin = await PlatformApi.SysAdminAsync(server);
                var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Restart", email, Password);
                using (admin)
                {
                    for (var d = 0; d < names.Length; d++)
                    {
                        (_, tokens[d]) = await admin.CreateDeviceAsync(names[d]);
                    }

                    var created = await admin.PostAsync("/api/integration", new
                    {
                        name = "restart-hook",
                        type = "HTTP",
                        messageTypes = new[] { "TELEMETRY" },
                        configuration = new { url = $"http://127.0.0.1:{port}/hook", secret = Secret, requestTimeoutMs = 2000 },
                    });
                    integration = created["id"]!["id"]!.GetValue<string>();
                    for (var n = 0; n < BeforeKill; n++)
                    {
                        for (var d = 0; d < names.Length; d++)
                        {
                            await NumberedTelemetry.PublishAsync(server, tokens[d], n);
                        }
                    }

                    // An attempt has failed: the events wait in the outbox for their retry.
                    var before = await admin.EventuallyAsync($"/api/integration/{integration}/stats", s => s["failed"]!.GetValue<long>() > 0 && s["outboxSize"]!.GetValue<long>() > 0);
                    failedBeforeKill = before["failed"]!.GetValue<long>();
                }

                await server.KillAsync();
            }

            await using var restarted = await ServerProcess.StartAsync(dataDirectory: dataDirectory);
            using var api = new PlatformApi(restarted);
            api.Token = await api.LoginAsync(email, Password);
            for (var n = BeforeKill; n < BeforeKill + AfterRestart; n++)
            {
                for (var d = 0; d < names.Length; d++)
                {
                    await NumberedTelemetry.PublishAsync(restarted, tokens[d], n);
                }
            }

            await using var receiver = await WebhookReceiver.StartAsync(Secret, port, log);
            var all = Enumerable.Range(0, BeforeKill + AfterRestart).ToList();
            await log.WaitAsync(events => names.All(name => NumberedTelemetry.Numbers(events, name).Distinct().Count() == all.Count));
            var received = log.Snapshot();
            foreach (var name in names)
            {
                Assert.Equal(all, NumberedTelemetry.Numbers(received, name).Distinct());
            }

            Assert.All(received, e => Assert.True(e.SignatureValid, "The X-Taihu-Signature header does not match the body."));
            var ids = received.Select(e => e.Body["id"]!.GetValue<string>()).ToList();
            Console.WriteLine($"Webhook across a SIGKILL: {ids.Distinct().Count()} events, {received.Count} POSTs received, {ids.Count - ids.Distinct().Count()} duplicates.");
            var stats = await api.EventuallyAsync($"/api/integration/{integration}/stats", s => s["outboxSize"]!.GetValue<long>() == 0);
            Assert.Equal(0, stats["dead"]!.GetValue<long>());

            // The counters survived the SIGKILL: the failed attempts before it are still counted, and every event sent.
            Assert.True(stats["failed"]!.GetValue<long>() >= failedBeforeKill, stats.ToJsonString());
            Assert.True(stats["sent"]!.GetValue<long>() >= ids.Distinct().Count(), stats.ToJsonString());
            var metrics = await api.Http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            foreach (var name in (string[])["taihu_integration_sent_total", "taihu_integration_failed_total", "taihu_integration_dead_total", "taihu_integration_outbox",
                "taihu_integration_retrying", "taihu_integration_lag_milliseconds"])
            {
                Assert.Contains($"{name}{{otel_scope_name=\"Taihu.Platform\",integration=\"{integration}\"}}", metrics, StringComparison.Ordinal);
            }
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(dataDirectory);
        }
    }

    /// <summary>
    /// The same for MQTT republish to an external Mosquitto: the broker is stopped (its persistent subscriber's
    /// session saved), Taihu is killed with events waiting and restarted, the broker comes back, and the subscriber,
    /// reconnecting to its session, gets every event in order per device.
    /// </summary>
    [Fact]
    public async Task Republish_KilledWhileTheBrokerIsDown_EveryEventArrivesInOrderPerDevice_AfterTheRestart()
    {
        var dataDirectory = ServerProcess.NewDataDirectory();
        var brokerDirectory = Path.Combine(Path.GetTempPath(), "taihu-mosquitto-" + Guid.NewGuid().ToString("N"));
        var (broker, brokerPort, _) = await MosquittoProcess.StartBrokerAsync(directory: brokerDirectory);
        var subscriber = new[] { "-h", "127.0.0.1", "-p", brokerPort.ToString(CultureInfo.InvariantCulture), "-c", "-i", "city-dispatch", "-q", "1", "-v", "-t", "taihu/#" };
        try
        {
            // The subscriber's session (clean session off) is made, then it goes away: the broker queues for it.
            await (await MosquittoProcess.SubscribeAsync(subscriber)).DisposeAsync();
            await broker.StopAsync();
            await broker.DisposeAsync();

            var email = $"republish-{Guid.NewGuid():N}@example.com";
            string[] names = ["east-gate", "west-gate"];
            var tokens = new string[names.Length];
            string integration;
            await using (var server = await ServerProcess.StartAsync(dataDirectory: dataDirectory))
            {
                using var sysAdmin = await PlatformApi.SysAdminAsync(server);
                var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Republish restart", email, Password);
                using (admin)
                {
                    for (var d = 0; d < names.Length; d++)
                    {
                        (_, tokens[d]) = await admin.CreateDeviceAsync(names[d]);
                    }

                    var created = await admin.PostAsync("/api/integration", new
                    {
                        name = "restart-republish",
                        type = "MQTT",
                        messageTypes = new[] { "TELEMETRY" },
                        configuration = new { topic = "taihu/{deviceName}", qos = 1, host = "127.0.0.1", port = brokerPort, protocolVersion = "3.1.1" },
                    });
                    integration = created["id"]!["id"]!.GetValue<string>();
                    for (var n = 0; n < BeforeKill; n++)
                    {
                        for (var d = 0; d < names.Length; d++)
                        {
                            await NumberedTelemetry.PublishAsync(server, tokens[d], n);
                        }
                    }

                    await admin.EventuallyAsync($"/api/integration/{integration}/stats", s => s["failed"]!.GetValue<long>() > 0 && s["outboxSize"]!.GetValue<long>() > 0);
                }

                await server.KillAsync();
            }

            await using var restarted = await ServerProcess.StartAsync(dataDirectory: dataDirectory);
            using var api = new PlatformApi(restarted);
            api.Token = await api.LoginAsync(email, Password);
            for (var n = BeforeKill; n < BeforeKill + AfterRestart; n++)
            {
                for (var d = 0; d < names.Length; d++)
                {
                    await NumberedTelemetry.PublishAsync(restarted, tokens[d], n);
                }
            }

            (broker, _, _) = await MosquittoProcess.StartBrokerAsync(brokerPort, brokerDirectory);
            await api.EventuallyAsync($"/api/integration/{integration}/stats", s => s["outboxSize"]!.GetValue<long>() == 0);
            await using var dispatch = await MosquittoProcess.SubscribeAsync(subscriber);
            var all = Enumerable.Range(0, BeforeKill + AfterRestart).ToList();
            foreach (var name in names)
            {
                await dispatch.WaitForLineAsync(line => line.StartsWith($"taihu/{name} ", StringComparison.Ordinal) && line.Contains($"\"n\":{all[^1]}", StringComparison.Ordinal));
                var events = dispatch.Output.Split('\n').Where(line => line.StartsWith($"taihu/{name} ", StringComparison.Ordinal))
                    .Select(line => JsonNode.Parse(line[(name.Length + 7)..])!).ToList();
                var received = NumberedTelemetry.Numbers(events.Select(e => new ReceivedEvent(e, true, null)).ToList(), name);
                Assert.Equal(all, received.Distinct());
                Console.WriteLine($"Republish across a SIGKILL, {name}: {received.Count} points for {all.Count} sent.");
            }
        }
        finally
        {
            await broker.DisposeAsync();
            ServerProcess.DeleteDataDirectory(dataDirectory);
            Directory.Delete(brokerDirectory, recursive: true);
        }
    }



}
