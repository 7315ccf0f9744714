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
}
