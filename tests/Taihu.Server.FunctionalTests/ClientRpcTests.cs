using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>Client-side RPC: the device asks, the platform answers (getCurrentTime built in, anything else a clear error).</summary>
public sealed class ClientRpcTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task GetCurrentTime_OverMosquittoRr_AnswersServerTimeInEpochMilliseconds()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("client-rpc-rr-" + Guid.NewGuid().ToString("N")[..8]);
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var (exit, output) = await RunAsync("/usr/bin/mosquitto_rr", "-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-u", token, "-t", "v1/devices/me/rpc/request/1", "-e", "v1/devices/me/rpc/response/1", "-m", "{\"method\":\"getCurrentTime\",\"params\":{}}", "-W", "20");
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.True(exit == 0, output);
        var time = JsonNode.Parse(output)!["time"]!.GetValue<long>();
        Assert.InRange(time, before - 1000, after + 1000);
    }

    [Fact]
    public async Task OtherMethodsAndBadRequests_OverMqtt_GetAnErrorReply_OnTheResponseTopicOfTheSameId()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("client-rpc-mqtt-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/response/+");
        // Subscribed to server-side commands too: its own requests must not come back as commands.
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        await device.PublishAsync("v1/devices/me/rpc/request/17", "{\"method\":\"getWeather\",\"params\":{\"city\":\"Wuxi\"}}");
        var reply = await device.NextAsync();
        Assert.Equal("v1/devices/me/rpc/response/17", reply.Topic);
        var body = JsonNode.Parse(reply.ConvertPayloadToString())!;
        Assert.Equal("getWeather", body["method"]!.GetValue<string>());
        Assert.Contains("Unknown method: getWeather.", body["error"]!.GetValue<string>(), StringComparison.Ordinal);

        await device.PublishAsync("v1/devices/me/rpc/request/18", "{\"params\":{}}");
        var missing = await device.NextAsync();
        Assert.Equal("v1/devices/me/rpc/response/18", missing.Topic);
        Assert.Contains("method is required", JsonNode.Parse(missing.ConvertPayloadToString())!["error"]!.GetValue<string>(), StringComparison.Ordinal);

        await device.PublishAsync("v1/devices/me/rpc/request/19", "not json");
        var bad = await device.NextAsync();
        Assert.Equal("v1/devices/me/rpc/response/19", bad.Topic);
        Assert.Contains("not valid JSON", JsonNode.Parse(bad.ConvertPayloadToString())!["error"]!.GetValue<string>(), StringComparison.Ordinal);

        await device.PublishAsync("v1/devices/me/rpc/request/20", "{\"method\":\"getCurrentTime\"}");
        var time = await device.NextAsync();
        Assert.Equal("v1/devices/me/rpc/response/20", time.Topic);
        Assert.True(JsonNode.Parse(time.ConvertPayloadToString())!["time"]!.GetValue<long>() > 1_700_000_000_000);
        Assert.False(device.TryTake(out _), "The device heard one of its own requests back.");
    }

    [Fact]
    public async Task OverHttp_PostRpc_AnswersInTheResponse()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("client-rpc-http-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var time = await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{token}/rpc", new StringContent("{\"method\":\"getCurrentTime\",\"params\":{}}")), HttpStatusCode.OK);
        Assert.True(time["time"]!.GetValue<long>() > 1_700_000_000_000);
        var unknown = await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{token}/rpc", new StringContent("{\"method\":\"launch\"}")), HttpStatusCode.OK);
        Assert.Contains("Unknown method: launch.", unknown["error"]!.GetValue<string>(), StringComparison.Ordinal);
        await PlatformApi.ExpectProblemAsync(await http.PostAsync("/api/v1/no-such-token/rpc", new StringContent("{\"method\":\"getCurrentTime\"}")), HttpStatusCode.Unauthorized);
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string program, params string[] arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return (process.ExitCode, (await stdout) + (await stderr));
    }
}
