using System.Collections.Concurrent;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// An acknowledged point is never lost: the server is killed (SIGKILL, no shutdown code runs) in the middle of
/// QoS 1 ingest, restarted on the same data directory, and every point whose PUBACK a device received is there.
/// </summary>
public sealed class DurabilityTests
{
    [Fact]
    public async Task KillDuringQoS1Ingest_EveryAcknowledgedPointSurvivesTheRestart()
    {
        var dataDirectory = ServerProcess.NewDataDirectory();
        try
        {
            const int Devices = 4;
            const int AcknowledgedBeforeKill = 400;
            var devices = new List<(Guid Id, string Token)>();
            var acknowledged = new ConcurrentDictionary<Guid, ConcurrentBag<long>>();
            string adminEmail;
            await using (var server = await ServerProcess.StartAsync(dataDirectory: dataDirectory))
            {
                using var sysAdmin = await PlatformApi.SysAdminAsync(server);
                adminEmail = $"durable-{Guid.NewGuid():N}@example.com";
                var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Durable", adminEmail, "durable-password");
                using (admin)
                {
                    for (var i = 0; i < Devices; i++)
                    {
                        devices.Add(await admin.CreateDeviceAsync($"meter-{i}"));
                    }
                }

                var enough = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                var total = 0;
                var publishers = devices.Select(device => Task.Run(async () =>
                {
                    var acked = acknowledged.GetOrAdd(device.Id, _ => []);
                    await using var client = await DeviceClient.ConnectAsync(server, device.Token);
                    // Recent timestamps: the retention sweep at start-up deletes points older than a year.
                    for (var ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(); ; ts++)
                    {
                        MqttClientPublishResult result;
                        try
                        {
                            result = await client.TryPublishAsync("v1/devices/me/telemetry", $"{{\"ts\":{ts},\"values\":{{\"reading\":{ts}}}}}", MqttQualityOfServiceLevel.AtLeastOnce);
                        }
                        catch (Exception)
                        {
                            return; // the server is gone: what was not acknowledged may be lost.
                        }

                        if (!result.IsSuccess)
                        {
                            return;
                        }

                        acked.Add(ts);
                        if (Interlocked.Increment(ref total) == AcknowledgedBeforeKill)
                        {
                            enough.TrySetResult();
                        }
                    }
                })).ToArray();

                await enough.Task.WaitAsync(TimeSpan.FromSeconds(60));
                await server.KillAsync();
                await Task.WhenAll(publishers).WaitAsync(TimeSpan.FromSeconds(60));
            }

            Assert.True(acknowledged.Values.Sum(bag => bag.Count) >= AcknowledgedBeforeKill);
            await using var restarted = await ServerProcess.StartAsync(dataDirectory: dataDirectory);
            using var api = new PlatformApi(restarted);
            api.Token = await api.LoginAsync(adminEmail, "durable-password");
            foreach (var (id, _) in devices)
            {
                var stored = (await api.HistoryAsync(id, "reading", 0, long.MaxValue / 2)).Select(p => p.Ts).ToHashSet();
                var missing = acknowledged[id].Where(ts => !stored.Contains(ts)).ToList();
                Assert.True(missing.Count == 0, $"Device {id}: {missing.Count} acknowledged points missing after the restart, e.g. {string.Join(", ", missing.Take(5))}");
            }
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(dataDirectory);
        }
    }
}
