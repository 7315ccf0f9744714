using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// ThingsBoard's live WebSocket API against the real server: a snapshot from the store first, then each committed
/// change, for time series, attributes and connectivity, on <c>/api/ws</c> and the older
/// <c>/api/ws/plugins/telemetry</c>. Devices publish with the MQTTnet client and mosquitto_pub.
/// </summary>
public sealed class LiveApiTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task Timeseries_SnapshotFirst_ThenEachCommittedChange_OfTheKeysAsked()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-ts-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("v1/devices/me/telemetry", """{"ts":1764115200000,"values":{"temperature":21.5,"humidity":40}}""");

        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!,
            new { type = "TIMESERIES", cmdId = 7, entityType = "DEVICE", entityId = deviceId, keys = "temperature" });

        var snapshot = await live.NextAsync();
        Assert.Equal(7, snapshot["subscriptionId"]!.GetValue<int>());
        Assert.Equal(0, snapshot["errorCode"]!.GetValue<int>());
        Assert.Null(snapshot["errorMsg"]);
        Assert.Equal("""{"temperature":[[1764115200000,"21.5"]]}""", snapshot["data"]!.ToJsonString());
        Assert.Equal("""{"temperature":1764115200000}""", snapshot["latestValues"]!.ToJsonString());

        // A key not asked for is not pushed: the next frame is the temperature published after it.
        using var http = new HttpClient { BaseAddress = Server.HttpBaseAddress };
        const string CommitToFrame = "taihu_live_commit_to_frame_milliseconds_count";
        var measured = await Metrics.ReadAsync(http, CommitToFrame) ?? 0;
        await device.PublishAsync("v1/devices/me/telemetry", """{"ts":1764115201000,"values":{"humidity":41}}""");
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", Server.TcpPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-u", token, "-q", "1", "-t", "v1/devices/me/telemetry", "-m", """{"ts":1764115202000,"values":{"temperature":22.5}}""");
        Assert.True(exit == 0, output);

        var update = await live.NextAsync();
        Assert.Equal(7, update["subscriptionId"]!.GetValue<int>());
        Assert.Equal("""{"temperature":[[1764115202000,"22.5"]]}""", update["data"]!.ToJsonString());
        Assert.Equal("""{"temperature":1764115202000}""", update["latestValues"]!.ToJsonString());

        // The frame's wait from the commit is measured (recorded once the frame is written, so maybe after it arrived).
        await Metrics.WaitForAsync(Server, CommitToFrame, count => count > measured);
    }

    [Fact]
    public async Task ASubscriptionThatFallsBehind_GetsItsChangesMergedIntoFewerFrames_WithEveryPointInOrder()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-merge-" + Guid.NewGuid().ToString("N")[..8]);
        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!,
            new { type = "TIMESERIES", cmdId = 5, entityType = "DEVICE", entityId = deviceId, keys = "n,blob" });
        Assert.Equal("{}", (await live.NextAsync())["data"]!.ToJsonString());
        await using var device = await DeviceClient.ConnectAsync(Server, token);

        // The client reads nothing while 30 MB of updates commit (each publish is acknowledged once stored): more
        // than the sockets' buffers on loopback hold, so the server's send loop waits for the client and the later
        // changes wait together. Some stamped in the same millisecond: those keep the order they were committed in.
        const int Messages = 500;
        var blob = new string('x', 60_000);
        for (var n = 1; n <= Messages; n++)
        {
            await device.PublishAsync("v1/devices/me/telemetry", $$"""{"n":{{n}},"blob":"{{blob}}"}""");
        }

        await device.PublishAsync("v1/devices/me/telemetry", """{"n":0}""");

        // Now read: every point once, in order, and fewer frames than changes.
        var frames = 0;
        var seen = new List<long>();
        var lastTs = long.MinValue;
        while (seen.Count == 0 || seen[^1] != 0)
        {
            var frame = await live.NextAsync();
            frames++;
            Assert.Equal(5, frame["subscriptionId"]!.GetValue<int>());
            var points = frame["data"]!["n"]!.AsArray();
            foreach (var point in points)
            {
                var ts = point![0]!.GetValue<long>();
                Assert.True(ts >= lastTs, $"ts {ts} after {lastTs}");
                lastTs = ts;
                seen.Add(long.Parse(point[1]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture));
            }

            var blobs = frame["data"]!["blob"]?.AsArray().Count ?? 0;
            Assert.Equal(points.Count - (seen[^1] == 0 ? 1 : 0), blobs);
            Assert.Equal(points[^1]![0]!.GetValue<long>(), frame["latestValues"]!["n"]!.GetValue<long>());
        }

        Assert.Equal([.. Enumerable.Range(1, Messages).Select(n => (long)n), 0L], seen);
        Assert.True(frames < Messages, $"{frames} frames for {Messages + 1} changes: none were merged");
    }

    [Fact]
    public async Task Timeseries_WithATimeWindow_SnapshotIsTheHistory_AndUnsubscribeStopsUpdates()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-window-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await device.PublishAsync("v1/devices/me/telemetry", $$$"""[{"ts":{{{now - 3000}}},"values":{"pm25":30}},{"ts":{{{now - 2000}}},"values":{"pm25":31}},{"ts":{{{now - 1000}}},"values":{"pm25":32}}]""");

        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!,
            new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = deviceId, keys = "pm25", startTs = now - 2500, timeWindow = 60_000, limit = 10 });
        var snapshot = await live.NextAsync();
        Assert.Equal("{\"pm25\":[[" + (now - 2000) + ",\"31\"],[" + (now - 1000) + ",\"32\"]]}", snapshot["data"]!.ToJsonString());

        // Unsubscribed (ThingsBoard's form: the same cmdId with "unsubscribe":true), then a second subscription
        // serves as the sentinel: its update is the next frame, and no frame of cmdId 1 comes before it.
        await live.SendAsync(new { cmds = new object[]
        {
            new { type = "TIMESERIES", cmdId = 1, unsubscribe = true },
            new { type = "TIMESERIES", cmdId = 2, entityType = "DEVICE", entityId = deviceId, keys = "pm25" },
        } });
        var second = await live.NextAsync();
        Assert.Equal(2, second["subscriptionId"]!.GetValue<int>());
        await device.PublishAsync("v1/devices/me/telemetry", """{"pm25":33}""");
        var update = await live.NextAsync();
        Assert.Equal(2, update["subscriptionId"]!.GetValue<int>());
        Assert.Equal("33", update["data"]!["pm25"]![0]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task Attributes_OfOneScope_SnapshotThenChanges_FromTheApiAndTheDevice()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-attr-" + Guid.NewGuid().ToString("N")[..8]);
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/attributes/SHARED_SCOPE", new { interval = 30 });

        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!,
            new { type = "ATTRIBUTES", cmdId = 3, entityType = "DEVICE", entityId = deviceId, scope = "SHARED_SCOPE" },
            new { type = "ATTRIBUTES", cmdId = 4, entityType = "DEVICE", entityId = deviceId, scope = "CLIENT_SCOPE", keys = "fw" });
        var shared = await live.NextOfAsync(3);
        Assert.Equal("30", shared["data"]!["interval"]![0]![1]!.GetValue<string>());
        var client = await live.NextOfAsync(4);
        Assert.Equal("{}", client["data"]!.ToJsonString());

        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/attributes/SHARED_SCOPE", new { interval = 60 });
        var changed = await live.NextAsync();
        Assert.Equal(3, changed["subscriptionId"]!.GetValue<int>());
        Assert.Equal("60", changed["data"]!["interval"]![0]![1]!.GetValue<string>());

        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("v1/devices/me/attributes", """{"fw":"1.2.3","model":"X"}""");
        var fromDevice = await live.NextOfAsync(4);
        Assert.Equal("""["fw"]""", new JsonArray([.. fromDevice["data"]!.AsObject().Select(p => (JsonNode)p.Key)]).ToJsonString());
        Assert.Equal("1.2.3", fromDevice["data"]!["fw"]![0]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task Connectivity_IsPushedAsServerAttributes_AndActiveIsATimeSeries()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-conn-" + Guid.NewGuid().ToString("N")[..8]);
        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!,
            new { type = "ATTRIBUTES", cmdId = 1, entityType = "DEVICE", entityId = deviceId, scope = "SERVER_SCOPE", keys = "active,lastConnectTime" },
            new { type = "TIMESERIES", cmdId = 2, entityType = "DEVICE", entityId = deviceId, keys = "active" });
        Assert.Equal("{}", (await live.NextOfAsync(1))["data"]!.ToJsonString());
        Assert.Equal("{}", (await live.NextOfAsync(2))["data"]!.ToJsonString());

        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await using var device = await DeviceClient.ConnectAsync(Server, token);

        // Written within a second of the connect, and pushed as it commits.
        var attributes = await live.NextOfAsync(1);
        Assert.Equal("true", attributes["data"]!["active"]![0]![1]!.GetValue<string>());
        Assert.True(long.Parse(attributes["data"]!["lastConnectTime"]![0]![1]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture) >= before);
        var series = await live.NextOfAsync(2);
        Assert.Equal("true", series["data"]!["active"]![0]![1]!.GetValue<string>());

        // Readable through the REST API as well: the attribute, and the history of the series.
        var server = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/attributes/SERVER_SCOPE?keys=active");
        Assert.True(server[0]!["value"]!.GetValue<bool>());
        var history = await fixture.Admin.HistoryAsync(deviceId, "active", 0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 60_000);
        Assert.True(Assert.Single(history).Value!.GetValue<bool>());
    }

    [Fact]
    public async Task OlderPath_TokenInQuery_TsSubCmdsAttrSubCmdsAndHistoryCmds()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-old-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("v1/devices/me/telemetry", """[{"ts":1764115200000,"values":{"t":1}},{"ts":1764115260000,"values":{"t":2}},{"ts":1764115320000,"values":{"t":3}}]""");
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/attributes/SERVER_SCOPE", new { site = "Wuxi" });

        await using var live = await LiveClient.OpenAsync(Server, "/api/ws/plugins/telemetry?token=" + fixture.Admin.Token);
        await live.SendAsync(new
        {
            tsSubCmds = new[] { new { entityType = "DEVICE", entityId = deviceId, keys = "t", scope = "LATEST_TELEMETRY", cmdId = 10 } },
            historyCmds = new[] { new { entityType = "DEVICE", entityId = deviceId, keys = "t", startTs = 1764115200000, endTs = 1764115260000, limit = 100, agg = "NONE", cmdId = 11 } },
            attrSubCmds = new[] { new { entityType = "DEVICE", entityId = deviceId, scope = "SERVER_SCOPE", keys = "site", cmdId = 12 } },
        });
        // An aggregate over the three minutes, one interval of three minutes: stamped at its middle.
        await live.SendAsync(new
        {
            historyCmds = new[] { new { entityType = "DEVICE", entityId = deviceId, keys = "t", startTs = 1764115200000, endTs = 1764115380000, interval = 180_000, agg = "AVG", cmdId = 13 } },
        });

        Assert.Equal("""{"t":[[1764115320000,"3"]]}""", (await live.NextOfAsync(10))["data"]!.ToJsonString());
        Assert.Equal("""{"t":[[1764115200000,"1"],[1764115260000,"2"]]}""", (await live.NextOfAsync(11))["data"]!.ToJsonString());
        Assert.Equal("Wuxi", (await live.NextOfAsync(12))["data"]!["site"]![0]![1]!.GetValue<string>());
        Assert.Equal("""{"t":[[1764115290000,"2"]]}""", (await live.NextOfAsync(13))["data"]!.ToJsonString());

        await device.PublishAsync("v1/devices/me/telemetry", """{"ts":1764115380000,"values":{"t":4}}""");
        Assert.Equal("""{"t":[[1764115380000,"4"]]}""", (await live.NextOfAsync(10))["data"]!.ToJsonString());
    }

    [Fact]
    public async Task AViewer_SeesItsTenantsDevices_TheSystemAdministratorNone()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-viewer-" + Guid.NewGuid().ToString("N")[..8]);
        using var viewer = await fixture.Admin.CreateUserAsync("VIEWER");
        await using var live = await LiveClient.ConnectAsync(Server, viewer.Token!, new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = deviceId, keys = "v" });
        Assert.Equal(0, (await live.NextAsync())["errorCode"]!.GetValue<int>());
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("v1/devices/me/telemetry", """{"v":"seen"}""");
        Assert.Equal("seen", (await live.NextAsync())["data"]!["v"]![0]![1]!.GetValue<string>());

        await using var sys = await LiveClient.ConnectAsync(Server, fixture.SysAdmin.Token!, new { type = "TIMESERIES", cmdId = 2, entityType = "DEVICE", entityId = deviceId });
        var refused = await sys.NextAsync();
        Assert.Equal((2, 3), (refused["subscriptionId"]!.GetValue<int>(), refused["errorCode"]!.GetValue<int>()));
        Assert.Equal("The system administrator sees no tenant's devices; log in as a user of the tenant.", refused["errorMsg"]!.GetValue<string>());
    }
}
