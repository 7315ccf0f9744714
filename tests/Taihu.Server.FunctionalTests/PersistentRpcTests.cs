using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Persistent RPC: <c>{"rpcId"}</c> at once, ThingsBoard's states, sent in order when the device can be reached,
/// DELIVERED on the device's PUBACK (QoS 1) or when written (QoS 0, HTTP), retries, and a restart in between.
/// </summary>
public sealed class PersistentRpcTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task QueuedWhileOffline_SentInOrderOnSubscribe_DeliveredOnPuback_SuccessfulOnReply()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("persistent-" + Guid.NewGuid().ToString("N")[..8]);
        var expiration = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeMilliseconds();
        var ids = new List<Guid>();
        foreach (var method in new[] { "first", "second", "third" })
        {
            ids.Add(await SubmitAsync(fixture.Admin, $"/api/rpc/twoway/{id}", new { method, @params = new { n = method.Length }, persistent = true, expirationTime = expiration, additionalInfo = new { ticket = 7 } }));
        }

        ids.Add(await SubmitAsync(fixture.Admin, $"/api/rpc/oneway/{id}", new { method = "fourth", persistent = true, expirationTime = expiration }));
        var queued = await fixture.Admin.GetAsync($"/api/rpc/persistent/{ids[0]}");
        Assert.Equal("QUEUED", queued["status"]!.GetValue<string>());
        Assert.Equal("first", queued["request"]!["body"]!["method"]!.GetValue<string>());
        Assert.Equal(7, queued["additionalInfo"]!["ticket"]!.GetValue<int>());
        Assert.Equal(expiration, queued["expirationTime"]!.GetValue<long>());

        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");
        var received = new List<MqttApplicationMessage>();
        for (var i = 0; i < 4; i++)
        {
            received.Add(await device.NextAsync());
        }

        Assert.Equal(["first", "second", "third", "fourth"], received.Select(m => JsonNode.Parse(m.ConvertPayloadToString())!["method"]!.GetValue<string>()));
        Assert.All(received, m => Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, m.QualityOfServiceLevel));

        // MQTTnet acknowledged each: two-way calls are DELIVERED, the one-way call is done.
        await WaitForStatusAsync(ids[3], "SUCCESSFUL");
        await WaitForStatusAsync(ids[0], "DELIVERED");

        await device.PublishAsync("v1/devices/me/rpc/response/" + received[0].Topic.Split('/')[^1], "{\"done\":1}");
        await device.PublishAsync("v1/devices/me/rpc/response/" + received[1].Topic.Split('/')[^1], "{\"done\":2}");
        var first = await WaitForStatusAsync(ids[0], "SUCCESSFUL");
        Assert.Equal(1, first["response"]!["done"]!.GetValue<int>());
        Assert.Equal(1, first["attempts"]!.GetValue<int>());
        await WaitForStatusAsync(ids[1], "SUCCESSFUL");

        // Paged, filtered by status, sorted.
        var page = await fixture.Admin.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=2&page=0&sortProperty=createdTime&sortOrder=ASC");
        Assert.Equal(4, page["totalElements"]!.GetValue<long>());
        Assert.True(page["hasNext"]!.GetValue<bool>());
        Assert.Equal([ids[0], ids[1]], page["data"]!.AsArray().Select(c => Guid.Parse(c!["id"]!["id"]!.GetValue<string>())));
        var done = await fixture.Admin.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=SUCCESSFUL&sortProperty=createdTime&sortOrder=DESC");
        Assert.Equal([ids[3], ids[1], ids[0]], done["data"]!.AsArray().Select(c => Guid.Parse(c!["id"]!["id"]!.GetValue<string>())));
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=LOST"), HttpStatusCode.BadRequest);

        // Deleted: gone, and a late reply to it changes nothing.
        await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/rpc/persistent/{ids[2]}"), HttpStatusCode.OK);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/rpc/persistent/{ids[2]}"), HttpStatusCode.NotFound);
        await device.PublishAsync("v1/devices/me/rpc/response/" + received[2].Topic.Split('/')[^1], "{\"done\":3}");

        // Every call and every change of state is in the audit log.
        var audit = await fixture.Admin.GetAsync("/api/audit/logs?pageSize=1000&page=0");
        var forFirst = audit["data"]!.AsArray().Where(e => e!["entityId"]?["id"]?.GetValue<string>() == ids[0].ToString()).Select(e => e!["actionType"]!.GetValue<string>()).Reverse();
        Assert.Equal(["RPC_QUEUED", "RPC_SENT", "RPC_DELIVERED", "RPC_SUCCESSFUL"], forFirst);
        Assert.Contains(audit["data"]!.AsArray(), e => e!["actionType"]!.GetValue<string>() == "RPC_DELETED" && e["entityId"]?["id"]?.GetValue<string>() == ids[2].ToString());
    }

    [Fact]
    public async Task QoS0Subscription_IsDeliveredWhenWritten_AndHttpLongPollTakesPersistentCalls()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("persistent-qos0-" + Guid.NewGuid().ToString("N")[..8]);
        var call = await SubmitAsync(fixture.Admin, $"/api/rpc/twoway/{id}", new { method = "atMostOnce", persistent = true, timeout = 60_000 });
        await using (var device = await DeviceClient.ConnectAsync(fixture.Server, token))
        {
            await device.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtMostOnce).Build());
            var message = await device.NextAsync();
            Assert.Equal(MqttQualityOfServiceLevel.AtMostOnce, message.QualityOfServiceLevel);
            await WaitForStatusAsync(call, "DELIVERED");
        }

        // Over HTTP: the poll takes what waits, in order.
        var (httpId, httpToken) = await fixture.Admin.CreateDeviceAsync("persistent-http-" + Guid.NewGuid().ToString("N")[..8]);
        var a = await SubmitAsync(fixture.Admin, $"/api/rpc/twoway/{httpId}", new { method = "a", persistent = true, timeout = 60_000 });
        var b = await SubmitAsync(fixture.Admin, $"/api/rpc/oneway/{httpId}", new { method = "b", persistent = true, timeout = 60_000 });
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress, Timeout = Guard };
        var first = await PlatformApi.ExpectAsync(await http.GetAsync($"/api/v1/{httpToken}/rpc?timeout=20000"), HttpStatusCode.OK);
        Assert.Equal("a", first["method"]!.GetValue<string>());
        await WaitForStatusAsync(a, "DELIVERED");
        var second = await PlatformApi.ExpectAsync(await http.GetAsync($"/api/v1/{httpToken}/rpc?timeout=20000"), HttpStatusCode.OK);
        Assert.Equal("b", second["method"]!.GetValue<string>());
        await WaitForStatusAsync(b, "SUCCESSFUL");
        await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{httpToken}/rpc/{first["id"]!.GetValue<int>()}", new StringContent("\"fine\"")), HttpStatusCode.OK);
        var answered = await WaitForStatusAsync(a, "SUCCESSFUL");
        Assert.Equal("fine", answered["response"]!.GetValue<string>());
    }

    [Fact]
    public async Task UnacknowledgedCall_IsResentAfterAReconnect_UntilItsRetriesAreUsedUp()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("persistent-retry-" + Guid.NewGuid().ToString("N")[..8]);
        var once = await SubmitAsync(fixture.Admin, $"/api/rpc/oneway/{id}", new { method = "once", persistent = true, retries = 1, timeout = 60_000 });

        // Received, never acknowledged, then the connection drops: SENT still, one retry left.
        var first = await SilentDevice.ConnectAndReceiveAsync(fixture.Server, token);
        Assert.Equal("once", first.Method);
        await WaitForStatusAsync(once, "SENT");

        // Resent on the next connection (attempt 2); this one acknowledges.
        await using (var device = await DeviceClient.ConnectAsync(fixture.Server, token))
        {
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var again = await device.NextAsync();
            Assert.Equal("once", JsonNode.Parse(again.ConvertPayloadToString())!["method"]!.GetValue<string>());
            var done = await WaitForStatusAsync(once, "SUCCESSFUL");
            Assert.Equal(2, done["attempts"]!.GetValue<int>());
        }

        // No retries: the first lost connection fails it.
        // Made while the device is connected, so that it is sent on that connection (not on the one just closed).
        var never = Guid.Empty;
        var lost = await SilentDevice.ConnectAndReceiveAsync(fixture.Server, token,
            async () => never = await SubmitAsync(fixture.Admin, $"/api/rpc/oneway/{id}", new { method = "never", persistent = true, retries = 0, timeout = 60_000 }));
        Assert.Equal("never", lost.Method);
        var failed = await WaitForStatusAsync(never, "FAILED");
        Assert.Equal(1, failed["attempts"]!.GetValue<int>());
    }

    [Fact]
    public async Task CallsForADeviceBehindAGateway_WaitWhileItIsAway_AndGoOutWhenTheGatewayReportsIt()
    {
        var (_, gatewayToken) = await fixture.Admin.CreateDeviceAsync("persistent-gateway-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        var child = "Pump " + Guid.NewGuid().ToString("N")[..6];
        await using (var gateway = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken))
        {
            // The gateway creates the device, then reports it gone.
            await gateway.PublishAsync("v1/gateway/connect", $"{{\"device\":\"{child}\"}}");
            await gateway.PublishAsync("v1/gateway/disconnect", $"{{\"device\":\"{child}\"}}");
        }

        var childId = Guid.Parse((await fixture.Admin.GetAsync($"/api/tenant/devices/{Uri.EscapeDataString(child)}"))["id"]!["id"]!.GetValue<string>());
        var call = await SubmitAsync(fixture.Admin, $"/api/rpc/twoway/{childId}", new { method = "start", persistent = true, timeout = 60_000 });
        Assert.Equal("QUEUED", (await fixture.Admin.GetAsync($"/api/rpc/persistent/{call}"))["status"]!.GetValue<string>());

        await using (var gateway = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken))
        {
            await gateway.SubscribeAsync("v1/gateway/rpc");
            await gateway.PublishAsync("v1/gateway/connect", $"{{\"device\":\"{child}\"}}");
            var command = JsonNode.Parse((await gateway.NextAsync()).ConvertPayloadToString())!;
            Assert.Equal((child, "start"), (command["device"]!.GetValue<string>(), command["data"]!["method"]!.GetValue<string>()));
            await WaitForStatusAsync(call, "DELIVERED");
            await gateway.PublishAsync("v1/gateway/rpc", $"{{\"device\":\"{child}\",\"id\":{command["data"]!["id"]!.GetValue<int>()},\"data\":{{\"running\":true}}}}");
            var done = await WaitForStatusAsync(call, "SUCCESSFUL");
            Assert.True(done["response"]!["running"]!.GetValue<bool>());
        }
    }

    [Fact]
    public async Task QueuedCalls_SurviveARestart_AndGoOutInOrder()
    {
        var dataDirectory = ServerProcess.NewDataDirectory();
        try
        {
            Guid deviceId;
            string token;
            var ids = new List<Guid>();
            await using (var server = await ServerProcess.StartAsync(dataDirectory: dataDirectory))
            {
                using var sysAdmin = await PlatformApi.SysAdminAsync(server);
                var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Restart " + Guid.NewGuid().ToString("N")[..8], AdminEmail, "restart-admin-pw");
                using (admin)
                {
                    (deviceId, token) = await admin.CreateDeviceAsync("persistent-restart");
                    var expiration = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeMilliseconds();
                    for (var i = 1; i <= 3; i++)
                    {
                        ids.Add(await SubmitAsync(admin, $"/api/rpc/twoway/{deviceId}", new { method = "step" + i, persistent = true, expirationTime = expiration }));
                    }
                }

                await server.SignalAsync("TERM");
                Assert.Equal(0, await server.WaitForExitAsync());
            }

            await using var restarted = await ServerProcess.StartAsync(dataDirectory: dataDirectory);
            await using var device = await DeviceClient.ConnectAsync(restarted, token);
            await device.SubscribeAsync("v1/devices/me/rpc/request/+");
            var methods = new List<string>();
            var requestIds = new List<int>();
            for (var i = 0; i < 3; i++)
            {
                var message = await device.NextAsync();
                methods.Add(JsonNode.Parse(message.ConvertPayloadToString())!["method"]!.GetValue<string>());
                requestIds.Add(int.Parse(message.Topic.Split('/')[^1], System.Globalization.CultureInfo.InvariantCulture));
            }

            Assert.Equal(["step1", "step2", "step3"], methods);
            Assert.Equal([1, 2, 3], requestIds);
            await device.PublishAsync("v1/devices/me/rpc/response/2", "{\"ok\":true}");
            using var api = new PlatformApi(restarted);
            api.Token = await api.LoginAsync(AdminEmail, "restart-admin-pw");
            var answered = await WaitForStatusAsync(ids[1], "SUCCESSFUL", api);
            Assert.True(answered["response"]!["ok"]!.GetValue<bool>());
            await WaitForStatusAsync(ids[0], "DELIVERED", api);
            var all = await api.GetAsync($"/api/rpc/persistent/device/{deviceId}?pageSize=10&page=0&sortProperty=createdTime&sortOrder=ASC");
            Assert.Equal(ids, all["data"]!.AsArray().Select(c => Guid.Parse(c!["id"]!["id"]!.GetValue<string>())));
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(dataDirectory);
        }
    }

    private const string AdminEmail = "restart-admin@example.com";

    private static async Task<Guid> SubmitAsync(PlatformApi api, string path, object body)
    {
        var response = await PlatformApi.ExpectAsync(await api.SendAsync(HttpMethod.Post, path, body), HttpStatusCode.OK);
        return Guid.Parse(response["rpcId"]!.GetValue<string>());
    }

    /// <summary>
    /// Reads the call until it is in <paramref name="status"/>: the server moves it in the background (on a PUBACK,
    /// a reply, a lost connection), and this GET is the only way a client sees that. Bounded by the guard.
    /// </summary>
    private async Task<JsonNode> WaitForStatusAsync(Guid rpcId, string status, PlatformApi? api = null)
    {
        api ??= fixture.Admin;
        var watch = Stopwatch.StartNew();
        JsonNode call;
        do
        {
            call = await api.GetAsync($"/api/rpc/persistent/{rpcId}");
            if (call["status"]!.GetValue<string>() == status)
            {
                return call;
            }
        }
        while (watch.Elapsed < Guard);

        throw new TimeoutException($"RPC {rpcId} is {call["status"]}, not {status}, after {Guard.TotalSeconds} s.");
    }

    /// <summary>A device that receives a command without acknowledging it, then loses its connection.</summary>
    private static class SilentDevice
    {
        public static async Task<(string Method, int RequestId)> ConnectAndReceiveAsync(ServerProcess server, string token, Func<Task>? subscribed = null)
        {
            using var client = new MqttClientFactory().CreateMqttClient();
            var received = new TaskCompletionSource<MqttApplicationMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
            client.ApplicationMessageReceivedAsync += e =>
            {
                e.AutoAcknowledge = false;
                received.TrySetResult(e.ApplicationMessage);
                return Task.CompletedTask;
            };
            await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", server.TcpPort).WithClientId("silent-" + Guid.NewGuid().ToString("N"))
                .WithCredentials(token).Build()).WaitAsync(Guard);
            await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Guard);
            if (subscribed is not null)
            {
                await subscribed();
            }

            var message = await received.Task.WaitAsync(Guard);
            // Gone without a PUBACK and without DISCONNECT, as a device that loses power.
            client.Dispose();
            return (JsonNode.Parse(message.ConvertPayloadToString())!["method"]!.GetValue<string>(), int.Parse(message.Topic.Split('/')[^1], System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}
