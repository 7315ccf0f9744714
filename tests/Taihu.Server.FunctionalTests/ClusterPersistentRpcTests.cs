using System.Globalization;
using System.Net;
using MQTTnet;
using System.Text.Json.Nodes;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Persistent RPC across the nodes of a cluster (two real server processes on one PostgreSQL database, the device
/// on MQTTnet): a call made through one node reaches the device on the other, whether it is connected there at the
/// time or connects there later (a call sent and not acknowledged on one node is sent again when its device moves to
/// the other), and its states are read through either node.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterPersistentRpcTests(PostgresServer postgres)
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task PersistentCallThroughOneNode_IsSentByTheDevicesNode_NowOrWhenItConnects_AndEndsOnce()
    {
        await using var cluster = await TestCluster.StartAsync(postgres, "persistent-rpc");
        using var admin = await cluster.TenantAdminAsync("Persistent calls across nodes");
        // The same administrator's token, on node 1's API.
        using var admin1 = new PlatformApi(cluster.Nodes[1], admin.Token);
        var (id, token) = await admin.CreateDeviceAsync("water-station-3");

        // Connected to node 1 when the call is made through node 0: node 1's owner of the device sends it at once.
        await using (var device = await DeviceClient.ConnectAsync(cluster.Nodes[1], token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var first = await SubmitAsync(admin, id, "setInterval", 60);
            var command = await device.NextAsync();
            Assert.Equal("{\"method\":\"setInterval\",\"params\":60}", command.ConvertPayloadToString());
            await device.PublishAsync("v1/devices/me/rpc/response/" + command.Topic.Split('/')[^1], "{\"interval\":60}");
            var done = await admin.EventuallyAsync($"/api/rpc/persistent/{first}", c => (string?)c["status"] == "SUCCESSFUL");
            Assert.Equal(60, (int)done["response"]!["interval"]!);
        }

        // Connected nowhere (once node 1 has seen it go: it has written its disconnect time): stored through
        // node 0, sent by node 1 when the device connects there.
        await admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=lastDisconnectTime",
            node => node.AsArray().Count == 1);
        var second = await SubmitAsync(admin, id, "setInterval", 30);
        Assert.Equal("QUEUED", (string?)(await admin1.GetAsync($"/api/rpc/persistent/{second}"))["status"]);
        await using (var device = await DeviceClient.ConnectAsync(cluster.Nodes[1], token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var command = await device.NextAsync();
            Assert.Equal("{\"method\":\"setInterval\",\"params\":30}", command.ConvertPayloadToString());
            var requestId = command.Topic.Split('/')[^1];
            await device.PublishAsync("v1/devices/me/rpc/response/" + requestId, "{\"interval\":30}");
            await admin1.EventuallyAsync($"/api/rpc/persistent/{second}", c => (string?)c["status"] == "SUCCESSFUL");
        }

        // Node 0 stored the second call and held it: connecting to node 0 now must not send it again. The next
        // command the device gets there is a new call (made through node 1), with an id after the second's.
        await using (var device = await DeviceClient.ConnectAsync(cluster.Nodes[0], token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var third = await SubmitAsync(admin1, id, "reboot", 1);
            var command = await device.NextAsync();
            Assert.Equal("{\"method\":\"reboot\",\"params\":1}", command.ConvertPayloadToString());
            await device.PublishAsync("v1/devices/me/rpc/response/" + command.Topic.Split('/')[^1], "{\"ok\":true}");
            await admin.EventuallyAsync($"/api/rpc/persistent/{third}", c => (string?)c["status"] == "SUCCESSFUL");
        }

        // Each call ended once, with one SUCCESSFUL each in the device's list read through either node.
        var list = await admin1.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=10&page=0&sortProperty=requestId&sortOrder=ASC");
        var calls = list["data"]!.AsArray();
        Assert.Equal(3, calls.Count);
        Assert.All(calls, c => Assert.Equal("SUCCESSFUL", (string?)c!["status"]));
        var ids = calls.Select(c => (int)c!["request"]!["requestId"]!).ToArray();
        Assert.Equal(ids.Distinct().Count(), ids.Length);
        Assert.True(ids[0] < ids[1] && ids[1] < ids[2], $"request ids not in order: {string.Join(", ", ids)}");

        // A call node 1 sent and the device did not acknowledge before it dropped (as a device losing power): when
        // the device connects to node 0 instead, node 0 sends it again (a retry), though node 0 never held it.
        var (pumpId, pumpToken) = await admin.CreateDeviceAsync("pump-7");
        string firstTopic;
        using (var silent = new MqttClientFactory().CreateMqttClient())
        {
            var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            silent.ApplicationMessageReceivedAsync += e =>
            {
                e.AutoAcknowledge = false;
                received.TrySetResult(e.ApplicationMessage.Topic);
                return Task.CompletedTask;
            };
            await silent.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", cluster.Nodes[1].TcpPort).WithCredentials(pumpToken).Build());
            await silent.SubscribeAsync("v1/devices/me/rpc/request/+", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce);
            var start = await SubmitAsync(admin, pumpId, "start", 1, retries: 2);
            firstTopic = await received.Task.WaitAsync(Guard);
            Assert.Equal("SENT", (string?)(await admin.GetAsync($"/api/rpc/persistent/{start}"))["status"]);
        }

        await using (var device = await DeviceClient.ConnectAsync(cluster.Nodes[0], pumpToken))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var command = await device.NextAsync();
            Assert.Equal((firstTopic, "{\"method\":\"start\",\"params\":1}"), (command.Topic, command.ConvertPayloadToString()));
            await device.PublishAsync("v1/devices/me/rpc/response/" + command.Topic.Split('/')[^1], "{\"running\":true}");
            var pumpCalls = await admin.EventuallyAsync($"/api/rpc/persistent/device/{pumpId}?pageSize=10&page=0",
                l => l["data"]!.AsArray().Count == 1 && (string?)l["data"]![0]!["status"] == "SUCCESSFUL");
            Assert.Equal(2, (int)pumpCalls["data"]![0]!["attempts"]!);
        }
    }

    [Fact]
    public async Task ADevicesCalls_HaveOneOwnerClusterWide_AnAnswerGivenAfterTheDeviceMoved_EndsTheCall_AndIdsNeverRepeat()
    {
        await using var cluster = await TestCluster.StartAsync(postgres, "rpc-owner");
        using var admin = await cluster.TenantAdminAsync("One RPC owner per device");
        using var admin1 = new PlatformApi(cluster.Nodes[1], admin.Token);
        var (id, token) = await admin.CreateDeviceAsync("meter-12");

        // A two-way call through node 0 reaches the device on node 1, whose connection drops before it answers.
        Task<HttpResponseMessage> call;
        string lightId;
        await using (var device = await DeviceClient.ConnectAsync(cluster.Nodes[1], token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            call = admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "readMeter", timeout = 60_000 });
            lightId = (await device.NextAsync()).Topic.Split('/')[^1];
        }

        // It comes back on node 0. A persistent call made through node 1 meanwhile gets the next id, not the id of
        // the call still waiting for its answer.
        await using (var device = await DeviceClient.ConnectAsync(cluster.Nodes[0], token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var persistent = await SubmitAsync(admin1, id, "setInterval", 15);
            var command = await device.NextAsync();
            var persistentId = command.Topic.Split('/')[^1];
            Assert.Equal("{\"method\":\"setInterval\",\"params\":15}", command.ConvertPayloadToString());
            Assert.True(int.Parse(persistentId, CultureInfo.InvariantCulture) > int.Parse(lightId, CultureInfo.InvariantCulture), $"persistent call got id {persistentId} after {lightId}");

            // The answer to the first call, given on node 0, is what its caller on node 0's API gets.
            await device.PublishAsync("v1/devices/me/rpc/response/" + lightId, "{\"kWh\":1234.5}");
            var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
            Assert.Equal(1234.5, (double)reply["kWh"]!);
            await device.PublishAsync("v1/devices/me/rpc/response/" + persistentId, "{\"interval\":15}");
            var done = await admin.EventuallyAsync($"/api/rpc/persistent/{persistent}", c => (string?)c["status"] == "SUCCESSFUL");
            Assert.Equal(15, (int)done["response"]!["interval"]!);
        }
    }

    private static async Task<string> SubmitAsync(PlatformApi admin, Guid deviceId, string method, int value, int retries = 0)
    {
        var response = await admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{deviceId}",
            new { method, @params = value, persistent = true, retries, expirationTime = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds() });
        var body = await PlatformApi.ExpectAsync(response, HttpStatusCode.OK);
        return (string)body["rpcId"]!;
    }
}
