using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// ThingsBoard's documented device API examples, run unchanged against the real server: mosquitto_pub and curl
/// with an access token, attribute requests, shared-attribute pushes over MQTT and HTTP long poll.
/// </summary>
public sealed class DeviceApiTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task MosquittoPub_WithAccessTokenAsUserName_StoresTelemetry()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("mosquitto-" + Guid.NewGuid().ToString("N")[..8]);
        // The device's own telemetry topic is routed after the point is stored: a second connection of the same
        // device that subscribes to it is the signal that the QoS 0 publish below has been written.
        await using var watcher = await DeviceClient.ConnectAsync(Server, token);
        await watcher.SubscribeAsync("v1/devices/me/telemetry");

        // ThingsBoard's example, as documented: mosquitto_pub -d -q 1 -h "$HOST" -t "v1/devices/me/telemetry" -u "$ACCESS_TOKEN" -m {"temperature":25}
        var (exitCode, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", Server.TcpPort.ToString(), "-t", "v1/devices/me/telemetry", "-u", token, "-m", "{\"temperature\":25}");
        Assert.True(exitCode == 0, output);
        var seen = await watcher.NextAsync();
        Assert.Equal("v1/devices/me/telemetry", seen.Topic);

        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(25, latest["temperature"].Value!.GetValue<long>());
    }

    [Fact]
    public async Task Curl_PostTelemetry_ReturnsOk_AndTheValuesCanBeReadBack()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("curl-" + Guid.NewGuid().ToString("N")[..8]);
        // curl -v -X POST http://$HOST/api/v1/$ACCESS_TOKEN/telemetry --header Content-Type:application/json --data "{temperature:25}"
        var (status, _) = await Curl.RunAsync("-X", "POST", $"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/telemetry",
            "--header", "Content-Type:application/json", "--data", "[{\"ts\":1700000000000,\"values\":{\"temperature\":21.5,\"door\":true}},{\"ts\":1700000001000,\"values\":{\"temperature\":22}}]");
        Assert.Equal(200, status);

        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(1700000001000, latest["temperature"].Ts);
        Assert.Equal(22, latest["temperature"].Value!.GetValue<long>());
        Assert.True(latest["door"].Value!.GetValue<bool>());
        var history = await fixture.Admin.HistoryAsync(id, "temperature", 1700000000000, 1700000001000);
        Assert.Equal([1700000000000, 1700000001000], history.Select(p => p.Ts));
        Assert.Equal(21.5, history[0].Value!.GetValue<double>());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task TelemetryFormats_AllStoreTypedPoints(MqttProtocolVersion version)
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("formats-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token, version);
        await device.PublishAsync("v1/devices/me/telemetry", "{\"a\":1,\"b\":2.5,\"c\":\"text\",\"d\":false,\"e\":{\"nested\":[1,2]}}");
        await device.PublishAsync("v1/devices/me/telemetry", "{\"ts\":1600000000000,\"values\":{\"f\":7}}");
        await device.PublishAsync("v1/devices/me/telemetry", "[{\"ts\":1600000001000,\"values\":{\"g\":1}},{\"h\":2}]", MqttQualityOfServiceLevel.ExactlyOnce);

        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(1, latest["a"].Value!.GetValue<long>());
        Assert.Equal(2.5, latest["b"].Value!.GetValue<double>());
        Assert.Equal("text", latest["c"].Value!.GetValue<string>());
        Assert.False(latest["d"].Value!.GetValue<bool>());
        Assert.Equal(2, latest["e"].Value!["nested"]!.AsArray()[1]!.GetValue<int>());
        Assert.Equal(1600000000000, latest["f"].Ts);
        Assert.Equal(1600000001000, latest["g"].Ts);
        Assert.Equal(2, latest["h"].Value!.GetValue<long>());
    }

    [Fact]
    public async Task AttributeRequest_IsAnsweredOnTheResponseTopic_WithClientAndSharedAttributes()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("attributes-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("v1/devices/me/attributes", "{\"firmware\":\"1.0.2\",\"serial\":\"SN-1\"}");
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SHARED_SCOPE", new { interval = 30, mode = "eco" });
        await device.SubscribeAsync("v1/devices/me/attributes/response/+");

        await device.PublishAsync("v1/devices/me/attributes/request/1", "{\"clientKeys\":\"firmware\",\"sharedKeys\":\"interval,mode\"}");
        var response = await device.NextAsync();
        Assert.Equal("v1/devices/me/attributes/response/1", response.Topic);
        var body = JsonNode.Parse(response.ConvertPayloadToString())!;
        Assert.Equal("1.0.2", body["client"]!["firmware"]!.GetValue<string>());
        Assert.Null(body["client"]!["serial"]);
        Assert.Equal(30, body["shared"]!["interval"]!.GetValue<int>());
        Assert.Equal("eco", body["shared"]!["mode"]!.GetValue<string>());

        // The same over HTTP: GET /api/v1/$ACCESS_TOKEN/attributes?clientKeys=..&sharedKeys=..
        var (status, text) = await Curl.RunAsync($"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/attributes?clientKeys=serial&sharedKeys=mode");
        Assert.Equal(200, status);
        var http = JsonNode.Parse(text)!;
        Assert.Equal("SN-1", http["client"]!["serial"]!.GetValue<string>());
        Assert.Equal("eco", http["shared"]!["mode"]!.GetValue<string>());

        // Client attributes are readable by the operator, in ThingsBoard's shape.
        var client = (await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/CLIENT_SCOPE")).AsArray();
        Assert.Contains(client, a => a!["key"]!.GetValue<string>() == "firmware" && a["value"]!.GetValue<string>() == "1.0.2" && a["lastUpdateTs"]!.GetValue<long>() > 0);
    }

    [Fact]
    public async Task SharedAttributeUpdate_IsPushedToASubscribedDevice()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("push-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.SubscribeAsync("v1/devices/me/attributes");

        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { targetTemperature = 22.5 });
        var pushed = await device.NextAsync();
        Assert.Equal("v1/devices/me/attributes", pushed.Topic);
        Assert.Equal(22.5, JsonNode.Parse(pushed.ConvertPayloadToString())!["targetTemperature"]!.GetValue<double>());

        // Server-scope attributes are the server's own: they are not pushed.
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", new { note = "basement" });
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { marker = 1 });
        var next = JsonNode.Parse((await device.NextAsync()).ConvertPayloadToString())!;
        Assert.Null(next["note"]);
        Assert.Equal(1, next["marker"]!.GetValue<int>());
    }

    [Fact]
    public async Task SharedAttributeUpdate_AnswersAnHttpLongPoll()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("longpoll-" + Guid.NewGuid().ToString("N")[..8]);
        // curl -v -X GET http://$HOST/api/v1/$ACCESS_TOKEN/attributes/updates?timeout=20000
        var poll = Curl.RunAsync($"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/attributes/updates?timeout=20000");

        // The update must come after the poll is registered: the server counts waiting polls on /metrics.
        await Metrics.WaitForAsync(Server, "taihu_device_attribute_polls", value => value >= 1);
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { setting = 7 });

        var (status, body) = await poll;
        Assert.Equal(200, status);
        Assert.Equal(7, JsonNode.Parse(body)!["setting"]!.GetValue<int>());
    }

    [Fact]
    public async Task LongPoll_WithoutUpdate_EndsWith408AfterItsTimeout()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("quiet-" + Guid.NewGuid().ToString("N")[..8]);
        var (status, _) = await Curl.RunAsync($"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/attributes/updates?timeout=200");
        Assert.Equal(408, status);
    }

    [Fact]
    public async Task Timeseries_Aggregates_AndDeletion_FollowThingsBoardsShapes()
    {
        // 2023-11-14, 40 s into a minute (as the points were at 1,000,000 ms before timestamps before 2000 were refused).
        const long Base = 1_700_000_020_000;
        var (id, token) = await fixture.Admin.CreateDeviceAsync("aggregates-" + Guid.NewGuid().ToString("N")[..8]);
        var points = new StringBuilder("[");
        for (var i = 0; i < 6; i++)
        {
            points.Append(i == 0 ? "" : ",").Append("{\"ts\":").Append(Base + (i * 10_000)).Append(",\"values\":{\"v\":").Append(i + 1).Append("}}");
        }

        var (status, _) = await Curl.RunAsync("-X", "POST", $"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/telemetry", "--data", points.Append(']').ToString());
        Assert.Equal(200, status);

        // Two intervals of 30 s: 1,2,3 and 4,5,6.
        var avg = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=v&startTs={Base}&endTs={Base + 60_000}&interval=30000&agg=AVG&useStrictDataTypes=true");
        Assert.Equal([2.0, 5.0], avg["v"]!.AsArray().Select(p => p!["value"]!.GetValue<double>()));
        Assert.Equal([Base + 15_000, Base + 45_000], avg["v"]!.AsArray().Select(p => p!["ts"]!.GetValue<long>()));
        var count = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=v&startTs={Base}&endTs={Base + 60_000}&interval=60000&agg=COUNT&useStrictDataTypes=true");
        Assert.Equal(6, count["v"]!.AsArray()[0]!["value"]!.GetValue<long>());
        var keys = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/keys/timeseries");
        // The device's keys; "active" is the platform's own connectivity series, there once the device is seen.
        Assert.Equal(["v"], keys.AsArray().Select(k => k!.GetValue<string>()).Where(k => k != "active"));

        var delete = await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/plugins/telemetry/DEVICE/{id}/timeseries/delete?keys=v&startTs={Base + 40_000}&endTs={Base + 60_000}");
        await PlatformApi.ExpectAsync(delete, HttpStatusCode.OK);
        var left = await fixture.Admin.HistoryAsync(id, "v", Base, Base + 1_000_000);
        Assert.Equal([1, 2, 3, 4], left.Select(p => p.Value!.GetValue<int>()));
        Assert.Equal(Base + 30_000, (await fixture.Admin.LatestAsync(id))["v"].Ts);
    }

    [Fact]
    public async Task RawHistory_PagesWithACursor()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("cursor-" + Guid.NewGuid().ToString("N")[..8]);
        var body = "[" + string.Join(',', Enumerable.Range(0, 25).Select(i => $"{{\"ts\":{1_700_000_005_000 + i},\"values\":{{\"n\":{i}}}}}")) + "]";
        Assert.Equal(200, (await Curl.RunAsync("-X", "POST", $"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/telemetry", "--data", body)).Status);

        var seen = new List<int>();
        string? cursor = null;
        do
        {
            var page = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries/page?key=n&startTs=1700000000000&endTs=1700000100000&limit=10{(cursor is null ? "" : "&cursor=" + cursor)}");
            seen.AddRange(page["data"]!.AsArray().Select(p => p!["value"]!.GetValue<int>()));
            cursor = page["nextCursor"]?.GetValue<string>();
            Assert.Equal(cursor is not null, page["hasNext"]!.GetValue<bool>());
        }
        while (cursor is not null);

        Assert.Equal(Enumerable.Range(0, 25), seen);
    }
}
