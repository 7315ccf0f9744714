using System.Text.Json.Nodes;
using Taihu.Protocols.Hj212;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// HJ 212 stations over TCP against the real server: data uploads become telemetry at their DataTime, the 9014
/// answer comes after the commit, split messages are put together, stations provision themselves by a profile's
/// key, and Modbus CRC is taken only from devices set to it.
/// </summary>
public sealed class Hj212Tests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    /// <summary>Creates a device with HJ212 credentials; returns its id and a fresh MN.</summary>
    internal static async Task<(Guid Id, string Mn)> CreateStationAsync(PlatformApi admin, string pw = "123456")
    {
        var mn = "MN" + Guid.NewGuid().ToString("N")[..18].ToUpperInvariant();
        var (id, _) = await admin.CreateDeviceAsync("station-" + mn);
        await admin.PostAsync("/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "HJ212", credentialsId = mn, credentialsValue = pw });
        return (id, mn);
    }

    [Fact]
    public async Task MinuteData_IsStoredAtItsDataTime_AndAcknowledgedAfterTheCommit()
    {
        var (id, mn) = await CreateStationAsync(fixture.Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, ms) = Hj212Station.DataTime(TimeSpan.FromMinutes(3));

        var answer = await station.UploadAsync("2051", $"DataTime={time};a34004-Min=21,a34004-Avg=35.5,a34004-Max=48,a34004-Flag=N;w01018-Avg=12.75,w01018-Flag=T");

        Assert.Equal("9014", answer.Cn);
        Assert.Equal("91", answer.St);
        Assert.Equal(mn, answer.Mn);
        Assert.Equal("123456", answer.Pw);
        Assert.False(answer.AnswerRequested);
        Assert.Equal("", answer.Cp);

        // 9014 goes out after the commit: the points are readable at once, without waiting.
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(ms, latest["a34004-Avg"].Ts);
        Assert.Equal(35.5, latest["a34004-Avg"].Value!.GetValue<double>());
        Assert.Equal(21, latest["a34004-Min"].Value!.GetValue<long>());
        Assert.Equal("N", latest["a34004-Flag"].Value!.GetValue<string>());
        Assert.Equal(12.75, latest["w01018-Avg"].Value!.GetValue<double>());
        Assert.Equal("T", latest["w01018-Flag"].Value!.GetValue<string>());
        Assert.Equal(ms, latest["w01018-Flag"].Ts);
    }

    [Fact]
    public async Task RealTimeHourAndDayData_OnALongConnection_AndAConnectionPerUpload()
    {
        var (id, mn) = await CreateStationAsync(fixture.Admin);
        var (rtd, rtdMs) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        var (hour, hourMs) = Hj212Station.DataTime(TimeSpan.FromHours(1));
        var (day, dayMs) = Hj212Station.DataTime(TimeSpan.FromDays(1));
        await using (var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456"))
        {
            // Real-time data without an answer asked (Flag=4): nothing comes back; the next upload's answer is the sync point.
            await station.SendAsync(station.Segment("2011", $"DataTime={rtd};a01001-Rtd=22.9,a01001-Flag=N", flag: 4));
            Assert.Equal("9014", (await station.UploadAsync("2061", $"DataTime={hour};a34002-Avg=60,a34002-Flag=N")).Cn);
        }

        await using (var again = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456"))
        {
            Assert.Equal("9014", (await again.UploadAsync("2031", $"DataTime={day};a34002-Avg=58.25,a34002-Flag=N")).Cn);
        }

        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal((rtdMs, 22.9), (latest["a01001-Rtd"].Ts, latest["a01001-Rtd"].Value!.GetValue<double>()));
        var history = await fixture.Admin.HistoryAsync(id, "a34002-Avg", dayMs - 1, hourMs + 1);
        Assert.Equal([(dayMs, 58.25), (hourMs, 60.0)], history.Select(p => (p.Ts, p.Value!.GetValue<double>())).ToArray());
    }

    [Fact]
    public async Task SplitMessage_EachPacketIsAnswered_AndTheWholeIsStoredBeforeTheLastAnswer()
    {
        var (id, mn) = await CreateStationAsync(fixture.Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, ms) = Hj212Station.DataTime(TimeSpan.FromMinutes(2));
        var qn = station.NextQn();
        // Flag 7: 2017 edition, split, answer asked. The second packet first: they are put in PNO order.
        await station.SendAsync($"QN={qn};ST=22;CN=2051;PW=123456;MN={mn};Flag=7;PNUM=2;PNO=2;CP=&&w21003-Avg=0.42,w21003-Flag=N&&");
        var held = await station.ReadAsync();
        Assert.Equal(("9014", qn), (held.Cn, held.Qn));
        // Nothing of the message yet (the connectivity series 'active' may be there: it is written within a second of the connect).
        Assert.Empty(await fixture.Admin.LatestAsync(id, "w21003-Avg,w01018-Avg"));

        await station.SendAsync($"QN={qn};ST=22;CN=2051;PW=123456;MN={mn};Flag=7;PNUM=2;PNO=1;CP=&&DataTime={time};w01018-Avg=30.1,w01018-Flag=N&&");
        var answer = await station.ReadAsync();
        Assert.Equal(("9014", qn), (answer.Cn, answer.Qn));
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal((ms, 0.42), (latest["w21003-Avg"].Ts, latest["w21003-Avg"].Value!.GetValue<double>()));
        Assert.Equal((ms, 30.1), (latest["w01018-Avg"].Ts, latest["w01018-Avg"].Value!.GetValue<double>()));
    }

    [Fact]
    public async Task UnknownMn_WithAProfilesProvisionKey_CreatesTheDevice_AndAnotherPwIsRefused()
    {
        var key = "K" + Guid.NewGuid().ToString("N")[..8];
        await fixture.Admin.PostAsync("/api/deviceProfile", new
        {
            name = "hj212-" + key,
            provisionType = "ALLOW_CREATE_NEW_DEVICES",
            profileData = new { provisionConfiguration = new { type = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, provisionDeviceSecret = "unused-secret" } },
        });
        var mn = "NEW" + Guid.NewGuid().ToString("N")[..16].ToUpperInvariant();
        var (time, ms) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        await using (var station = await Hj212Station.ConnectAsync(fixture.Server, mn, key))
        {
            Assert.Equal("9014", (await station.UploadAsync("2051", $"DataTime={time};a21026-Avg=7,a21026-Flag=N")).Cn);
        }

        var device = await fixture.Admin.GetAsync($"/api/tenant/devices/{mn}");
        var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        Assert.Equal("hj212-" + key, device["type"]!.GetValue<string>());
        var credentials = await fixture.Admin.GetAsync($"/api/device/{id}/credentials");
        Assert.Equal(("HJ212", mn), (credentials["credentialsType"]!.GetValue<string>(), credentials["credentialsId"]!.GetValue<string>()));
        Assert.Equal((ms, 7L), ((await fixture.Admin.LatestAsync(id))["a21026-Avg"].Ts, (await fixture.Admin.LatestAsync(id))["a21026-Avg"].Value!.GetValue<long>()));

        // The device exists now: its PW is the one it provisioned with, and nothing else.
        var before = await Hj212Metrics.RejectedAsync(fixture.Server, "wrong_password");
        await using var impostor = await Hj212Station.ConnectAsync(fixture.Server, mn, "other");
        await impostor.SendAsync(impostor.Segment("2051", $"DataTime={time};a21026-Avg=99,a21026-Flag=N"));
        await impostor.ExpectClosedAsync();
        await Hj212Metrics.WaitForRejectedAsync(fixture.Server, "wrong_password", before + 1);
        Assert.Equal(7L, (await fixture.Admin.LatestAsync(id))["a21026-Avg"].Value!.GetValue<long>());
    }

    [Fact]
    public async Task ModbusCrc_IsTakenOnlyFromADeviceSetToIt_AndAnsweredInKind()
    {
        var (id, mn) = await CreateStationAsync(fixture.Admin);
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        var before = await Hj212Metrics.RejectedAsync(fixture.Server, "bad_crc");
        await using (var modbus = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456", Hj212CrcKind.Modbus))
        {
            await modbus.SendAsync(modbus.Segment("2051", $"DataTime={time};a34004-Avg=1,a34004-Flag=N"));
            await Hj212Metrics.WaitForRejectedAsync(fixture.Server, "bad_crc", before + 1);
        }

        Assert.False((await fixture.Admin.LatestAsync(id)).ContainsKey("a34004-Avg"));

        // hj212Crc = "modbus" (server attribute), and a time zone of its own: UTC rather than China Standard Time.
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", new { hj212Crc = "modbus", hj212TimeZone = "+00:00" });
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456", Hj212CrcKind.Modbus);
        var answer = await station.UploadAsync("2051", $"DataTime={time};a34004-Avg=2,a34004-Flag=N");
        Assert.Equal("9014", answer.Cn);
        var stored = (await fixture.Admin.LatestAsync(id))["a34004-Avg"];
        var utc = DateTimeOffset.ParseExact(time, "yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal);
        Assert.Equal((utc.ToUnixTimeMilliseconds(), 2L), (stored.Ts, stored.Value!.GetValue<long>()));
    }

    [Fact]
    public async Task StationIsOnline_WhileConnected_AndStatusUploadsAreStored()
    {
        var (id, mn) = await CreateStationAsync(fixture.Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, ms) = Hj212Station.DataTime(TimeSpan.FromSeconds(30));
        // 2081: the data collector's restart time; its time stays text.
        Assert.Equal("9014", (await station.UploadAsync("2081", $"DataTime={time};RestartTime={time}")).Cn);
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal((ms, time), (latest["RestartTime"].Ts, latest["RestartTime"].Value!.GetValue<string>()));
        await fixture.Admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=active",
            node => node.AsArray().Any(a => a!["key"]!.GetValue<string>() == "active" && a["value"]!.GetValue<bool>()));
    }

    [Fact]
    public async Task Edition2005Frames_WithoutQnOrFlag_AreStored_AndNotAnswered()
    {
        var (id, mn) = await CreateStationAsync(fixture.Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, ms) = Hj212Station.DataTime(TimeSpan.FromMinutes(2));
        // HJ/T 212-2005: no QN, no Flag (so no answer asked), the 2005 pollutant codes.
        await station.SendAsync($"ST=32;CN=2051;PW=123456;MN={mn};CP=&&DataTime={time};B01-Avg=12.5,B01-Flag=N;011-Avg=30&&");
        // A 2017 upload after it is the sync point: its answer is the first frame back.
        Assert.Equal("9014", (await station.UploadAsync("2011", $"DataTime={time};a01001-Rtd=20")).Cn);
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal((ms, 12.5), (latest["B01-Avg"].Ts, latest["B01-Avg"].Value!.GetValue<double>()));
        Assert.Equal(30L, latest["011-Avg"].Value!.GetValue<long>());
    }
}
