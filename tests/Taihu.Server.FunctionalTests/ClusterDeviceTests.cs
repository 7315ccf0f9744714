using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The device platform across the nodes of a cluster: a REST call taken by one node reaches a device connected to
/// another (two real server processes on one PostgreSQL database, the device on MQTTnet).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterDeviceTests(PostgresServer postgres)
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RpcThroughOneNode_ReachesTheDeviceOnAnother_AndNotConnectedAnywhereIsStill504()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new ServerProcess?[2];
        try
        {
            nodes[0] = await ClusterSettings.StartNodeAsync(postgres, ClusterSettings.Node(postgres, database, "devices", LoopbackPort.Free()));
            nodes[1] = await ClusterSettings.StartNodeAsync(postgres, ClusterSettings.Node(postgres, database, "devices", LoopbackPort.Free()));
            using var sysAdmin = await PlatformApi.SysAdminAsync(nodes[0]!);
            await sysAdmin.EventuallyAsync("/api/cluster/nodes", v => v["nodes"]!.AsArray().Count(n => (string?)n!["status"] == "Active") == 2);
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Devices across nodes");
            using var _ = admin;
            var (id, token) = await admin.CreateDeviceAsync("street-light-7");

            await using (var device = await DeviceClient.ConnectAsync(nodes[1]!, token))
            {
                await device.SubscribeAsync("v1/devices/me/rpc/request/+");

                // Two-way through node 0; the device is on node 1 and answers there.
                var call = admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getState", @params = new { lamp = 2 } });
                var command = await device.NextAsync();
                var body = JsonNode.Parse(command.ConvertPayloadToString())!;
                Assert.Equal("getState", (string?)body["method"]);
                Assert.Equal(2, (int)body["params"]!["lamp"]!);
                await device.PublishAsync("v1/devices/me/rpc/response/" + command.Topic.Split('/')[^1], "{\"on\":true,\"level\":80}");
                var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
                Assert.Equal(80, (int)reply["level"]!);

                // One-way through node 0: 200 once the device on node 1 has it.
                var oneWay = admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/oneway/{id}", new { method = "setLevel", @params = 40 });
                var set = await device.NextAsync();
                Assert.Equal("{\"method\":\"setLevel\",\"params\":40}", set.ConvertPayloadToString());
                Assert.Equal(HttpStatusCode.OK, (await oneWay.WaitAsync(Guard)).StatusCode);
            }

            // Connected nowhere: each path answers as on one server.
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getState" }), HttpStatusCode.GatewayTimeout);
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "getState" }), HttpStatusCode.Conflict);
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

    [Fact]
    public async Task TheRpcOwnersNodeKilledWhileACallWaits_TheCallerGets503AtOnce_AndTheNextCallIsAnswered()
    {
        // Node 0 takes the calls, the device is on node 1, and its RPC owner on node 2, which is killed.
        await using var cluster = await TestCluster.StartAsync(postgres, "rpc-owner-killed", count: 3);
        var nodes = cluster.Nodes;
        using var admin = await cluster.TenantAdminAsync("Owner killed");
        using var adminOn2 = new PlatformApi(nodes[2], admin.Token);
        var (id, token) = await admin.CreateDeviceAsync("pump-3");

        // The owner is placed on the node that first needs it: node 2, by a call made there before the device
        // connects anywhere.
        await PlatformApi.ExpectProblemAsync(await adminOn2.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "getState" }), HttpStatusCode.Conflict);

        await using var device = await DeviceClient.ConnectAsync(nodes[1], token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        // A call through node 0 with a minute to wait; the device has it and does not answer; node 2 dies.
        var call = admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "getState", timeout = 60_000 });
        var command = await device.NextAsync();
        Assert.Contains("getState", command.ConvertPayloadToString(), StringComparison.Ordinal);
        Assert.False(call.IsCompleted);
        var clock = Stopwatch.StartNew();
        await nodes[2].KillAsync();
        var problem = await PlatformApi.ExpectProblemAsync(await call.WaitAsync(Guard), HttpStatusCode.ServiceUnavailable);
        var after = clock.Elapsed;
        Assert.Contains("could not be reached", (string?)problem["message"], StringComparison.Ordinal);
        Assert.True(after < TimeSpan.FromSeconds(20), $"The caller waited {after.TotalSeconds:F1} s after the owner's node was killed.");

        // The owner is activated again on a living node: the next call through node 0 is answered.
        var next = admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "getLevel" });
        MqttApplicationMessage again;
        do
        {
            again = await device.NextAsync();
        }
        while (!again.ConvertPayloadToString().Contains("getLevel", StringComparison.Ordinal));

        await device.PublishAsync("v1/devices/me/rpc/response/" + again.Topic.Split('/')[^1], "{\"level\":55}");
        var reply = await PlatformApi.ExpectAsync(await next.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(55, (int)reply["level"]!);
    }
}
