using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Taihu.Protocols.Jt808;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// JT/T 808 terminals against the real server: registration, authentication, locations as telemetry acknowledged
/// after commit, heartbeats, deregistration, provisioning by manufacturer ID, and the refusals. The terminal is a raw
/// TCP socket (<see cref="Jt808Terminal"/>).
/// </summary>
public sealed class Jt808Tests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    /// <summary>
    /// A location report with every extra item go-jt808 knows (cuteLittleDevil/go-jt808,
    /// protocol/model/t_0x0200_addition_test.go, case "包含全部已知附加信息的"); its body is sent here under this test's phone number.
    /// </summary>
    internal const string GoJt808LocationFrame =
        "7e020000800123456789017fff000004000000080006eeb6ad02633df701380003006320070719235901040000000b02020016030200210402002c051e3737370000000000000000000000000000000000000000000000000000001105420000004212064d0000004d4d1307000000580058582504000000632a02000a2b040000001430011e31012806020001927e";

    /// <summary>go-jt808's batch 0x0704 (protocol/model/parse_test.go, case "T0x0704 位置批量上传"): two reports at 2024-10-01 23:59:59 GMT+8.</summary>
    internal const string GoJt808BatchFrame =
        "7e0704003f0123456789010000000200001c000004000000080007203b7d0202633df7013800030063241001235959001c000004000000080007203b7d0202633df7013800030063241001235959b67e";

    /// <summary>The body of a published frame, read with the codec (escapes undone, check code verified).</summary>
    internal static byte[] BodyOf(string frameHex)
    {
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(Convert.FromHexString(frameHex), message, out var length, out _, out _));
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out _));
        return message.AsSpan(header!.Length, header.BodyLength).ToArray();
    }

    internal static async Task<Guid> CreateTerminalAsync(PlatformApi admin, string phone, string code)
    {
        var (id, _) = await admin.CreateDeviceAsync("bus-" + phone);
        await admin.PostAsync("/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "JT808", credentialsId = phone, credentialsValue = code });
        return id;
    }

    /// <summary>Reads the counter of <paramref name="reason"/> until it is above <paramref name="before"/> (each read a round trip; the exporter caches a scrape briefly).</summary>
    internal static async Task<bool> RejectedAboveAsync(ServerProcess server, string reason, double before)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            if (await RejectedAsync(server, reason) > before)
            {
                return true;
            }
        }

        return false;
    }

    internal static async Task<double> RejectedAsync(ServerProcess server, string reason)
    {
        using var http = new HttpClient { BaseAddress = server.HttpBaseAddress };
        var text = await http.GetStringAsync("/metrics");
        var sum = 0.0;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("taihu_protocol_rejected_total{", StringComparison.Ordinal) && line.Contains("protocol=\"jt808\"", StringComparison.Ordinal)
                && line.Contains($"reason=\"{reason}\"", StringComparison.Ordinal))
            {
                sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    [Fact]
    public async Task Terminal_RegistersAuthenticatesReports_AndEachReportIsAcknowledgedAfterItIsStored()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code-" + phone);
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);

        Assert.Equal((Jt808RegistrationResults.Ok, "code-" + phone), await terminal.RegisterAsync());
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code-" + phone));

        var serial = await terminal.SendAsync(Jt808MessageIds.Location, BodyOf(GoJt808LocationFrame));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.Location, serial));
        // Acknowledged after the commit: the point is there at once.
        var latest = await fixture.Admin.LatestAsync(id);
        var ts = new DateTimeOffset(2020, 7, 7, 19, 23, 59, TimeSpan.FromHours(8)).ToUnixTimeMilliseconds();
        Assert.Equal(ts, latest["latitude"].Ts);
        Assert.Equal(116.307629, latest["latitude"].Value!.GetValue<double>());
        Assert.Equal(40.058359, latest["longitude"].Value!.GetValue<double>());
        Assert.Equal(312, latest["altitude"].Value!.GetValue<long>());
        Assert.Equal(0.3, latest["speed"].Value!.GetValue<double>());
        Assert.Equal(99, latest["direction"].Value!.GetValue<long>());
        Assert.Equal(1024, latest["alarm"].Value!.GetValue<long>());
        Assert.Equal(2048, latest["status"].Value!.GetValue<long>());
        Assert.Equal(1.1, latest["mileage"].Value!.GetValue<double>());
        Assert.Equal(2.2, latest["fuel"].Value!.GetValue<double>());
        Assert.Equal(3.3, latest["recordedSpeed"].Value!.GetValue<double>());
        Assert.Equal(99, latest["vehicleSignal"].Value!.GetValue<long>());
        Assert.Equal(10, latest["ioStatus"].Value!.GetValue<long>());
        Assert.Equal(30, latest["signalStrength"].Value!.GetValue<long>());
        Assert.Equal(40, latest["satellites"].Value!.GetValue<long>());
        Assert.Equal(1, latest["carriageTemperature"].Value!.GetValue<long>());

        // A report in the southern and western hemispheres, now.
        var now = DateTimeOffset.UtcNow;
        serial = await terminal.SendAsync(Jt808MessageIds.Location, Jt808Terminal.LocationBody(-33.868820, -151.209296, 456, now, extras: [(0x01, [0, 0, 0x30, 0x39])]));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.Location, serial));
        latest = await fixture.Admin.LatestAsync(id, "latitude,longitude,speed,mileage");
        Assert.Equal(now.ToUnixTimeSeconds() * 1000, latest["latitude"].Ts);
        Assert.Equal((-33.86882, -151.209296, 45.6, 1234.5),
            (latest["latitude"].Value!.GetValue<double>(), latest["longitude"].Value!.GetValue<double>(), latest["speed"].Value!.GetValue<double>(), latest["mileage"].Value!.GetValue<double>()));

        Assert.Equal(Jt808Results.Ok, await terminal.HeartbeatAsync());

        serial = await terminal.SendAsync(Jt808MessageIds.LocationBatch, BodyOf(GoJt808BatchFrame));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.LocationBatch, serial));
        var batchTs = new DateTimeOffset(2024, 10, 1, 23, 59, 59, TimeSpan.FromHours(8)).ToUnixTimeMilliseconds();
        var history = await fixture.Admin.HistoryAsync(id, "latitude", batchTs, batchTs + 1);
        Assert.Equal(119.552894, Assert.Single(history).Value!.GetValue<double>());

        // Deregistration: answered, then closed; the device and its credentials stay.
        serial = await terminal.SendAsync(Jt808MessageIds.Deregistration, []);
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.Deregistration, serial));
        Assert.True(await terminal.ClosedAsync());
        await fixture.Admin.GetAsync($"/api/device/{id}");
        var credentials = await fixture.Admin.GetAsync($"/api/device/{id}/credentials");
        Assert.Equal(phone, credentials["credentialsId"]!.GetValue<string>());

        // Registration data became client attributes.
        var attributes = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/CLIENT_SCOPE");
        var byKey = attributes.AsArray().ToDictionary(a => a!["key"]!.GetValue<string>(), a => a!["value"]!.ToString());
        Assert.Equal(("TAIHU", "T808-TEST", "ID00001", "苏B12345", "2"), (byKey["manufacturerId"], byKey["terminalModel"], byKey["terminalId"], byKey["plateNumber"], byKey["plateColor"]));
    }

    [Fact]
    public async Task Terminal2019_IsAnsweredWith2019Headers_AndItsImeiIsKept()
    {
        var phone = "000" + Jt808Terminal.NewPhone() + "00000";
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code2019");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone, is2019: true);
        Assert.Equal((Jt808RegistrationResults.Ok, "code2019"), await terminal.RegisterAsync(plate: "浙A0808"));
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code2019"));
        var serial = await terminal.SendAsync(Jt808MessageIds.Location, Jt808Terminal.LocationBody(31.49, 120.31, 300, DateTimeOffset.UtcNow));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.Location, serial));
        Assert.Equal(30.0, (await fixture.Admin.LatestAsync(id, "speed"))["speed"].Value!.GetValue<double>());
        var attributes = await fixture.Admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/CLIENT_SCOPE", a => a.AsArray().Any(x => x!["key"]!.GetValue<string>() == "imei"));
        var byKey = attributes.AsArray().ToDictionary(a => a!["key"]!.GetValue<string>(), a => a!["value"]!.ToString());
        Assert.Equal(("861234567890123", "V1.2.3", "浙A0808"), (byKey["imei"], byKey["softwareVersion"], byKey["plateNumber"]));
    }

    [Fact]
    public async Task Jt808VersionAttribute_Says2011_SoALongRegistrationIsReadIn2011sLayout()
    {
        // A 2011 registration (model 8 bytes) with a plate long enough that its body also fits 2013's 37 fixed
        // bytes: from the frame alone it would be read as 2013 and the fields would shift.
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code2011");
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", new { jt808Version = "2011" });
        byte[] body = [0x00, 0x20, 0x01, 0x40, .. "OLD01"u8, .. "T808-OLD"u8, .. "TID0001"u8, 1, .. Jt808Text.Gbk.GetBytes("苏B12345挂车ABCDEFG")];
        Assert.True(body.Length >= 37);
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        await terminal.SendAsync(Jt808MessageIds.Registration, body);
        var (header, reply) = await terminal.ReadAsync();
        Assert.Equal((Jt808MessageIds.RegistrationReply, (byte)0), (header.MessageId, reply[2]));
        var attributes = await fixture.Admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/CLIENT_SCOPE", a => a.AsArray().Count > 0);
        var byKey = attributes.AsArray().ToDictionary(a => a!["key"]!.GetValue<string>(), a => a!["value"]!.ToString());
        Assert.Equal(("OLD01", "T808-OLD", "TID0001", "苏B12345挂车ABCDEFG"), (byKey["manufacturerId"], byKey["terminalModel"], byKey["terminalId"], byKey["plateNumber"]));
    }

    [Fact]
    public async Task UnknownTerminal_GetsResult4_IsClosed_AndNothingIsCreated()
    {
        var before = await RejectedAsync(fixture.Server, "unknown_device");
        var phone = Jt808Terminal.NewPhone();
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal((Jt808RegistrationResults.NoSuchTerminal, null), await terminal.RegisterAsync(manufacturerId: "NOKEY"));
        Assert.True(await terminal.ClosedAsync());
        Assert.True(await RejectedAboveAsync(fixture.Server, "unknown_device", before));
        var found = await fixture.Admin.GetAsync($"/api/tenant/devices?pageSize=10&page=0&textSearch={phone}");
        Assert.Empty(found["data"]!.AsArray());

        // Authenticating as an unknown terminal: failure, closed.
        await using var other = await Jt808Terminal.ConnectAsync(fixture.Server, Jt808Terminal.NewPhone());
        Assert.Equal(Jt808Results.Failure, await other.AuthenticateAsync("anything"));
        Assert.True(await other.ClosedAsync());
    }

    [Fact]
    public async Task ManufacturerIdThatIsAProvisionKey_CreatesTheTerminal_WhichThenAuthenticates()
    {
        var key = "M" + Guid.NewGuid().ToString("N")[..4].ToUpperInvariant();
        await fixture.Admin.PostAsync("/api/deviceProfile", new
        {
            name = "buses-" + key,
            provisionType = "ALLOW_CREATE_NEW_DEVICES",
            profileData = new { provisionConfiguration = new { type = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, provisionDeviceSecret = "unused-" + key } },
        });
        var phone = Jt808Terminal.NewPhone();
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        var (result, code) = await terminal.RegisterAsync(manufacturerId: key, plate: "苏B" + phone[^5..]);
        Assert.Equal(Jt808RegistrationResults.Ok, result);
        Assert.False(string.IsNullOrEmpty(code));
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync(code!));

        var device = await fixture.Admin.GetAsync($"/api/tenant/devices/{Uri.EscapeDataString($"苏B{phone[^5..]} ({phone})")}");
        Assert.Equal("buses-" + key, device["type"]!.GetValue<string>());
        var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        var serial = await terminal.SendAsync(Jt808MessageIds.Location, Jt808Terminal.LocationBody(31.5, 120.3, 0, DateTimeOffset.UtcNow));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.Location, serial));
        Assert.Equal(31.5, (await fixture.Admin.LatestAsync(id, "latitude"))["latitude"].Value!.GetValue<double>());
    }

    [Fact]
    public async Task ReportsOverTheProfilesPublishRate_AreRefusedWithResult1_AndNotStored()
    {
        var key = "R" + Guid.NewGuid().ToString("N")[..4].ToUpperInvariant();
        await fixture.Admin.PostAsync("/api/deviceProfile", new
        {
            name = "limited-" + key,
            provisionType = "ALLOW_CREATE_NEW_DEVICES",
            profileData = new
            {
                provisionConfiguration = new { type = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, provisionDeviceSecret = "unused-" + key },
                rateLimits = new { maxPublishRate = 1 },
            },
        });
        var before = await RejectedAsync(fixture.Server, "rate_limited");
        var phone = Jt808Terminal.NewPhone();
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        var (_, code) = await terminal.RegisterAsync(manufacturerId: key, plate: "");
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync(code!));

        // Ten reports in one write, each a second apart in the terminal's time: a bucket of one per second lets
        // the first through and refuses the rest that come before it refills.
        var start = DateTimeOffset.UtcNow.AddMinutes(-1);
        var frames = new List<byte>();
        var serials = new List<ushort>();
        for (var i = 0; i < 10; i++)
        {
            serials.Add((ushort)(900 + i));
            frames.AddRange(terminal.Frame(Jt808MessageIds.Location, Jt808Terminal.LocationBody(30 + i, 120, 0, start.AddSeconds(i)), serial: (ushort)(900 + i)));
        }

        await terminal.SendRawAsync([.. frames]);
        var accepted = 0;
        foreach (var serial in serials)
        {
            var result = await terminal.ReadReplyAsync(Jt808MessageIds.Location, serial);
            Assert.True(result is Jt808Results.Ok or Jt808Results.Failure, $"result {result}");
            accepted += result == Jt808Results.Ok ? 1 : 0;
        }

        Assert.InRange(accepted, 1, 9);
        Assert.True(await RejectedAboveAsync(fixture.Server, "rate_limited", before + 10 - accepted - 1));
        var device = await fixture.Admin.GetAsync($"/api/tenant/devices/{phone}");
        var history = await fixture.Admin.HistoryAsync(Guid.Parse(device["id"]!["id"]!.GetValue<string>()), "latitude", 0, DateTimeOffset.UtcNow.AddDays(1).ToUnixTimeMilliseconds());
        Assert.Equal(accepted, history.Count);
    }

    [Fact]
    public async Task WrongCode_GetsFailure_AndIsClosed()
    {
        var before = await RejectedAsync(fixture.Server, "wrong_password");
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "right-code");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Failure, await terminal.AuthenticateAsync("wrong-code"));
        Assert.True(await terminal.ClosedAsync());
        Assert.True(await RejectedAboveAsync(fixture.Server, "wrong_password", before));
        Assert.Empty(await fixture.Admin.LatestAsync(id));
    }

    [Fact]
    public async Task LocationBeforeAuthentication_ClosesTheConnection_AndStoresNothing()
    {
        var before = await RejectedAsync(fixture.Server, "not_authenticated");
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        await terminal.SendAsync(Jt808MessageIds.Location, Jt808Terminal.LocationBody(31.5, 120.3, 0, DateTimeOffset.UtcNow));
        Assert.True(await terminal.ClosedAsync());
        Assert.True(await RejectedAboveAsync(fixture.Server, "not_authenticated", before));
        Assert.Empty(await fixture.Admin.LatestAsync(id));
    }

    [Fact]
    public async Task BadFrames_AreCountedAndAnsweredOrSkipped_NothingOfThemIsStored_AndTheConnectionGoesOn()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code"));
        var before = (CheckCode: await RejectedAsync(fixture.Server, "bad_check_code"), Garbage: await RejectedAsync(fixture.Server, "garbage"),
            Escape: await RejectedAsync(fixture.Server, "bad_escape"), Message: await RejectedAsync(fixture.Server, "bad_message"), Length: await RejectedAsync(fixture.Server, "bad_length"));

        // A wrong check code: "message error" (result 2) for that serial.
        var frame = terminal.Frame(Jt808MessageIds.Location, Jt808Terminal.LocationBody(10, 10, 0, DateTimeOffset.UtcNow), serial: 500);
        frame[13] ^= 0x01; // the first byte of the alarm flags

        await terminal.SendRawAsync(frame);
        Assert.Equal(Jt808Results.BadMessage, await terminal.ReadReplyAsync(Jt808MessageIds.Location, 500));

        // A location body too short for its fields: result 2.
        var serial = await terminal.SendAsync(Jt808MessageIds.Location, [1, 2, 3]);
        Assert.Equal(Jt808Results.BadMessage, await terminal.ReadReplyAsync(Jt808MessageIds.Location, serial));

        // Garbage, a broken escape, a body length that does not match: skipped. (Garbage right after a refused
        // frame would be read as the body of a frame opened by that frame's closing flag: a short frame.)
        await terminal.SendRawAsync([0x41, 0x54, 0x0D, 0x0A]);
        await terminal.SendRawAsync(Convert.FromHexString("7e0200000001234567890100017d037e"));
        var heartbeatHeader = new Jt808Header(Jt808MessageIds.Heartbeat, 0, null, phone, 501, null, null).Encode(0);
        heartbeatHeader[3] = 5; // a body of 5 bytes said, none sent
        await terminal.SendRawAsync(Jt808Framing.Encode(heartbeatHeader));

        // And a good report after all of it, split at a few byte positions across TCP writes.
        var good = terminal.Frame(Jt808MessageIds.Location, Jt808Terminal.LocationBody(20, 20, 0, DateTimeOffset.UtcNow), serial: 502);
        foreach (var cut in new[] { 1, 5, 13, good.Length - 1 })
        {
            await terminal.SendRawAsync(good[..cut]);
            await terminal.SendRawAsync(good[cut..]);
            Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.Location, 502));
        }

        var latitude = await fixture.Admin.HistoryAsync(id, "latitude", 0, DateTimeOffset.UtcNow.AddDays(1).ToUnixTimeMilliseconds());
        Assert.NotEmpty(latitude);
        Assert.All(latitude, p => Assert.Equal(20.0, p.Value!.GetValue<double>()));

        Assert.True(await RejectedAboveAsync(fixture.Server, "bad_check_code", before.CheckCode));
        Assert.True(await RejectedAboveAsync(fixture.Server, "garbage", before.Garbage));
        Assert.True(await RejectedAboveAsync(fixture.Server, "bad_escape", before.Escape));
        Assert.True(await RejectedAboveAsync(fixture.Server, "bad_message", before.Message));
        Assert.True(await RejectedAboveAsync(fixture.Server, "bad_length", before.Length));
    }

    [Fact]
    public async Task OverlongFrame_ClosesThatConnection_AndAnotherTerminalIsUndisturbed()
    {
        var (phoneA, phoneB) = (Jt808Terminal.NewPhone(), Jt808Terminal.NewPhone());
        await CreateTerminalAsync(fixture.Admin, phoneA, "code");
        await CreateTerminalAsync(fixture.Admin, phoneB, "code");
        await using var a = await Jt808Terminal.ConnectAsync(fixture.Server, phoneA);
        await using var b = await Jt808Terminal.ConnectAsync(fixture.Server, phoneB);
        Assert.Equal(Jt808Results.Ok, await a.AuthenticateAsync("code"));
        Assert.Equal(Jt808Results.Ok, await b.AuthenticateAsync("code"));
        var before = await RejectedAsync(fixture.Server, "too_long");

        var overlong = new byte[(2 * Jt808Framing.MaxUnescapedLength) + 100];
        overlong[0] = 0x7E;
        overlong.AsSpan(1).Fill(0x30);
        await a.SendRawAsync(overlong);
        Assert.True(await a.ClosedAsync());
        Assert.True(await RejectedAboveAsync(fixture.Server, "too_long", before));
        Assert.Equal(Jt808Results.Ok, await b.HeartbeatAsync());
    }

    [Fact]
    public async Task SubPackages_AreReassembled_AndTheWholeMessageIsHandled()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code"));

        // A batch of two reports split in two packages (serials 700 and 701), the second sent first.
        var one = Jt808Terminal.LocationBody(30.1, 120.1, 0, DateTimeOffset.UtcNow.AddSeconds(-2));
        var two = Jt808Terminal.LocationBody(30.2, 120.2, 0, DateTimeOffset.UtcNow.AddSeconds(-1));
        byte[] batch = [0, 2, 0, (byte)(one.Length >> 8), (byte)one.Length, .. one, (byte)(two.Length >> 8), (byte)two.Length, .. two];
        var half = batch.Length / 2;
        await terminal.SendRawAsync(Package(702, 2, 2, batch[half..]));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.LocationBatch, 702));
        // Nothing of the location yet (the connectivity series 'active' may be there: it is written within a second of the connect).
        Assert.Empty(await fixture.Admin.LatestAsync(id, "latitude"));
        await terminal.SendRawAsync(Package(701, 2, 1, batch[..half]));
        Assert.Equal(Jt808Results.Ok, await terminal.ReadReplyAsync(Jt808MessageIds.LocationBatch, 701));
        Assert.Equal(30.2, (await fixture.Admin.LatestAsync(id, "latitude"))["latitude"].Value!.GetValue<double>());

        byte[] Package(ushort serial, ushort count, ushort number, byte[] body)
        {
            var header = new Jt808Header(Jt808MessageIds.LocationBatch, 0x2000, null, phone, serial, count, number);
            return Jt808Framing.Encode([.. header.Encode(body.Length), .. body]);
        }
    }

    [Fact]
    public async Task Rpc_QueryLocation_SetParameters_AndSendText_AreAnsweredByTheTerminal()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code"));

        // queryLocation: 0x8201 out, 0x0201 back, the location as the call's answer.
        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "queryLocation" });
        var (header, body) = await terminal.ReadAsync();
        Assert.Equal((Jt808MessageIds.QueryLocation, 0), (header.MessageId, body.Length));
        var now = DateTimeOffset.UtcNow;
        byte[] answer = [(byte)(header.Serial >> 8), (byte)header.Serial, .. Jt808Terminal.LocationBody(31.57, 120.3, 420, now)];
        await terminal.SendAsync(Jt808MessageIds.LocationQueryReply, answer);
        var location = await PlatformApi.ExpectAsync(await call, HttpStatusCode.OK);
        Assert.Equal((31.57, 120.3, 42.0), (location["latitude"]!.GetValue<double>(), location["longitude"]!.GetValue<double>(), location["speed"]!.GetValue<double>()));

        // setParameters: by name and by id; 0x0001 with result 0 is success.
        call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "setParameters", @params = new Dictionary<string, object> { ["heartbeatInterval"] = 30, ["0x0029"] = 10, ["mainServerAddress"] = "iot.example.cn" } });
        (header, body) = await terminal.ReadAsync();
        Assert.Equal(Jt808MessageIds.SetParameters, header.MessageId);
        Assert.Equal("03" + "00000001" + "04" + "0000001E" + "00000029" + "04" + "0000000A" + "00000013" + "0E" + Convert.ToHexString("iot.example.cn"u8), Convert.ToHexString(body));
        await terminal.SendAsync(Jt808MessageIds.TerminalReply, [(byte)(header.Serial >> 8), (byte)header.Serial, 0x81, 0x03, 0]);
        Assert.Equal(0, (await PlatformApi.ExpectAsync(await call, HttpStatusCode.OK))["result"]!.GetValue<int>());

        // sendText in GBK; the terminal refuses it (result 1), which fails the call.
        var persistent = await fixture.Admin.PostAsync($"/api/rpc/twoway/{id}", new { method = "sendText", @params = new { text = "前方拥堵" }, persistent = true });
        (header, body) = await terminal.ReadAsync();
        Assert.Equal(Jt808MessageIds.TextMessage, header.MessageId);
        Assert.Equal("0C" + Convert.ToHexString(Jt808Text.Gbk.GetBytes("前方拥堵")), Convert.ToHexString(body));
        await terminal.SendAsync(Jt808MessageIds.TerminalReply, [(byte)(header.Serial >> 8), (byte)header.Serial, 0x83, 0x00, 1]);
        var rpcId = persistent["rpcId"]!.GetValue<string>();
        var failed = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{rpcId}", r => r["status"]!.GetValue<string>() == "FAILED");
        Assert.Equal(1, failed["response"]!["result"]!.GetValue<int>());

        // A method JT/T 808 has no frame for is answered at once, naming those it has.
        var unknown = await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "reboot" });
        Assert.Contains("queryLocation", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PersistentRpc_WaitsForTheTerminal_AndIsSentAfterItsAuthentication()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await CreateTerminalAsync(fixture.Admin, phone, "code");
        // A method JT/T 808 has no frame for, queued first: it fails as soon as the terminal is reachable.
        var unknown = (await fixture.Admin.PostAsync($"/api/rpc/twoway/{id}", new { method = "reboot", persistent = true }))["rpcId"]!.GetValue<string>();
        var queued = await fixture.Admin.PostAsync($"/api/rpc/twoway/{id}", new { method = "setParameters", @params = new { heartbeatInterval = 45 }, persistent = true });
        var rpcId = queued["rpcId"]!.GetValue<string>();
        Assert.Equal("QUEUED", (await fixture.Admin.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());

        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code"));
        var (header, body) = await terminal.ReadAsync();
        Assert.Equal(Jt808MessageIds.SetParameters, header.MessageId);
        Assert.Equal(45u, BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(6)));
        await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{rpcId}", r => r["status"]!.GetValue<string>() == "DELIVERED");
        await terminal.SendAsync(Jt808MessageIds.TerminalReply, [(byte)(header.Serial >> 8), (byte)header.Serial, 0x81, 0x03, 0]);
        var done = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{rpcId}", r => r["status"]!.GetValue<string>() == "SUCCESSFUL");
        Assert.Equal(0, done["response"]!["result"]!.GetValue<int>());
        var failed = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{unknown}", r => r["status"]!.GetValue<string>() == "FAILED");
        Assert.Contains("sendText", failed["response"]!["error"]!.GetValue<string>(), StringComparison.Ordinal);
    }
}
