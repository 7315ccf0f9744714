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
        await using var cluster = await TestCluster.StartAsync(postgres, "device-changes");
        var node1 = cluster.Nodes[1];
        using var admin = await cluster.TenantAdminAsync("Device changes across nodes");

        // New credentials through node 0: the device on node 1 is closed (not authorized), the old token refused
        // there, the new one accepted.
        var (rotatedId, oldToken) = await admin.CreateDeviceAsync("meter-rotated");
        await using (var device = await DeviceClient.ConnectAsync(node1, oldToken))
        {
            var newToken = "rotated-" + Guid.NewGuid().ToString("N");
            await admin.PostAsync("/api/device/credentials", new { deviceId = new { id = rotatedId, entityType = "DEVICE" }, credentialsType = "ACCESS_TOKEN", credentialsId = newToken });
            var closed = await device.Disconnected.WaitAsync(Guard);
            Assert.Equal(MqttClientDisconnectReason.NotAuthorized, closed.Reason);
            var (old, ack) = await RawMqttClient.ConnectWithCredentialsAsync(node1.TcpPort, "old", 5, oldToken, null);
            await old.DisposeAsync();
            Assert.Equal(0x86, ack.Body[1]);
            await using var renewed = await DeviceClient.ConnectAsync(node1, newToken);
        }

        // Deleted through node 0: the device on node 1 is closed.
        var (deletedId, token) = await admin.CreateDeviceAsync("meter-deleted");
        await using (var device = await DeviceClient.ConnectAsync(node1, token))
        {
            await PlatformApi.ExpectAsync(await admin.SendAsync(HttpMethod.Delete, $"/api/device/{deletedId}"), HttpStatusCode.OK);
            Assert.Equal(MqttClientDisconnectReason.NotAuthorized, (await device.Disconnected.WaitAsync(Guard)).Reason);
        }
    }
}
