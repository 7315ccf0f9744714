using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Client-side RPC answered by a webhook on a cluster of three real server processes (one PostgreSQL database): the
/// webhook is called by the node holding the event log's lease, and its answer reaches the device on another node,
/// over MQTT and over HTTP; a declined request is answered at once there too, not after the timeout.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterClientRpcTests(PostgresServer postgres)
{
    [Fact]
    public async Task WebhookCalledByTheLeaseHolder_AnswersRequestsWaitingOnTheOtherNodes()
    {
        await using var cluster = await TestCluster.StartAsync(postgres, "client-rpc", count: 3);
        var holder = await ClusterEventTests.LeaseHolderAsync(cluster.Nodes);
        var others = Enumerable.Range(0, cluster.Nodes.Count).Where(i => i != holder).Select(i => cluster.Nodes[i]).ToList();
        using var admin = await cluster.TenantAdminAsync("Client RPC across nodes");
        var log = new ReceiverLog { Reply = IntegrationRpcTests.WeatherService };
        await using var receiver = await WebhookReceiver.StartAsync(IntegrationRpcTests.Secret, log: log);
        await IntegrationRpcTests.CreateAsync(admin, receiver.Url, answerRpc: true);

        // Over MQTT, to a node that does not hold the lease.
        var name = "irrigator-" + Guid.NewGuid().ToString("N")[..8];
        var (_, token) = await admin.CreateDeviceAsync(name);
        await using (var device = await DeviceClient.ConnectAsync(others[0], token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/response/+");
            await device.PublishAsync("v1/devices/me/rpc/request/5", """{"method":"getWeather","params":{"city":"Wuxi"}}""");
            var reply = await device.NextAsync();
            Assert.Equal("v1/devices/me/rpc/response/5", reply.Topic);
            var weather = JsonNode.Parse(reply.ConvertPayloadToString())!;
            Assert.Equal(("Wuxi", 21.5), (weather["city"]!.GetValue<string>(), weather["temperature"]!.GetValue<double>()));

            // Declined by the webhook (200 without a body): the server's answer at once, not after the timeout.
            await IntegrationRpcTests.ExpectDeclinedAtOnceAsync(device);
        }

        // Over HTTP, to the third node.
        using var http = new HttpClient { BaseAddress = others[1].HttpBaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var answered = await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{token}/rpc", new StringContent("""{"method":"getWeather","params":{"city":"Huzhou"}}""")), HttpStatusCode.OK);
        Assert.Equal("Huzhou", answered["city"]!.GetValue<string>());

        // Each request reached the webhook from the lease holder, once.
        Assert.Equal(3, log.Snapshot().Where(e => e.Body["deviceName"]!.GetValue<string>() == name).DistinctBy(e => e.Body["id"]!.GetValue<string>()).Count());
    }
}
