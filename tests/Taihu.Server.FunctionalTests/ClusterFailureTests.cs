using System.Collections.Concurrent;
using System.Diagnostics;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;
using Xunit.Abstractions;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A node of three is killed (SIGKILL) while devices connected to it publish telemetry at QoS 1: the devices
/// reconnect to another node with the same client ids and carry on, and every point any node acknowledged is in
/// the shared database, read through a third node's API.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterFailureTests(PostgresServer postgres, ITestOutputHelper log)
{
    /// <summary>Issue 16: sessions taken over in under 10 s after a node is lost.</summary>
    private static readonly TimeSpan s_takeoverDeadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task NodeKilledDuringQoS1Ingest_DevicesCarryOnElsewhere_EveryAcknowledgedPointIsStored()
    {
        const int Devices = 6;
        const int AcknowledgedBeforeKill = 300;
        const int AfterReconnect = 20;
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new ServerProcess?[3];
        try
        {
            nodes[0] = await ClusterSettings.StartNodeAsync(postgres, ClusterSettings.Node(postgres, database, "failure", LoopbackPort.Free()));
            var rest = await Task.WhenAll(
                ClusterSettings.StartNodeAsync(postgres, ClusterSettings.Node(postgres, database, "failure", LoopbackPort.Free())),
                ClusterSettings.StartNodeAsync(postgres, ClusterSettings.Node(postgres, database, "failure", LoopbackPort.Free())));
            (nodes[1], nodes[2]) = (rest[0], rest[1]);
            using var sysAdmin = await PlatformApi.SysAdminAsync(nodes[0]!);
            await sysAdmin.EventuallyAsync("/api/cluster/nodes", v => v["nodes"]!.AsArray().Count(n => (string?)n!["status"] == "Active") == 3);
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Failure");
            using var _ = admin;
            var devices = new List<(Guid Id, string Token)>();
            for (var i = 0; i < Devices; i++)
            {
                devices.Add(await admin.CreateDeviceAsync($"meter-{i}"));
            }

            var acknowledged = new ConcurrentDictionary<Guid, ConcurrentBag<long>>();
            var takeover = new ConcurrentBag<TimeSpan>();
            var enough = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var killed = Stopwatch.StartNew();
            var total = 0;
            var publishers = devices.Select(device => Task.Run(async () =>
            {
                var acked = acknowledged.GetOrAdd(device.Id, _ => []);
                var clientId = "meter-" + device.Id.ToString("N");
                var ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                await using (var client = await DeviceClient.ConnectAsync(nodes[1]!, device.Token, clientId: clientId))
                {
                    for (; ; ts++)
                    {
                        try
                        {
                            var result = await client.TryPublishAsync("v1/devices/me/telemetry", $"{{\"ts\":{ts},\"values\":{{\"reading\":{ts}}}}}", MqttQualityOfServiceLevel.AtLeastOnce);
                            if (!result.IsSuccess)
                            {
                                break;
                            }
                        }
                        catch (Exception)
                        {
                            break; // the node is gone: what it did not acknowledge may be lost.
                        }

                        acked.Add(ts);
                        if (Interlocked.Increment(ref total) == AcknowledgedBeforeKill)
                        {
                            enough.TrySetResult();
                        }
                    }
                }

                // As device firmware does: connect again, to the next address it knows, with the same client id.
                await using var again = await DeviceClient.ConnectAsync(nodes[2]!, device.Token, clientId: clientId);
                for (var n = 0; n < AfterReconnect; n++)
                {
                    ts++;
                    await again.PublishAsync("v1/devices/me/telemetry", $"{{\"ts\":{ts},\"values\":{{\"reading\":{ts}}}}}");
                    acked.Add(ts);
                    if (n == 0)
                    {
                        takeover.Add(killed.Elapsed);
                    }
                }
            })).ToArray();

            await enough.Task.WaitAsync(TimeSpan.FromSeconds(60));
            killed.Restart();
            await nodes[1]!.KillAsync();
            await Task.WhenAll(publishers).WaitAsync(TimeSpan.FromSeconds(60));
            var slowest = takeover.Max();
            log.WriteLine($"{Devices} devices acknowledged again on another node at most {slowest.TotalMilliseconds:F0} ms after the SIGKILL.");
            Assert.True(slowest < s_takeoverDeadline, $"A device waited {slowest.TotalSeconds:F1} s after the kill for its first acknowledgement on another node.");

            foreach (var (id, _) in devices)
            {
                var stored = (await admin.HistoryAsync(id, "reading", 0, long.MaxValue / 2)).Select(p => p.Ts).ToHashSet();
                var missing = acknowledged[id].Where(ts => !stored.Contains(ts)).ToList();
                Assert.True(missing.Count == 0, $"Device {id}: {missing.Count} of {acknowledged[id].Count} acknowledged points missing, e.g. {string.Join(", ", missing.Take(5))}");
            }
        }
        finally
        {
            foreach (var node in nodes)
            {
                if (node is not null)
                {
                    await node.DisposeAsync();
                }
            }

            await postgres.DropDatabaseAsync(database);
        }
    }
}
