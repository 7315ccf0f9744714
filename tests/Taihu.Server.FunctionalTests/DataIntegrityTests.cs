using System.Globalization;
using System.Net;
using System.Runtime.Versioning;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Data that must not silently go missing or be exposed: history pages that reach every point, timestamps that
/// cannot freeze the latest value, and a data directory that only the server's user can read.
/// </summary>
public sealed class DataIntegrityTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    [Theory]
    [InlineData(10_000)]
    [InlineData(20_000)]
    public async Task HistoryPaging_ALimitAtOrAboveTheMaximum_StillReachesEveryPoint(int limit)
    {
        const int Total = 10_250;
        const long Start = 1_700_000_000_000;
        var (id, token) = await fixture.Admin.CreateDeviceAsync("paging-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = new HttpClient { BaseAddress = Server.HttpBaseAddress };
        for (var from = 0; from < Total; from += 1_000)
        {
            var body = new StringBuilder("[");
            for (var i = from; i < Math.Min(from + 1_000, Total); i++)
            {
                body.Append(i == from ? "" : ",").Append("{\"ts\":").Append(Start + i).Append(",\"values\":{\"seq\":").Append(i).Append("}}");
            }

            using var response = await http.PostAsync($"/api/v1/{token}/telemetry", new StringContent(body.Append(']').ToString(), Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var seen = new List<int>(Total);
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await fixture.Admin.GetAsync(
                $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries/page?key=seq&startTs={Start}&endTs={Start + Total}&limit={limit}{(cursor is null ? "" : "&cursor=" + cursor)}");
            var data = page["data"]!.AsArray();
            Assert.True(data.Count <= 10_000, $"A page held {data.Count} points, more than the documented maximum of 10,000.");
            foreach (var point in data)
            {
                seen.Add(point!["value"]!.GetValue<int>());
            }

            cursor = page["nextCursor"]?.GetValue<string>();
            Assert.Equal(cursor is not null, page["hasNext"]!.GetValue<bool>());
            pages++;
        }
        while (cursor is not null && pages < 10);

        Assert.Equal(Enumerable.Range(0, Total), seen);
        Assert.Equal(2, pages);
    }

    [Fact]
    public async Task DeviceByName_IsFound_AmongMoreThanAPageOfSimilarNames()
    {
        // 1,000 names contain the wanted one and sort before it: a lookup through one search page missed it.
        var wanted = "zz-" + Guid.NewGuid().ToString("N")[..8];
        await Parallel.ForEachAsync(Enumerable.Range(0, PageLimit), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
            await fixture.Admin.PostAsync("/api/device", new { name = $"{i:D4} {wanted}" }));
        var (id, _) = await fixture.Admin.CreateDeviceAsync(wanted);

        var found = await fixture.Admin.GetAsync($"/api/tenant/devices/{Uri.EscapeDataString(wanted)}");
        Assert.Equal(id.ToString(), found["id"]!["id"]!.GetValue<string>());
        var missing = await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/tenant/devices/{Uri.EscapeDataString(wanted + "-none")}");
        await PlatformApi.ExpectProblemAsync(missing, HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task LongPolls_OfOneDevice_AreBounded_AndTheWaitingOnesStillGetTheUpdate()
    {
        const int Allowed = 8;
        var (id, token) = await fixture.Admin.CreateDeviceAsync("polls-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = new HttpClient { BaseAddress = Server.HttpBaseAddress, Timeout = ServerProcess.Guard };
        var polls = Enumerable.Range(0, Allowed + 4).Select(_ => http.GetAsync($"/api/v1/{token}/attributes/updates?timeout=60000")).ToList();

        // The polls past the limit are answered 429 at once; the others wait.
        var refused = new List<Task<HttpResponseMessage>>();
        while (refused.Count < 4)
        {
            var done = await Task.WhenAny(polls);
            polls.Remove(done);
            using var response = await done;
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            Assert.NotNull(response.Headers.RetryAfter);
            refused.Add(done);
        }

        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { interval = 5 });
        Assert.Equal(Allowed, polls.Count);
        foreach (var poll in polls)
        {
            using var response = await poll;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("\"interval\":5", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using var after = await http.GetAsync($"/api/v1/{token}/attributes/updates?timeout=1");
        Assert.Equal(HttpStatusCode.RequestTimeout, after.StatusCode);
    }

    /// <summary>The largest page of a management list (PageRequest.MaxPageSize).</summary>
    private const int PageLimit = 1_000;

    [Theory]
    [InlineData("9223372036854775807")]
    [InlineData("4102444800000")] // 2100-01-01
    [InlineData("1")]
    [InlineData("946684799999")] // a millisecond before 2000-01-01
    public async Task Telemetry_OutsideTheTimestampWindow_IsRefusedWithAReason_AndTheLatestValueMovesOn(string ts)
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("window-" + Guid.NewGuid().ToString("N")[..8]);
        var (status, body) = await Curl.RunAsync("-X", "POST", $"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/telemetry",
            "--header", "Content-Type:application/json", "--data", $"{{\"ts\":{ts},\"values\":{{\"level\":1}}}}");
        Assert.Equal(400, status);
        Assert.Contains("ts", body, StringComparison.Ordinal);

        await using (var device = await DeviceClient.ConnectAsync(Server, token, MqttProtocolVersion.V500))
        {
            var refused = await device.TryPublishAsync("v1/devices/me/telemetry", $"{{\"ts\":{ts},\"values\":{{\"level\":2}}}}");
            Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, refused.ReasonCode);

            // Nothing of the refused messages was kept: the next point is the latest value.
            await device.PublishAsync("v1/devices/me/telemetry", "{\"level\":3}");
        }

        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(3, latest["level"].Value!.GetValue<int>());
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.InRange(latest["level"].Ts, now - 60_000, now + 60_000);
    }

    [Fact]
    public async Task Telemetry_InsideTheWindow_IsAccepted_EvenAnHourAhead()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("window-ok-" + Guid.NewGuid().ToString("N")[..8]);
        var ahead = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds();
        var (status, _) = await Curl.RunAsync("-X", "POST", $"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/telemetry",
            "--data", $"[{{\"ts\":946684800000,\"values\":{{\"v\":1}}}},{{\"ts\":{ahead.ToString(CultureInfo.InvariantCulture)},\"values\":{{\"v\":2}}}}]");
        Assert.Equal(200, status);
        Assert.Equal(ahead, (await fixture.Admin.LatestAsync(id))["v"].Ts);
    }

    [Fact]
    public async Task GatewayTelemetry_OutsideTheTimestampWindow_IsRefusedWhole()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("gw-window-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        var child = "Window child " + Guid.NewGuid().ToString("N")[..6];
        await using var gateway = await DeviceClient.ConnectAsync(Server, token);
        var result = await gateway.TryPublishAsync("v1/gateway/telemetry", $"{{\"{child}\":[{{\"ts\":9223372036854775807,\"values\":{{\"x\":1}}}}]}}");
        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, result.ReasonCode);
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public async Task DataDirectory_AndTheDatabaseFiles_ArePrivateToTheServersUser()
    {
        // A device write makes sure the WAL exists.
        var (_, token) = await fixture.Admin.CreateDeviceAsync("perm-" + Guid.NewGuid().ToString("N")[..8]);
        Assert.Equal(200, (await Curl.RunAsync("-X", "POST", $"http://127.0.0.1:{Server.HttpPort}/api/v1/{token}/telemetry", "--data", "{\"x\":1}")).Status);

        const UnixFileMode GroupOrOthers = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        Assert.Equal(UnixFileMode.None, File.GetUnixFileMode(Server.DataDirectory) & GroupOrOthers);
        var files = Directory.GetFiles(Server.DataDirectory);
        Assert.Contains(files, f => f.EndsWith("taihu.db", StringComparison.Ordinal));
        Assert.Contains(files, f => f.EndsWith("taihu.db-wal", StringComparison.Ordinal));
        foreach (var file in files)
        {
            if (Path.GetFileName(file) is "taihu-dev-cert.pem")
            {
                continue; // a public certificate, inside the private directory
            }

            Assert.True((File.GetUnixFileMode(file) & GroupOrOthers) == UnixFileMode.None, $"{Path.GetFileName(file)} is {File.GetUnixFileMode(file)}.");
        }
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public async Task AnExistingDataDirectory_LeftReadable_IsMadePrivateAtStart()
    {
        var directory = ServerProcess.NewDataDirectory();
        try
        {
            Directory.CreateDirectory(directory);
            File.SetUnixFileMode(directory, (UnixFileMode)Convert.ToInt32("755", 8));
            var leftOver = Path.Combine(directory, "taihu.db");
            await File.WriteAllBytesAsync(leftOver, []);
            File.SetUnixFileMode(leftOver, (UnixFileMode)Convert.ToInt32("644", 8));
            await using (var server = await ServerProcess.StartAsync(dataDirectory: directory))
            {
                Assert.Equal((UnixFileMode)Convert.ToInt32("700", 8), File.GetUnixFileMode(directory));
                Assert.Equal((UnixFileMode)Convert.ToInt32("600", 8), File.GetUnixFileMode(leftOver));
            }
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(directory);
        }
    }
}
