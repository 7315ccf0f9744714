using Taihu.Sim.Scenarios;
using Taihu.Sim.Values;

namespace Taihu.Sim.Tests;

/// <summary>The scenario loader: what it reads, and the line it names for each kind of mistake.</summary>
public sealed class ScenarioLoaderTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("taihu-sim-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private Scenario Parse(string yaml) => ScenarioLoader.Parse(yaml, "test.yaml", _directory);

    private ScenarioException Refused(string yaml) => Assert.Throws<ScenarioException>(() => Parse(yaml));

    private const string Minimal = """
        name: minimal
        duration: 10m
        fleets:
          - name: meter-{n:00}
            count: 3
            interval: 1m
            telemetry:
              energy: 12.5
        """;

    [Fact]
    public void FirstPart_KeepsTheFaultsThatStartInIt_AndNoExpectations()
    {
        var scenario = Parse(Minimal.Replace("duration: 10m", "duration: 24h", StringComparison.Ordinal) + """

            faults:
              - kind: silence
                fleet: meter-{n:00}
                at: 5m
              - kind: disconnect
                fleet: meter-{n:00}
                at: 2h
            expect:
              - stored: 100%
            """);
        Assert.Equal(2, scenario.Faults.Count);
        Assert.Single(scenario.Expectations);

        var part = scenario.FirstPart(TimeSpan.FromMinutes(10));
        Assert.Equal(TimeSpan.FromMinutes(10), part.Duration);
        Assert.Equal(FaultKind.Silence, Assert.Single(part.Faults).Kind);
        Assert.Empty(part.Expectations);
        Assert.Same(scenario.Fleets, part.Fleets);
        Assert.Same(scenario, scenario.FirstPart(TimeSpan.FromHours(48)));
    }

    [Fact]
    public void Minimal_HasItsDefaults()
    {
        var scenario = Parse(Minimal);
        Assert.Equal("minimal", scenario.Name);
        Assert.Equal(TimeSpan.FromMinutes(10), scenario.Duration);
        var fleet = Assert.Single(scenario.Fleets);
        Assert.Equal(DeviceProtocol.Mqtt, fleet.Protocol);
        Assert.Equal(3, fleet.Count);
        Assert.Equal("meter-07", fleet.DeviceName(7));
        Assert.Equal(0, fleet.Jitter);
        Assert.Equal(SimValue.Of(12.5), fleet.Telemetry["energy"].Start(new Random(1)).Next(TimeSpan.Zero));
        Assert.Equal(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.FromHours(8)), scenario.StartTime);
    }

    [Fact]
    public void EveryPart_IsRead()
    {
        File.WriteAllText(Path.Combine(_directory, "flow.csv"), "time,flow\n0,1.5\n60,2.5\n");
        var scenario = Parse("""
            name: full
            description: Every part of a scenario.
            duration: 1h30m
            seed: 7
            startTime: "2026-06-01T06:00:00+08:00"
            profiles:
              - name: air
                inactivityTimeout: 10m
                alarms:
                  - id: pm25
                    alarmType: PM2.5 high
            fleets:
              - name: aq-{n}
                count: 4
                profile: air
                protocol: http
                interval: 30s
                jitter: 10%
                attributes: { model: AQ-1 }
                telemetry:
                  pm25: { model: diurnal, mean: 35, amplitude: 10, peakHour: 8, noise: 1, round: 1, min: 0 }
                  temperature: { model: sine, mean: 20, amplitude: 5, period: 1d, phase: 6h }
                  humidity: { model: randomWalk, start: 60, step: 1, min: 20, max: 100 }
                  flow: { model: csv, file: flow.csv, column: flow }
                  valve: { model: steps, steps: [ { at: 0s, value: 0 }, { at: 20m, value: 1 } ] }
                  status: { model: constant, value: ok }
                events:
                  - at: 20m
                    for: 15m
                    share: 0.25
                    telemetry:
                      pm25: { model: constant, value: 180 }
            """);
        Assert.Equal(7, scenario.Seed);
        Assert.Equal(TimeSpan.FromMinutes(90), scenario.Duration);
        var profile = Assert.Single(scenario.Profiles);
        Assert.Equal(TimeSpan.FromMinutes(10), profile.InactivityTimeout);
        Assert.Equal("PM2.5 high", profile.Alarms![0]!["alarmType"]!.GetValue<string>());
        var fleet = Assert.Single(scenario.Fleets);
        Assert.Equal(DeviceProtocol.Http, fleet.Protocol);
        Assert.Equal(0.1, fleet.Jitter, 9);
        Assert.Equal("AQ-1", fleet.Attributes!["model"]!.GetValue<string>());
        Assert.IsType<DiurnalModel>(fleet.Telemetry["pm25"]);
        Assert.Equal(6, ((DiurnalModel)fleet.Telemetry["pm25"]).StartHour, 9);
        Assert.Equal([1.5, 2.5], ((CsvModel)fleet.Telemetry["flow"]).Values);
        var episode = Assert.Single(fleet.Events);
        Assert.Equal(0.25, episode.Share);
        Assert.True(episode.IsActive(TimeSpan.FromMinutes(20)));
        Assert.False(episode.IsActive(TimeSpan.FromMinutes(35)));
        Assert.Equal(SimValue.Of(180), episode.Telemetry["pm25"].Start(new Random(1)).Next(TimeSpan.Zero));
        Assert.Equal("ok", fleet.Telemetry["status"].Start(new Random(1)).Next(TimeSpan.Zero).Text);
    }

    [Fact]
    public void YamlSyntaxError_NamesItsLine()
    {
        var e = Refused("name: broken\nduration: 10m\nfleets:\n  - name: [unclosed\n");
        Assert.Equal("test.yaml", e.Source);
        Assert.InRange(e.Line, 4, 5);
    }

    [Fact]
    public void KeyGivenTwice_NamesTheSecond()
    {
        var e = Refused("name: twice\nduration: 10m\nname: again\nfleets: []\n");
        Assert.Equal(3, e.Line);
        Assert.Contains("'name' is given twice", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MisspelledKey_NamesItsLine()
    {
        var e = Refused(Minimal.Replace("    interval: 1m", "    intervall: 1m", StringComparison.Ordinal));
        Assert.Equal(4, e.Line);
        Assert.StartsWith("test.yaml, line 4: fleets.0: Required properties [\"interval\"]", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("'intervall' is not a field here (line 6; misspelled?)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DurationWithoutUnit_NamesItsLine()
    {
        var e = Refused(Minimal.Replace("interval: 1m", "interval: 5 minutes", StringComparison.Ordinal));
        Assert.Equal(6, e.Line);
        Assert.Contains("fleets.0.interval", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MisspelledModelField_NamesItsLine()
    {
        var e = Refused(Minimal.Replace("energy: 12.5", "energy: { model: sine, mean: 1, amplitde: 2, period: 1h }", StringComparison.Ordinal));
        Assert.Equal(8, e.Line);
    }

    [Fact]
    public void UnknownModel_NamesItsLine()
    {
        var e = Refused(Minimal.Replace("energy: 12.5", "energy: { model: brownian }", StringComparison.Ordinal));
        Assert.Equal(8, e.Line);
    }

    [Fact]
    public void MissingRequiredField_NamesTheMappingThatLacksIt()
    {
        var e = Refused("name: x\nduration: 10m\nfleets:\n  - name: a\n    interval: 1m\n");
        Assert.Equal(4, e.Line);
        Assert.Contains("count", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UndefinedProfile_NamesTheFleetsLine()
    {
        var e = Refused(Minimal.Replace("    interval: 1m", "    interval: 1m\n    profile: nowhere", StringComparison.Ordinal));
        Assert.Equal(7, e.Line);
        Assert.Contains("'nowhere' is not defined", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Flood_NeedsItsRateAndLength_AndIsRead_WithTheProfilesRateLimit()
    {
        var e = Refused(Minimal + "\nfaults:\n  - kind: flood\n    fleet: meter-{n:00}\n    at: 5m\n    for: 1m\n");
        Assert.Equal(10, e.Line);
        Assert.Contains("rate: 20", e.Message, StringComparison.Ordinal);

        var scenario = Parse(Minimal.Replace("fleets:", "profiles:\n  - name: meter\n    rateLimits: { maxPublishRate: 0.5 }\nfleets:", StringComparison.Ordinal)
            .Replace("    interval: 1m", "    interval: 1m\n    profile: meter", StringComparison.Ordinal)
            + "\nfaults:\n  - kind: flood\n    fleet: meter-{n:00}\n    at: 5m\n    rate: 20\n    for: 1m\n");
        Assert.Equal(0.5, scenario.Profiles[0].MaxPublishRate);
        var flood = Assert.Single(scenario.Faults);
        Assert.Equal((FaultKind.Flood, 20.0, TimeSpan.FromMinutes(1)), (flood.Kind, flood.Rate, flood.For!.Value));

        var zero = Refused(Minimal + "\nfaults:\n  - kind: flood\n    fleet: meter-{n:00}\n    at: 5m\n    rate: 0\n    for: 1m\n");
        Assert.Equal(13, zero.Line);
    }

    [Fact]
    public void RealDevices_AreRead_AndWhatTheRunCannotDoToThemIsRefused()
    {
        const string Real = """
            name: real
            duration: 1h
            realDevices:
              - name: my-meter
                token: my-meter-token
                port: 18830
                sharedAttributes: { at: 10m, values: { interval: 60 } }
                limits: { messagesPerMinute: 10, payloadBytes: 512 }
            """;
        var scenario = Parse(Real + "\nexpect:\n  - behaves: my-meter\n");
        var fleet = Assert.Single(scenario.Fleets);
        Assert.Equal(("my-meter", 1), (fleet.Name, fleet.Count));
        Assert.Equal(new RealDeviceDefinition("my-meter-token", 18830, TimeSpan.FromMinutes(1), fleet.Real!.SharedAttributes, TimeSpan.FromMinutes(10), 10, 512), fleet.Real);
        Assert.Equal(ExpectationKind.Behaves, Assert.Single(scenario.Expectations).Kind);

        var malformed = Refused(Real + "\nfaults:\n  - kind: malformed\n    fleet: my-meter\n    at: 5m\n");
        Assert.Equal(10, malformed.Line);
        Assert.Contains("'my-meter' is a real device", malformed.Message, StringComparison.Ordinal);

        var unknown = Refused(Real + "\nexpect:\n  - behaves: your-meter\n");
        Assert.Equal(10, unknown.Line);
        Assert.Contains("no real device is named 'your-meter'", unknown.Message, StringComparison.Ordinal);

        var nothing = Refused("name: empty\nduration: 1h\n");
        Assert.Contains("fleets of simulated devices, real devices", nothing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FleetWithoutNumberInItsName_IsRefused()
    {
        var e = Refused(Minimal.Replace("meter-{n:00}", "meter", StringComparison.Ordinal));
        Assert.Equal(4, e.Line);
        Assert.Contains("{n}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingCsvFile_NamesItsLine()
    {
        var e = Refused(Minimal.Replace("energy: 12.5", "energy:\n        model: csv\n        file: nowhere.csv\n        column: kwh", StringComparison.Ordinal));
        Assert.Equal(10, e.Line);
        Assert.Contains("nowhere.csv", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CsvColumnThatIsNotThere_IsRefused()
    {
        File.WriteAllText(Path.Combine(_directory, "m.csv"), "time,kwh\n0,1\n1,x\n");
        var e = Refused(Minimal.Replace("energy: 12.5", "energy: { model: csv, file: m.csv, column: kwh }", StringComparison.Ordinal));
        Assert.Contains("row 3", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EventOnAKeyTheFleetDoesNotReport_IsRefused()
    {
        var e = Refused(Minimal + "\n    events:\n      - at: 5m\n        telemetry:\n          power: 3\n");
        Assert.Equal(12, e.Line);
        Assert.Contains("'power'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void StepsOutOfOrder_AreRefused()
    {
        var e = Refused(Minimal.Replace("energy: 12.5", "energy: { model: steps, steps: [ { at: 10m, value: 1 }, { at: 5m, value: 2 } ] }", StringComparison.Ordinal));
        Assert.Contains("time order", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Anchors_AreRefusedWithTheirLine()
    {
        var e = Refused("name: x\nduration: &d 10m\nfleets: []\n");
        Assert.Equal(2, e.Line);
        Assert.Contains("anchors", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("- a list\n- not a mapping\n")]
    [InlineData("just a string")]
    public void NotAMapping_IsRefused(string yaml) => Refused(yaml);

    private const string Alphabet = "abc:-[]{}&*!|>'\"%@`#,?\n \t0123456789";

    [Fact]
    public void Garbage_IsRefusedWithoutAnythingButAScenarioException()
    {
        var random = new Random(12);
        for (var i = 0; i < 300; i++)
        {
            var bytes = new char[random.Next(1, 200)];
            for (var j = 0; j < bytes.Length; j++)
            {
                bytes[j] = Alphabet[random.Next(Alphabet.Length)];
            }

            try
            {
                Parse(new string(bytes));
            }
            catch (ScenarioException)
            {
            }
        }
    }

    [Fact]
    public void ShippedScenarios_AllLoad()
    {
        var directory = Path.Combine(RepositoryRoot(), "scenarios");
        var files = Directory.GetFiles(directory, "*.yaml");
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            var scenario = ScenarioLoader.Load(file);
            Assert.NotEmpty(scenario.Fleets);
        }
    }

    internal static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Taihu.slnx")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("The repository root (with Taihu.slnx) was not found above " + AppContext.BaseDirectory);
    }
}
