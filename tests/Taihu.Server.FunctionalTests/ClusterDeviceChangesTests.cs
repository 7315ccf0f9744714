using System.Net;
using MQTTnet;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A device changed through one node of a cluster while it is connected to another: new credentials or its
/// deletion close its connection there too, as on one server (two real server processes on one PostgreSQL
/// database, the devices on MQTTnet).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterDeviceChangesTests(PostgresServer postgres)
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task NewCredentialsOrDeletion_ThroughOneNode_CloseTheDevicesConnectionOnAnother()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new ServerProcess?[2];
        try
        {
            nodes[0] = await ServerProcess.StartAsync(ClusterSettings.Node(postgres, database, "device-changes", LoopbackPort.Free()));
            nodes[1] = await ServerProcess.StartAsync(ClusterSettings.Node(postgres, database, "device-changes", LoopbackPort.Free()));
            using var sysAdmin = await PlatformApi.SysAdminAsync(nodes[0]!);
            await sysAdmin.EventuallyAsync("/api/cluster/nodes", v => v["nodes"]!.AsArray().Count(n => (string?)n!["status"] == "Active") == 2);
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Device changes across nodes");
            using var adminOnNode0 = admin;

            // New credentials through node 0: the device on node 1 is closed (not authorized), the old token refused
            // there, the new one accepted.
            var (rotatedId, oldToken) = await admin.CreateDeviceAsync("meter-rotated");
            await using (var device = await DeviceClient.ConnectAsync(nodes[1]!, oldToken))
            {
                var newToken = "rotated-" + Guid.NewGuid().ToString("N");
                await admin.PostAsync("/api/device/credentials", new { deviceId = new { id = rotatedId, entityType = "DEVICE" }, credentialsType = "ACCESS_TOKEN", credentialsId = newToken });
                var closed = await device.Disconnected.WaitAsync(Guard);
                Assert.Equal(MqttClientDisconnectReason.NotAuthorized, closed.Reason);
                var (old, ack) = await RawMqttClient.ConnectWithCredentialsAsync(nodes[1]!.TcpPort, "old", 5, oldToken, null);
                await old.DisposeAsync();
                Assert.Equal(0x86, ack.Body[1]);
                await using var renewed = await DeviceClient.ConnectAsync(nodes[1]!, newToken);
            }

            // Deleted through node 0: the device on node 1 is closed.
            var (deletedId, token) = await admin.CreateDeviceAsync("meter-deleted");
            await using (var device = await DeviceClient.ConnectAsync(nodes[1]!, token))
            {
                await PlatformApi.ExpectAsync(await admin.SendAsync(HttpMethod.Delete, $"/api/device/{deletedId}"), HttpStatusCode.OK);
                Assert.Equal(MqttClientDisconnectReason.NotAuthorized, (await device.Disconnected.WaitAsync(Guard)).Reason);
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
