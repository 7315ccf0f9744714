using System.Text;
using Taihu.Protocols.Hj212;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>A server whose HJ 212 connections idle out after 3 s (Hj212:IdleTimeout) and close after 12 bad frames in a row, with a tenant administrator.</summary>
public sealed class Hj212ShortIdleFixture : IAsyncLifetime
{
    private ServerProcess? _server;

    public ServerProcess Server => _server ?? throw new InvalidOperationException("The server has not started.");

    public PlatformApi Admin { get; private set; } = null!;

    private PlatformApi SysAdmin { get; set; } = null!;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Hj212__IdleTimeout"] = "00:00:03", ["Hj212__MaxBadFramesInARow"] = "12" });
        SysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_, Admin) = await SysAdmin.CreateTenantWithAdminAsync("Tenant " + Guid.NewGuid().ToString("N")[..8]);
    }

    public async Task DisposeAsync()
    {
        SysAdmin?.Dispose();
        Admin?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>
/// Bad input on the HJ 212 listener: each case dropped or closed as docs/protocols.md says, counted in
/// <c>/metrics</c> by reason, nothing of it stored, and other connections undisturbed.
/// </summary>
public sealed class Hj212BadInputTests(Hj212ShortIdleFixture fixture) : IClassFixture<Hj212ShortIdleFixture>
{
    private static byte[] Ascii(string text) => Encoding.ASCII.GetBytes(text);

    [Fact]
    public async Task BadCrc_BadLength_TooLong_Garbage_AndBadSegments_AreDropped_AndTheConnectionGoesOn()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        var reasons = new[] { "bad_crc", "bad_length", "too_long", "garbage", "bad_segment" };
        var before = new Dictionary<string, double>();
        foreach (var reason in reasons)
        {
            before[reason] = await Hj212Metrics.RejectedAsync(fixture.Server, reason);
        }

        var good = Hj212Framing.Encode(station.Segment("2051", $"DataTime={time};bad-crc=1"));
        good[^3] = (byte)(good[^3] == (byte)'0' ? '1' : '0');
        await station.SendRawAsync(good);
        await station.SendRawAsync(Ascii("GET / HTTP/1.1\r\n"));
        await station.SendRawAsync(Ascii("##12x4QN=1;CP=&&&&0000\r\n"));
        await station.SendRawAsync(Ascii("##9000QN=20260101000000000;ST=22;CN=2051"));
        await station.SendRawAsync(Hj212Framing.Encode($"QN=1;ST=22;CN=2051;PW=123456;MN={mn};Flag=5;CP=&&DataTime={time};no-close=1"));

        var answer = await station.UploadAsync("2051", $"DataTime={time};a34004-Avg=3,a34004-Flag=N");
        Assert.Equal("9014", answer.Cn);
        foreach (var reason in reasons)
        {
            await Hj212Metrics.WaitForRejectedAsync(fixture.Server, reason, before[reason] + 1);
        }

        // Only the good upload's points (the connectivity series "active" may or may not have been written yet).
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(["a34004-Avg", "a34004-Flag"], latest.Keys.Where(k => k != "active").Order(StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public async Task BadFramesInARow_CloseTheConnection_AndOtherStationsGoOn()
    {
        var (_, goodMn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        var (_, badMn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        await using var good = await Hj212Station.ConnectAsync(fixture.Server, goodMn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        await good.UploadAsync("2011", $"DataTime={time};a01001-Rtd=1");

        await using var bad = await Hj212Station.ConnectAsync(fixture.Server, badMn, "123456");
        var frames = new List<byte>();
        for (var i = 0; i < 12; i++)
        {
            var frame = Hj212Framing.Encode(bad.Segment("2011", $"DataTime={time};a01001-Rtd=2"));
            frame[^6] ^= 1;
            frames.AddRange(frame);
        }

        await bad.SendRawAsync([.. frames]);
        await bad.ExpectClosedAsync();
        Assert.Equal("9014", (await good.UploadAsync("2011", $"DataTime={time};a01001-Rtd=3")).Cn);
    }

    [Fact]
    public async Task UnknownMn_AndWrongPw_CloseTheConnection_AndStoreNothing()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        var unknownBefore = await Hj212Metrics.RejectedAsync(fixture.Server, "unknown_device");
        var wrongBefore = await Hj212Metrics.RejectedAsync(fixture.Server, "wrong_password");

        await using (var stranger = await Hj212Station.ConnectAsync(fixture.Server, "UNKNOWN" + Guid.NewGuid().ToString("N")[..10], "123456"))
        {
            await stranger.SendAsync(stranger.Segment("2051", $"DataTime={time};a34004-Avg=1"));
            await stranger.ExpectClosedAsync();
        }

        await using (var impostor = await Hj212Station.ConnectAsync(fixture.Server, mn, "654321"))
        {
            await impostor.SendAsync(impostor.Segment("2051", $"DataTime={time};a34004-Avg=1"));
            await impostor.ExpectClosedAsync();
        }

        await Hj212Metrics.WaitForRejectedAsync(fixture.Server, "unknown_device", unknownBefore + 1);
        await Hj212Metrics.WaitForRejectedAsync(fixture.Server, "wrong_password", wrongBefore + 1);
        Assert.Empty(await fixture.Admin.LatestAsync(id));

        // A later frame with another PW on an identified connection is checked again, and refused the same way.
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        await station.UploadAsync("2051", $"DataTime={time};a34004-Avg=2");
        await station.SendAsync(station.Segment("2051", $"DataTime={time};a34004-Avg=3").Replace("PW=123456", "PW=000000", StringComparison.Ordinal));
        await station.ExpectClosedAsync();
        Assert.Equal(2L, (await fixture.Admin.LatestAsync(id))["a34004-Avg"].Value!.GetValue<long>());
    }

    [Fact]
    public async Task AFrameSplitAcrossReads_IsReadWhole_WhereverItIsCut()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        var value = 0;
        foreach (var cut in new[] { 1, 2, 5, 6, 30, -6, -5, -2, -1 })
        {
            var qn = station.NextQn();
            var frame = Hj212Framing.Encode(station.Segment("2051", $"DataTime={time};a34004-Avg={++value}", qn: qn));
            var at = cut > 0 ? cut : frame.Length + cut;
            await station.SendRawAsync(frame[..at]);
            await station.SendRawAsync(frame[at..]);
            Assert.Equal(qn, (await station.ReadAsync()).Qn);
        }

        // And one byte per write.
        var last = station.NextQn();
        foreach (var b in Hj212Framing.Encode(station.Segment("2051", $"DataTime={time};a34004-Avg=100", qn: last)))
        {
            await station.SendRawAsync([b]);
        }

        Assert.Equal(last, (await station.ReadAsync()).Qn);
        Assert.Equal(100L, (await fixture.Admin.LatestAsync(id))["a34004-Avg"].Value!.GetValue<long>());
    }

    [Fact]
    public async Task HalfOpenConnections_AreClosed_AfterTheIdleTimeout_AndTheSessionEnds()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        var before = await Hj212Metrics.RejectedAsync(fixture.Server, "timeout");
        await using var silent = await Hj212Station.ConnectAsync(fixture.Server, "NOBODY", "x");
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        await station.UploadAsync("2011", $"DataTime={time};a01001-Rtd=1");
        await fixture.Admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=active",
            node => node.AsArray().Any(a => a!["value"]!.GetValue<bool>()));

        // Neither sends anything more: the server's idle timer (3 s here) closes both.
        await silent.ExpectClosedAsync();
        await station.ExpectClosedAsync();
        await Hj212Metrics.WaitForRejectedAsync(fixture.Server, "timeout", before + 2);
        // The station's session ended with the connection (ThingsBoard's lastDisconnectTime; "active" follows the inactivity timeout).
        await fixture.Admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=lastDisconnectTime",
            node => node.AsArray().Count == 1);
    }
}
