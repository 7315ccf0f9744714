using System.Text.Json;
using Taihu.Protocols.Hj212;
using Taihu.Protocols.Jt808;
using Taihu.Sim.Running;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Tests;

/// <summary>
/// What the simulated stations and terminals put on the wire, read back with the codecs the server uses, and the
/// routes their vehicles drive.
/// </summary>
public sealed class ProtocolDeviceTests
{
    private static JsonElement Values(string json) => JsonDocument.Parse(json).RootElement.Clone();

    [Fact]
    public void Jt808Location_IsReadBackByTheListenersCodec()
    {
        var time = new DateTimeOffset(2026, 6, 1, 7, 30, 15, TimeSpan.FromHours(8));
        var body = Jt808SimDevice.LocationBody(
            Values("""{"latitude":31.574123,"longitude":120.297456,"speed":42.5,"direction":275,"altitude":6,"alarm":2,"mileage":12345.6,"fuel":88.4}"""), time);
        Assert.Equal(Jt808LocationError.None, Jt808Location.TryRead(body, out var location));
        Assert.Equal(31.574123, location.Latitude, 6);
        Assert.Equal(120.297456, location.Longitude, 6);
        Assert.Equal(425, location.Speed);
        Assert.Equal(275, location.Direction);
        Assert.Equal(6, location.Altitude);
        Assert.Equal(2u, location.Alarm);
        Assert.Equal(0x3u, location.Status); // ACC on, positioned, north and east
        Assert.Equal(123456u, location.Mileage);
        Assert.Equal((ushort)884, location.Fuel);
        Assert.Equal(time.ToUnixTimeMilliseconds(), location.TimeMs);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Jt808Frame_WithItsCheckCodeBroken_StillFrames_ButFailsItsCheck(int variant)
    {
        // Bodies whose check code comes out plain, 0x7E or 0x7D (escaped in the frame) and 0x00.
        var frames = new List<byte[]>();
        for (var b = 0; b < 256 && frames.Count < 64; b++)
        {
            var message = new byte[] { 0x02, 0x00, 0x00, 0x01, 0x01, 0x38, 0x00, 0x12, 0x34, 0x56, 0x00, 0x01, (byte)b };
            byte check = 0;
            foreach (var x in message)
            {
                check ^= x;
            }

            if ((variant == 0 && check is not (0x7E or 0x7D or 0x00)) || (variant == 1 && check == 0x7E) || (variant == 2 && check == 0x7D) || (variant == 3 && check == 0x00))
            {
                frames.Add(Jt808Framing.Encode(message));
            }
        }

        Assert.NotEmpty(frames);
        var unescaped = new byte[Jt808Framing.MaxUnescapedLength];
        foreach (var frame in frames)
        {
            Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(frame, unescaped, out _, out _, out _));
            Jt808SimDevice.BreakCheckCode(frame);
            Assert.Equal(Jt808ReadStatus.Invalid, Jt808Framing.TryRead(frame, unescaped, out _, out _, out var error));
            Assert.Equal(Jt808FrameError.CheckCodeMismatch, error);
        }
    }

    [Fact]
    public void Jt808Location_BeforeTheFirstFix_IsAValidReportThatSaysNotPositioned()
    {
        var time = new DateTimeOffset(2026, 6, 1, 7, 0, 0, TimeSpan.FromHours(8));
        Assert.Equal(Jt808LocationError.None, Jt808Location.TryRead(Jt808SimDevice.NotPositioned(time), out var location));
        Assert.Equal(0u, location.Status);
        Assert.Equal(time.ToUnixTimeMilliseconds(), location.TimeMs);
    }

    [Fact]
    public void Jt808Location_SouthAndWest_SetTheirStatusBits_AndLeaveOutExtrasNotReported()
    {
        var body = Jt808SimDevice.LocationBody(Values("""{"latitude":-33.8688,"longitude":-70.6693,"speed":0}"""), DateTimeOffset.UnixEpoch.AddYears(56));
        Assert.Equal(Jt808Location.BasicLength, body.Length);
        Assert.Equal(Jt808LocationError.None, Jt808Location.TryRead(body, out var location));
        Assert.Equal(0x3u | 0x4u | 0x8u, location.Status);
        Assert.Equal(-33.8688, location.Latitude, 6);
        Assert.Equal(-70.6693, location.Longitude, 6);
        Assert.Null(location.Mileage);
    }

    [Fact]
    public void Hj212Upload_IsReadBackByTheListenersCodec_OnePointPerKey()
    {
        var dataTime = new DateTimeOffset(2026, 6, 1, 14, 0, 0, TimeSpan.FromHours(8));
        var segment = Hj212SimDevice.Segment("20260601140000123", "32", "2011", "p1234", "SIM0001", Values("""{"w01018-Rtd":182.5,"w01018-Flag":"N","w00000-Rtd":12}"""), dataTime);
        Assert.True(Hj212Message.TryParse(segment, out var message, out var error), error);
        Assert.Equal(("2011", "SIM0001", "p1234", true, 1), (message!.Cn, message.Mn, message.Pw, message.AnswerRequested, message.Edition));
        var points = new List<Hj212Point>();
        Assert.True(Hj212Data.TryRead(message.Cp, TimeSpan.FromHours(8), points, out var timestamp, out error), error);
        Assert.Equal(dataTime.ToUnixTimeMilliseconds(), timestamp);
        Assert.Equal([new Hj212Point("w01018-Rtd", 182.5, null), new Hj212Point("w01018-Flag", null, "N"), new Hj212Point("w00000-Rtd", 12, null)], points);

        // The frame round-trips through the listener's framing with its CRC.
        var frame = Hj212Framing.Encode(segment);
        Assert.Equal(Hj212ReadStatus.Frame, Hj212Framing.TryRead(frame, Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out _, out var consumed, out _));
        Assert.Equal(frame.Length, consumed);
    }

    [Theory]
    [InlineData("w01018-Rtd", "1m", "2011")]
    [InlineData("w01018-Avg", "10m", "2051")]
    [InlineData("a34004-Avg", "1h", "2061")]
    [InlineData("a34004-Avg", "1d", "2031")]
    public void Hj212DataCommand_FollowsTheKeysAndTheInterval(string key, string interval, string cn)
    {
        var fleet = ScenarioLoader.Parse($"""
            name: s
            duration: 1d
            fleets:
              - name: st-{"{n}"}
                count: 2
                protocol: hj212
                interval: {interval}
                telemetry:
                  {key}: 1
            """, "s.yaml", ".").Fleets[0];
        Assert.Equal(cn, Hj212SimDevice.DataCommand(fleet));
    }

    [Fact]
    public void Credentials_FitTheProtocolsFields_AndDifferByDevice()
    {
        var (type, mn, pw) = ProtocolCredentials.For(DeviceProtocol.Hj212, "a1b2c3d4", 12, 15000)!.Value;
        Assert.Equal("HJ212", type);
        Assert.InRange(mn.Length, 1, 24);
        Assert.InRange(pw.Length, 1, 9);
        var (_, phone, _) = ProtocolCredentials.For(DeviceProtocol.Jt808, "a1b2c3d4", 3, 4999)!.Value;
        var (_, other, _) = ProtocolCredentials.For(DeviceProtocol.Jt808, "a1b2c3d4", 3, 5000)!.Value;
        Assert.Matches("^[1-9][0-9]{11}$", phone);
        Assert.NotEqual(phone, other);
        Assert.Null(ProtocolCredentials.For(DeviceProtocol.Mqtt, "a1b2c3d4", 0, 1));
    }

    [Fact]
    public void RouteCursor_DrivesItsLoop_AtItsSpeed_AndCountsTheOdometer()
    {
        // A square of 1 km sides: north, east, south, west.
        var origin = new GeoPoint(31.5, 120.3);
        var loop = new[] { origin, RouteDefinition.Offset(origin, 1000, 0), RouteDefinition.Offset(origin, 1000, 1000), RouteDefinition.Offset(origin, 0, 1000), origin };
        var cursor = new RouteCursor(loop, 0, 100);
        Assert.Equal(4000, cursor.Length, 0);

        // 36 km/h for 50 s is 500 m north.
        var (position, heading) = cursor.Advance(TimeSpan.FromSeconds(50), 36);
        Assert.Equal(0, heading);
        Assert.Equal(500, RouteCursor.Distance(origin, position), 0);
        Assert.Equal(100.5, cursor.OdometerKm, 3);

        // Another 1,000 m: on the east side, heading east; then round past the start (the loop wraps).
        (position, heading) = cursor.Advance(TimeSpan.FromSeconds(100), 36);
        Assert.Equal(90, heading);
        Assert.Equal(500, RouteCursor.Distance(loop[1], position), 0);
        (_, heading) = cursor.Advance(TimeSpan.FromSeconds(300), 36);
        Assert.Equal(0, heading);
        Assert.Equal(104.5, cursor.OdometerKm, 3);
    }

    [Fact]
    public void Route_OnAnOpenLine_IsDrivenThereAndBack_AndAGridGivesEachVehicleItsOwnClosedLoop()
    {
        var line = new RouteDefinition([new GeoPoint(31.58, 120.30), new GeoPoint(31.57, 120.30), new GeoPoint(31.56, 120.31)], default, 0, 0, 60, 1);
        var there = line.LoopFor(1);
        Assert.Equal(5, there.Count);
        Assert.Equal(there[0], there[^1]);

        var grid = new RouteDefinition([], new GeoPoint(31.54, 120.26), 8, 500, 80, 1);
        var first = grid.LoopFor(1);
        var second = grid.LoopFor(2);
        Assert.Equal(first[0], first[^1]);
        Assert.NotEqual(first[1], second[1]);
        Assert.All(grid.LoopFor(64), p => Assert.InRange(RouteCursor.Distance(grid.GridOrigin, p), 0, 8 * 500 * 1.5));
    }

    [Fact]
    public void Vehicle_SetsTheOverspeedBit_AboveTheLimit_AndLeavesKeysTheFleetReportsItself()
    {
        var fleet = ScenarioLoader.Parse("""
            name: s
            duration: 1h
            fleets:
              - name: taxi-{n}
                count: 2
                protocol: jt808
                interval: 30s
                route: { grid: { origin: [31.54, 120.26], blocks: 4, blockMeters: 500 }, speedLimit: 80 }
                telemetry:
                  speed: 50
                  direction: 7
            """, "s.yaml", ".").Fleets[0];
        var vehicle = new VehicleMotion(fleet.Route!, fleet, 1, 2, new Random(1));
        string Report(TimeSpan t, double speed)
        {
            using var stream = new MemoryStream();
            using (var writer = new Utf8JsonWriter(stream))
            {
                writer.WriteStartObject();
                vehicle.Write(writer, t, speed);
                writer.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(stream.ToArray());
        }

        var slow = JsonDocument.Parse(Report(TimeSpan.FromMinutes(1), 50)).RootElement;
        Assert.Equal(0, slow.GetProperty("alarm").GetInt32());
        Assert.False(slow.TryGetProperty("direction", out _));
        Assert.True(slow.TryGetProperty("latitude", out _));
        var fast = JsonDocument.Parse(Report(TimeSpan.FromMinutes(2), 100)).RootElement;
        Assert.Equal(VehicleMotion.OverspeedBit, fast.GetProperty("alarm").GetInt32());
        Assert.True(fast.GetProperty("mileage").GetDouble() > slow.GetProperty("mileage").GetDouble());
        Assert.Equal(1000 * 100 / 60.0, vehicle.Travelled - (1000 * 50 / 60.0), 3);
    }
}

/// <summary>The loader's checks for fleets on HJ 212 and JT/T 808, routes, and included files.</summary>
public sealed class ProtocolScenarioLoaderTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("taihu-sim-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private ScenarioException Refused(string yaml) => Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(yaml, "test.yaml", _directory));

    [Fact]
    public void Jt808Fleet_WithAKeyTheReportCannotCarry_IsRefusedAtItsLine()
    {
        var error = Refused("""
            name: s
            duration: 1h
            fleets:
              - name: bus-{n}
                count: 2
                protocol: jt808
                interval: 30s
                telemetry:
                  speed: 30
                  passengers: 12
            """);
        Assert.Equal(10, error.Line);
        Assert.Contains("a JT/T 808 location report has no 'passengers'", error.Problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("cod: 12", 9, "an HJ 212 key is a pollutant code and a field")]
    [InlineData("w01018-Avg: 12\n      w01018-Rtd: 12", 8, "either real-time data")]
    public void Hj212Fleet_WithKeysThatAreNotHj212Items_IsRefused(string keys, int line, string message)
    {
        var error = Refused($"""
            name: s
            duration: 1h
            fleets:
              - name: st-{"{n}"}
                count: 2
                protocol: hj212
                interval: 1m
                telemetry:
                  {keys}
            """);
        Assert.Equal(line, error.Line);
        Assert.Contains(message, error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Route_WithALatitudeOutOfRange_IsRefusedAtThePoint()
    {
        var error = Refused("""
            name: s
            duration: 1h
            fleets:
              - name: bus-{n}
                count: 2
                protocol: jt808
                interval: 30s
                route:
                  points:
                    - [31.5, 120.3]
                    - [120.3, 31.5]
                telemetry:
                  speed: 30
            """);
        Assert.Equal(11, error.Line);
        Assert.Contains("latitude within ±90", error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void OversizedFault_OnAnHj212Fleet_IsRefused()
    {
        var error = Refused("""
            name: s
            duration: 1h
            fleets:
              - name: st-{n}
                count: 2
                protocol: hj212
                interval: 1m
                telemetry:
                  w01018-Avg: 12
            faults:
              - kind: oversized
                fleet: st-{n}
                at: 10m
            """);
        Assert.Equal(11, error.Line);
        Assert.Contains("cannot carry", error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Include_TakesTheFilesFleetsScaled_AndItsExpectationsUnlessTold()
    {
        File.WriteAllText(Path.Combine(_directory, "zone.yaml"), """
            name: zone
            duration: 2h
            profiles:
              - name: meter
            fleets:
              - name: em-{n}
                count: 10
                profile: meter
                interval: 1h
                telemetry:
                  energy: 1
            rpc:
              - fleet: em-{n}
                method: ping
                every: 1h
            expect:
              - stored: 100%
            """);
        var city = ScenarioLoader.Parse("""
            name: city
            duration: 1d
            include:
              - file: zone.yaml
                scale: 2.5
            fleets:
              - name: parking-{n}
                count: 3
                profile: meter
                protocol: coap
                interval: 10m
                telemetry:
                  occupied: 0
            expect:
              - acknowledged: 100%
                fleet: em-{n}
            """, "city.yaml", _directory);
        Assert.Equal(TimeSpan.FromDays(1), city.Duration);
        Assert.Equal([("em-{n}", 25), ("parking-{n}", 3)], city.Fleets.Select(f => (f.Name, f.Count)));
        Assert.Equal(DeviceProtocol.Coap, city.Fleets[1].Protocol);
        Assert.Equal("meter", Assert.Single(city.Profiles).Name);
        Assert.Single(city.RpcCalls);
        Assert.Equal([(ExpectationKind.Stored, 4), (ExpectationKind.Acknowledged, 15)], city.Expectations.Select(e => (e.Kind, e.Line)));

        var quiet = ScenarioLoader.Parse("name: c\nduration: 1d\ninclude:\n  - file: zone.yaml\n    expect: false\nfleets:\n  - name: p-{n}\n    count: 2\n    interval: 1m\n", "c.yaml", _directory);
        Assert.Empty(quiet.Expectations);
    }

    [Fact]
    public void Include_OfAFleetDefinedTwice_NamesTheIncludesLine()
    {
        File.WriteAllText(Path.Combine(_directory, "zone.yaml"), "name: zone\nduration: 1h\nfleets:\n  - name: em-{n}\n    count: 2\n    interval: 1m\n");
        var error = Refused("name: c\nduration: 1d\ninclude:\n  - file: zone.yaml\n  - file: zone.yaml\nfleets:\n  - name: p-{n}\n    count: 2\n    interval: 1m\n");
        Assert.Equal(5, error.Line);
        Assert.Contains("the fleet 'em-{n}' of 'zone' is defined twice", error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Include_OfAMissingFile_IsRefused()
    {
        var error = Refused("name: c\nduration: 1d\ninclude:\n  - file: nowhere.yaml\nfleets:\n  - name: p-{n}\n    count: 2\n    interval: 1m\n");
        Assert.Equal(4, error.Line);
        Assert.Contains("'nowhere.yaml' is not there", error.Problem, StringComparison.Ordinal);
    }
}
