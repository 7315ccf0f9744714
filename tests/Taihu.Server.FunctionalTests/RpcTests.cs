using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Lightweight server-side RPC (ThingsBoard's <c>/api/rpc/{oneway|twoway}</c> and the older
/// <c>/api/plugins/rpc/...</c>) over each device transport: MQTT (MQTTnet and mosquitto_sub), the HTTP long
/// poll, and a gateway; with ThingsBoard's status codes and the bad-input cases.
/// </summary>
public sealed class RpcTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TwoWay_OverMqtt_ReturnsTheDevicesReply()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-two-way-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getTemperature", @params = new { unit = "C" } });
        var command = await device.NextAsync();
        Assert.StartsWith("v1/devices/me/rpc/request/", command.Topic, StringComparison.Ordinal);
        Assert.Equal(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce, command.QualityOfServiceLevel);
        var body = JsonNode.Parse(command.ConvertPayloadToString())!;
        Assert.Equal("getTemperature", body["method"]!.GetValue<string>());
        Assert.Equal("C", body["params"]!["unit"]!.GetValue<string>());

        var requestId = command.Topic["v1/devices/me/rpc/request/".Length..];
        await device.PublishAsync("v1/devices/me/rpc/response/" + requestId, "{\"temperature\":21.5}");
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(21.5, reply["temperature"]!.GetValue<double>());

        var call2 = await AuditedCallsAsync(id);
        Assert.Equal("two-way getTemperature to " + (await fixture.Admin.GetAsync($"/api/device/{id}"))["name"]!.GetValue<string>(), Assert.Single(call2)["entityName"]!.GetValue<string>());
        Assert.Equal("SUCCESS", call2[0]["actionStatus"]!.GetValue<string>());
    }

    /// <summary>
    /// The device's <c>RPC_CALL</c> audit entries, oldest first. A call's entry is queued before its answer and
    /// written after it; audit entries are written in the order they were queued, so once a later change's entry
    /// is written (a device created: its answer waits for its entry), the call's is too.
    /// </summary>
    private async Task<List<JsonNode>> AuditedCallsAsync(Guid deviceId)
    {
        await fixture.Admin.CreateDeviceAsync("rpc-audit-marker-" + Guid.NewGuid().ToString("N")[..8]);
        var audit = await fixture.Admin.GetAsync("/api/audit/logs?pageSize=1000&page=0");
        return audit["data"]!.AsArray()
            .Where(e => e!["actionType"]!.GetValue<string>() == "RPC_CALL" && e["entityId"]?["id"]?.GetValue<string>() == deviceId.ToString())
            .Select(e => e!).Reverse().ToList();
    }

    [Fact]
    public async Task OneWay_OverMosquittoSub_Answers200OnceReceived_OnBothPaths()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-one-way-" + Guid.NewGuid().ToString("N")[..8]);
        using var sub = await MosquittoSubscriber.StartAsync(fixture.Server, token, "v1/devices/me/rpc/request/+", count: 2);

        var first = await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method = "setGpio", @params = new { pin = 4, value = 1 } });
        await PlatformApi.ExpectAsync(first, HttpStatusCode.OK);
        var second = await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/oneway/{id}", new { method = "reboot" });
        await PlatformApi.ExpectAsync(second, HttpStatusCode.OK);

        var lines = await sub.LinesAsync();
        Assert.Equal(2, lines.Count);
        Assert.Matches("^v1/devices/me/rpc/request/[0-9]+ \\{\"method\":\"setGpio\",\"params\":\\{\"pin\":4,\"value\":1\\}\\}$", lines[0]);
        Assert.Matches("^v1/devices/me/rpc/request/[0-9]+ \\{\"method\":\"reboot\",\"params\":\\{\\}\\}$", lines[1]);
    }

    [Fact]
    public async Task DeviceNotConnected_Is504_OnRpcPaths_And409_OnPluginsPaths_AtOnce()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-offline-" + Guid.NewGuid().ToString("N")[..8]);
        var started = Stopwatch.StartNew();
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "x" }), HttpStatusCode.GatewayTimeout);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method = "x" }), HttpStatusCode.GatewayTimeout);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "x" }), HttpStatusCode.Conflict);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/oneway/{id}", new { method = "x" }), HttpStatusCode.Conflict);

        // Connected but not subscribed to RPC: nothing would reach it either.
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "x" }), HttpStatusCode.Conflict);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), "Refusals for a device that cannot be reached come at once, not after the timeout.");

        // Each refused call is in the audit log as a failure, with the reason.
        var audited = await AuditedCallsAsync(id);
        Assert.Equal(5, audited.Count);
        Assert.All(audited, e => Assert.Equal("FAILURE", e["actionStatus"]!.GetValue<string>()));
        Assert.All(audited, e => Assert.Equal("The device is not connected.", e["actionFailureDetails"]!.GetValue<string>()));
        Assert.Equal(["two-way x", "one-way x", "two-way x", "one-way x", "two-way x"], audited.Select(e => e["entityName"]!.GetValue<string>()[..e["entityName"]!.GetValue<string>().IndexOf(" to ", StringComparison.Ordinal)]));
    }

    [Fact]
    public async Task NoReply_Is504_OnRpcPaths_And408_OnPluginsPaths_AfterTheTimeoutRaisedTo5s()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-silent-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        var started = Stopwatch.StartNew();
        // A timeout below 5,000 ms is raised to 5,000 ms, as ThingsBoard does.
        var rpc = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "slow", timeout = 100 });
        var plugins = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "slow", timeout = 1 });
        var problem = await PlatformApi.ExpectProblemAsync(await rpc.WaitAsync(Guard), HttpStatusCode.GatewayTimeout);
        Assert.Contains("5000 ms", problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
        await PlatformApi.ExpectProblemAsync(await plugins.WaitAsync(Guard), HttpStatusCode.RequestTimeout);
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(4.9), $"Answered after {started.Elapsed}, before the 5 s minimum.");

        // Both commands did reach the device; a reply now, after the call is over, changes nothing.
        var late = await device.NextAsync();
        await device.NextAsync();
        await device.PublishAsync("v1/devices/me/rpc/response/" + late.Topic.Split('/')[^1], "{\"late\":true}");
    }

    [Fact]
    public async Task HttpLongPoll_ReceivesTheCommand_AndRepliesByPost()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-http-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress, Timeout = Guard };

        // The poll and the call race: the call is retried while the device is not reachable yet (answered at once).
        var poll = http.GetAsync($"/api/v1/{token}/rpc?timeout=20000");
        HttpResponseMessage? call = null;
        var replied = Task.Run(async () =>
        {
            var response = await poll;
            var command = await PlatformApi.ExpectAsync(response, HttpStatusCode.OK);
            Assert.Equal("getState", command["method"]!.GetValue<string>());
            var requestId = command["id"]!.GetValue<int>();
            await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{token}/rpc/{requestId}", new StringContent("{\"state\":\"on\"}")), HttpStatusCode.OK);
            return requestId;
        });
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < Guard)
        {
            call = await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "getState" });
            if (call.StatusCode != HttpStatusCode.Conflict)
            {
                break;
            }
        }

        var reply = await PlatformApi.ExpectAsync(call!, HttpStatusCode.OK);
        Assert.Equal("on", reply["state"]!.GetValue<string>());
        var requestId = await replied.WaitAsync(Guard);

        // The same reply again: the call has ended (409); an id never issued to this device: 404.
        await PlatformApi.ExpectProblemAsync(await http.PostAsync($"/api/v1/{token}/rpc/{requestId}", new StringContent("{}")), HttpStatusCode.Conflict);
        await PlatformApi.ExpectProblemAsync(await http.PostAsync($"/api/v1/{token}/rpc/{requestId + 1000}", new StringContent("{}")), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await http.PostAsync($"/api/v1/{token}/rpc/abc", new StringContent("{}")), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task HttpLongPoll_WithNothingToSend_Is408()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("rpc-http-idle-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress, Timeout = Guard };
        Assert.Equal(HttpStatusCode.RequestTimeout, (await http.GetAsync($"/api/v1/{token}/rpc?timeout=200")).StatusCode);
    }

    [Fact]
    public async Task ReplyFromTheWrongDevice_IsRefused_AndTheCallStillGetsItsOwnReply()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-right-" + Guid.NewGuid().ToString("N")[..8]);
        var (_, otherToken) = await fixture.Admin.CreateDeviceAsync("rpc-wrong-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "whoAmI" });
        var command = await device.NextAsync();
        var requestId = command.Topic.Split('/')[^1];

        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress, Timeout = Guard };
        var wrong = await PlatformApi.ExpectProblemAsync(await http.PostAsync($"/api/v1/{otherToken}/rpc/{requestId}", new StringContent("{\"me\":\"impostor\"}")), HttpStatusCode.NotFound);
        Assert.Contains("of this device", wrong["message"]!.GetValue<string>(), StringComparison.Ordinal);

        await device.PublishAsync("v1/devices/me/rpc/response/" + requestId, "{\"me\":\"right\"}");
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal("right", reply["me"]!.GetValue<string>());
    }

    [Fact]
    public async Task Gateway_ReceivesCommandsForItsDevices_AndReplies()
    {
        var (_, gatewayToken) = await fixture.Admin.CreateDeviceAsync("rpc-gateway-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        var child = "Meter " + Guid.NewGuid().ToString("N")[..6];
        await using var gateway = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken);
        await gateway.SubscribeAsync("v1/gateway/rpc");
        await gateway.PublishAsync("v1/gateway/connect", $"{{\"device\":\"{child}\"}}");
        var found = await fixture.Admin.GetAsync($"/api/tenant/devices/{Uri.EscapeDataString(child)}");
        var childId = Guid.Parse(found["id"]!["id"]!.GetValue<string>());

        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{childId}", new { method = "getReading", @params = new { register = 7 } });
        var command = JsonNode.Parse((await gateway.NextAsync()).ConvertPayloadToString())!;
        Assert.Equal(child, command["device"]!.GetValue<string>());
        Assert.Equal("getReading", command["data"]!["method"]!.GetValue<string>());
        Assert.Equal(7, command["data"]!["params"]!["register"]!.GetValue<int>());
        var requestId = command["data"]!["id"]!.GetValue<int>();

        await gateway.PublishAsync("v1/gateway/rpc", $"{{\"device\":\"{child}\",\"id\":{requestId},\"data\":{{\"kWh\":1234.5}}}}");
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(1234.5, reply["kWh"]!.GetValue<double>());

        // A reply that names a device the gateway does not speak for is refused whole.
        var (_, _) = await fixture.Admin.CreateDeviceAsync("rpc-stranger-" + Guid.NewGuid().ToString("N")[..6]);
        var stranger = await gateway.TryPublishAsync("v1/gateway/rpc", "{\"device\":\"nobody-here\",\"id\":1,\"data\":{}}");
        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, stranger.ReasonCode);
    }

    [Fact]
    public async Task BadRequests_GetPreciseProblems_AndTheServerKeepsServing()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rpc-bad-" + Guid.NewGuid().ToString("N")[..8]);
        async Task<string> BadAsync(object body, HttpStatusCode status = HttpStatusCode.BadRequest, string path = "/api/rpc/twoway/")
        {
            var problem = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, path + id, body), status);
            return problem["message"]!.GetValue<string>();
        }

        Assert.Contains("method is required", await BadAsync(new { @params = new { a = 1 } }), StringComparison.Ordinal);
        Assert.Contains("method is required", await BadAsync(new { method = "" }), StringComparison.Ordinal);
        Assert.Contains("method is required", await BadAsync(new { method = 5 }), StringComparison.Ordinal);
        Assert.Contains("may not be negative", await BadAsync(new { method = "m", timeout = -1 }), StringComparison.Ordinal);
        Assert.Contains("at most 86400000 ms", await BadAsync(new { method = "m", timeout = 1_000_000_000_000L }), StringComparison.Ordinal);
        Assert.Contains("whole number of milliseconds", await BadAsync(new { method = "m", timeout = "soon" }), StringComparison.Ordinal);
        Assert.Contains("not in the future", await BadAsync(new { method = "m", expirationTime = 1000 }), StringComparison.Ordinal);
        Assert.Contains("retries", await BadAsync(new { method = "m", persistent = true, retries = -3 }), StringComparison.Ordinal);
        Assert.Contains("not valid JSON", await BadAsync("{\"method\":"), StringComparison.Ordinal);
        Assert.Contains("JSON object", await BadAsync("[1,2]"), StringComparison.Ordinal);
        await BadAsync(new { method = "m", @params = new string('x', 70_000) }, HttpStatusCode.RequestEntityTooLarge);

        // Unknown device, and another tenant's device: 404 alike.
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{Guid.NewGuid()}", new { method = "m" }), HttpStatusCode.NotFound);
        var (_, otherAdmin) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Other " + Guid.NewGuid().ToString("N")[..8]);
        using (otherAdmin)
        {
            await PlatformApi.ExpectProblemAsync(await otherAdmin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "m" }), HttpStatusCode.NotFound);
            await PlatformApi.ExpectProblemAsync(await otherAdmin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/oneway/{id}", new { method = "m", persistent = true }), HttpStatusCode.NotFound);
        }

        // A viewer may not send commands.
        using var viewer = await fixture.Admin.CreateUserAsync("VIEWER");
        await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method = "m" }), HttpStatusCode.Forbidden);

        // Still serving: a good call to a connected device goes through.
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");
        await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method = "ping" }), HttpStatusCode.OK);
    }

    /// <summary>mosquitto_sub in debug mode: its SUBACK line is the signal that the subscription is in place.</summary>
    private sealed class MosquittoSubscriber : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];

        private MosquittoSubscriber(Process process) => _process = process;

        public static async Task<MosquittoSubscriber> StartAsync(ServerProcess server, string user, string topic, int count)
        {
            // Line-buffered, so that the SUBACK line arrives when it happens rather than when the buffer fills.
            var start = new ProcessStartInfo("/usr/bin/stdbuf") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in new[] { "-oL", "/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", server.TcpPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "-u", user,
                "-q", "1", "-t", topic, "-v", "-d", "-C", count.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            {
                start.ArgumentList.Add(argument);
            }

            var subscriber = new MosquittoSubscriber(Process.Start(start)!);
            while (await subscriber._process.StandardOutput.ReadLineAsync().WaitAsync(Guard) is { } line)
            {
                if (line.Contains("received SUBACK", StringComparison.Ordinal))
                {
                    return subscriber;
                }
            }

            throw new InvalidOperationException("mosquitto_sub ended before its SUBACK.");
        }

        /// <summary>The messages printed (-v: topic and payload), debug lines left out (only lines of a v1/ topic are kept), once the process has received its -C count.</summary>
        public async Task<List<string>> LinesAsync()
        {
            while (await _process.StandardOutput.ReadLineAsync().WaitAsync(Guard) is { } line)
            {
                if (line.StartsWith("v1/", StringComparison.Ordinal))
                {
                    _lines.Add(line);
                }
            }

            await _process.WaitForExitAsync().WaitAsync(Guard);
            return _lines;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            _process.Dispose();
        }
    }
}
