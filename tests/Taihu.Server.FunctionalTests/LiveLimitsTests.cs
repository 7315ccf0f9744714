using System.Globalization;
using System.Net.WebSockets;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The live API's limits on a server of their own (small ones, so that they are reached quickly): a socket whose
/// client stops reading must not hold up ingest or anyone else, and a socket that never authenticates is closed.
/// </summary>
public sealed class LiveLimitsTests : IAsyncLifetime
{
    private ServerProcess _server = null!;

    public async Task InitializeAsync() => _server = await ServerProcess.StartAsync(new Dictionary<string, string>
    {
        ["Live__OutboundQueueLimit"] = "8",
        // Long enough that the client below, which starts reading once the server has given up on it, always gets
        // the close frame rather than an abort.
        ["Live__CloseTimeout"] = "00:05:00",
        ["Live__AuthenticationTimeout"] = "00:00:01",
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task ASocketThatDoesNotRead_IsClosedWithTheReason_WhileIngestAndOtherSocketsGoOn()
    {
        using var sys = await PlatformApi.SysAdminAsync(_server);
        var (_, admin) = await sys.CreateTenantWithAdminAsync("Slow");
        using var _ = admin;
        var (deviceId, token) = await admin.CreateDeviceAsync("busy");
        var subscribe = new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = deviceId, keys = "blob,n" };
        await using var slow = await LiveClient.ConnectAsync(_server, admin.Token!, subscribe);
        await using var fast = await LiveClient.ConnectAsync(_server, admin.Token!, subscribe);
        Assert.Equal(0, (await fast.NextAsync())["errorCode"]!.GetValue<int>());
        await using var device = await DeviceClient.ConnectAsync(_server, token);

        // 60 KB an update: the slow client's socket buffers (a few MB on loopback) fill after some dozens, then
        // its queue of 8. Each publish is acknowledged only once stored, so every acknowledgement below shows that
        // ingest went on; the fast socket must see every update, in order.
        var blob = new string('x', 60_000);
        var sent = 0;
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        while (sent < 2_000)
        {
            sent++;
            await device.PublishAsync("v1/devices/me/telemetry", $$"""{"n":{{sent}},"blob":"{{blob}}"}""");
            var update = await fast.NextAsync();
            Assert.Equal(sent.ToString(CultureInfo.InvariantCulture), update["data"]!["n"]![0]![1]!.GetValue<string>());
            if (sent % 25 == 0 && await Metrics.ReadAsync(http, "taihu_live_slow_consumers_total") is >= 1)
            {
                break;
            }
        }

        Assert.Equal(1, await Metrics.ReadAsync(http, "taihu_live_slow_consumers_total"));

        // The slow client reads at last: what was already on its way, then the close frame with the reason.
        var (status, reason) = await slow.ReadToCloseAsync();
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, status);
        Assert.Equal("Reading too slowly: 8 updates were waiting", reason);
        Assert.True(await Metrics.ReadAsync(http, "taihu_live_updates_dropped_total") >= 1);

        // The server and the fast socket carry on.
        await device.PublishAsync("v1/devices/me/telemetry", """{"n":-1}""");
        Assert.Equal("-1", (await fast.NextAsync())["data"]!["n"]![0]![1]!.GetValue<string>());
        await using var another = await LiveClient.ConnectAsync(_server, admin.Token!, subscribe);
        Assert.Equal("-1", (await another.NextAsync())["data"]!["n"]![0]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task ASocketThatNeverAuthenticates_IsClosedAtTheDeadline()
    {
        await using var silent = await LiveClient.OpenAsync(_server, "/api/ws");

        var frame = await silent.NextAsync();
        Assert.Equal(3, frame["errorCode"]!.GetValue<int>());
        Assert.Equal("Not authenticated: no authCmd within 1 s (Live:AuthenticationTimeout).", frame["errorMsg"]!.GetValue<string>());
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "Unauthorized"), await silent.ReadToCloseAsync());
    }
}
