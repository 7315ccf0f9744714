using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Client-side RPC requests as <c>RPC_REQUEST</c> events, answered by a webhook with <c>answerRpc</c>: the device
/// (MQTTnet, <c>mosquitto_rr</c>, the HTTP device API) gets the webhook's body as its reply; a webhook that answers
/// without a body leaves the answer to the server; a webhook that fails leaves the device with the server's answer
/// after <c>Integrations:ClientRpcTimeoutMs</c>.
/// </summary>
public sealed class IntegrationRpcTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    internal const string Secret = "rpc-webhook-secret";

    [Fact]
    public async Task Webhook_AnswersClientSideRpc_OverMqttAndHttp_AndSeesEveryRequestSigned()
    {
        var log = new ReceiverLog { Reply = WeatherService };
        await using var receiver = await WebhookReceiver.StartAsync(Secret, log: log);
        var name = "irrigator-" + Guid.NewGuid().ToString("N")[..8];
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync(name);
        var integration = await CreateAsync(fixture.Admin, receiver.Url, answerRpc: true);
        try
        {
            Assert.True((await fixture.Admin.GetAsync($"/api/integration/{integration}"))["configuration"]!["answerRpc"]!.GetValue<bool>());
            await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
            await device.SubscribeAsync("v1/devices/me/rpc/response/+");

            // Answered by the webhook, on the response topic of the request's id.
            await device.PublishAsync("v1/devices/me/rpc/request/5", """{"method":"getWeather","params":{"city":"Wuxi"}}""");
            var reply = await device.NextAsync();
            Assert.Equal("v1/devices/me/rpc/response/5", reply.Topic);
            var weather = JsonNode.Parse(reply.ConvertPayloadToString())!;
            Assert.Equal("Wuxi", weather["city"]!.GetValue<string>());
            Assert.Equal(21.5, weather["temperature"]!.GetValue<double>());

            var request = log.Snapshot().Single(e => e.Body["deviceName"]!.GetValue<string>() == name);
            Assert.True(request.SignatureValid);
            Assert.Equal("RPC_REQUEST", request.Body["type"]!.GetValue<string>());
            Assert.Equal(deviceId.ToString(), request.Body["deviceId"]!.GetValue<string>());
            var data = request.Body["data"]!;
            Assert.Equal("5", data["requestId"]!.GetValue<string>());
            Assert.Equal("getWeather", data["method"]!.GetValue<string>());
            Assert.Equal("Wuxi", data["params"]!["city"]!.GetValue<string>());
            Assert.True(data["expirationTime"]!.GetValue<long>() > DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

            await ExpectDeclinedAtOnceAsync(device);

            // getCurrentTime stays the server's; the request is still sent to the webhook as an event.
            await device.PublishAsync("v1/devices/me/rpc/request/7", """{"method":"getCurrentTime","params":{}}""");
            var time = await device.NextAsync();
            Assert.Equal("v1/devices/me/rpc/response/7", time.Topic);
            Assert.True(JsonNode.Parse(time.ConvertPayloadToString())!["time"]!.GetValue<long>() > 1_700_000_000_000);
            await log.WaitAsync(events => events.Any(e => e.Body["deviceName"]!.GetValue<string>() == name && e.Body["data"]!["method"]!.GetValue<string>() == "getCurrentTime"));

            // A request that is not one is answered by the server and is no event.
            await device.PublishAsync("v1/devices/me/rpc/request/8", "not json");
            Assert.Contains("not valid JSON", JsonNode.Parse((await device.NextAsync()).ConvertPayloadToString())!["error"]!.GetValue<string>(), StringComparison.Ordinal);

            // mosquitto_rr, a client we did not write.
            var (exit, output) = await RunAsync("/usr/bin/mosquitto_rr", "-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture),
                "-u", token, "-t", "v1/devices/me/rpc/request/9", "-e", "v1/devices/me/rpc/response/9", "-m", """{"method":"getWeather","params":{"city":"Suzhou"}}""", "-W", "20");
            Assert.True(exit == 0, output);
            Assert.Equal("Suzhou", JsonNode.Parse(output)!["city"]!.GetValue<string>());

            // The HTTP device API: the answer is the response.
            using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
            var answered = await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{token}/rpc", new StringContent("""{"method":"getWeather","params":{"city":"Huzhou"}}""")), HttpStatusCode.OK);
            Assert.Equal("Huzhou", answered["city"]!.GetValue<string>());
            var httpEvent = log.Snapshot().Last(e => e.Body["deviceName"]!.GetValue<string>() == name);
            Assert.Null(httpEvent.Body["data"]!["requestId"]);

            Assert.Equal(["getWeather", "openDoor", "getCurrentTime", "getWeather", "getWeather"], Dedupe(log, name));
        }
        finally
        {
            await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{integration}");
        }
    }

    [Fact]
    public async Task Webhook_ThatFails_LeavesTheDeviceWithTheServersAnswer_AfterTheTimeout_AndTheEventIsStillDelivered()
    {
        await using var server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Integrations__ClientRpcTimeoutMs"] = "1500" });
        using var sysAdmin = await PlatformApi.SysAdminAsync(server);
        var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Rpc timeout " + Guid.NewGuid().ToString("N")[..6]);
        using (admin)
        {
            var log = new ReceiverLog { Status = 503, Reply = WeatherService };
            await using var receiver = await WebhookReceiver.StartAsync(Secret, log: log);
            var (_, token) = await admin.CreateDeviceAsync("gate-" + Guid.NewGuid().ToString("N")[..8]);
            var integration = await CreateAsync(admin, receiver.Url, answerRpc: true);
            await using var device = await DeviceClient.ConnectAsync(server, token);
            await device.SubscribeAsync("v1/devices/me/rpc/response/+");

            var clock = Stopwatch.StartNew();
            await device.PublishAsync("v1/devices/me/rpc/request/1", """{"method":"getWeather","params":{"city":"Wuxi"}}""");
            var reply = await device.NextAsync();
            Assert.Equal("v1/devices/me/rpc/response/1", reply.Topic);
            Assert.Contains("Unknown method: getWeather.", JsonNode.Parse(reply.ConvertPayloadToString())!["error"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(1400), $"Answered after {clock.ElapsedMilliseconds} ms, before the timeout.");
            await log.WaitAsync(events => events.Count > 0);

            // The webhook recovers: the request, an event like any other, is delivered; its late answer goes nowhere.
            log.Status = 200;
            await log.WaitAsync(events => events.Count > 1);
            Assert.Single(log.Snapshot().Select(e => e.Body["id"]!.GetValue<string>()).Distinct());
            Assert.False(device.TryTake(out _), "The device got a second answer.");
            var stats = await admin.GetAsync($"/api/integration/{integration}/stats");
            Assert.True(stats["failed"]!.GetValue<long>() >= 1);
        }
    }

    [Fact]
    public async Task AnswerRpc_IsOnlyForWebhooks()
    {
        var problem = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/integration",
            new { name = "x", type = "MQTT", configuration = new { topic = "a/{deviceName}", answerRpc = true } }), HttpStatusCode.BadRequest);
        Assert.Contains("configuration.answerRpc", problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    /// <summary>What the city's weather service answers: the weather of params.city, and nothing for other methods.</summary>
    /// <summary>
    /// A method the webhook does not serve: it answers 200 without a body, and the device gets the server's answer
    /// at once instead of waiting for the timeout (60 s here).
    /// </summary>
    internal static async Task ExpectDeclinedAtOnceAsync(DeviceClient device)
    {
        var clock = Stopwatch.StartNew();
        await device.PublishAsync("v1/devices/me/rpc/request/6", """{"method":"openDoor","params":{}}""");
        var declined = await device.NextAsync();
        Assert.Equal("v1/devices/me/rpc/response/6", declined.Topic);
        Assert.Contains("Unknown method: openDoor.", JsonNode.Parse(declined.ConvertPayloadToString())!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "A declined request waited for the timeout.");
    }

    internal static string? WeatherService(JsonNode body) =>
        body["type"]?.GetValue<string>() == "RPC_REQUEST" && body["data"]?["method"]?.GetValue<string>() == "getWeather"
            ? new JsonObject { ["city"] = body["data"]!["params"]!["city"]!.GetValue<string>(), ["temperature"] = 21.5 }.ToJsonString()
            : null;

    /// <summary>The methods in first-seen order of each event id (a retried POST is the same event).</summary>
    private static List<string> Dedupe(ReceiverLog log, string name) =>
        [.. log.Snapshot().Where(e => e.Body["deviceName"]!.GetValue<string>() == name).DistinctBy(e => e.Body["id"]!.GetValue<string>()).Select(e => e.Body["data"]!["method"]!.GetValue<string>())];

    internal static async Task<string> CreateAsync(PlatformApi admin, string url, bool answerRpc)
    {
        var created = await admin.PostAsync("/api/integration", new
        {
            name = "rpc-" + Guid.NewGuid().ToString("N")[..8],
            type = "HTTP",
            messageTypes = new[] { "RPC_REQUEST" },
            configuration = new { url, secret = Secret, answerRpc, requestTimeoutMs = 5000 },
        });
        return created["id"]!["id"]!.GetValue<string>();
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return (process.ExitCode, (await stdout) + (await stderr));
    }
}
