using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;
using Taihu.Sim.Running;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Tests;

/// <summary>One real server process for the scenario runs of this class.</summary>
public sealed class SimServerFixture : IAsyncLifetime
{
    public ServerProcess Server { get; private set; } = null!;

    public SimTarget Target => new(Server.HttpBaseAddress, "127.0.0.1", Server.TcpPort, "sysadmin@taihu.local", ServerProcess.AdminPassword)
    {
        Hj212Port = Server.Hj212Port,
        Jt808Port = Server.Jt808Port,
        CoapPort = Server.CoapPort,
    };

    public async Task InitializeAsync() => Server = await ServerProcess.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>The simulator's own executable, run as a user runs it.</summary>
internal static class Simulator
{
    /// <summary>Runs taihu-sim with <paramref name="arguments"/>; returns its exit code and what it wrote (stdout, then stderr).</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string[] arguments, string? adminPassword)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "taihu-sim.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (adminPassword is not null)
        {
            start.Environment["TAIHU_ADMIN_PASSWORD"] = adminPassword;
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return (process.ExitCode, await output + await errors);
    }
}

/// <summary>Runs a shipped scenario in its short form against the fixture's server.</summary>
internal static class ShippedScenario
{
    /// <summary>The report, and the run's log with the report's summary: what a failed assertion shows.</summary>
    public static async Task<(SimReport Report, string Log)> RunAsync(SimServerFixture fixture, string name, double speed, double scale)
    {
        var scenario = ScenarioLoader.Load(Path.Combine(ScenarioLoaderTests.RepositoryRoot(), "scenarios", name + ".yaml"));
        var log = new StringWriter();
        var report = await new SimRunner(scenario, new ScenarioScaling(speed, scale), fixture.Target, log).RunAsync(CancellationToken.None);
        var shown = report.Summary() + "\n" + log;
        Assert.True(report.Passed, shown);
        return (report, shown);
    }
}

/// <summary>The energy zone: meters that lose power raise the inactivity alarm, which clears when they return.</summary>
public sealed class EnergyScenarioTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task Energy_ShortForm_MeetsItsExpectations()
    {
        var (report, _) = await ShippedScenario.RunAsync(fixture, "energy", 1800, 0.05);
        Assert.Equal([10, 5], report.Fleets.Select(f => f.Devices));
        var alarm = Assert.Single(report.Alarms);
        Assert.Equal("em-0001", alarm.Device);
        Assert.InRange(alarm.RaisedAt, TimeSpan.FromHours(5), TimeSpan.FromHours(7));
        Assert.InRange(alarm.ClearedAt!.Value, TimeSpan.FromHours(8), TimeSpan.FromHours(9));
        var silence = Assert.Single(report.Faults);
        Assert.Contains(("back after the silence", 1), silence.Outcomes);
    }
}

/// <summary>The finance zone: RPC health checks answered, and every fault given a clear answer with nothing lost.</summary>
public sealed class FinanceScenarioTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task Finance_ShortForm_MeetsItsExpectations_AndEachFaultGetsItsAnswer()
    {
        var (report, log) = await ShippedScenario.RunAsync(fixture, "finance", 240, 0.1);
        var calls = Assert.Single(report.Rpc);
        Assert.True(calls.Calls >= 50, $"{calls.Calls} calls");
        // A call that finds its terminal offline (dropped, or in the reconnect storm) times out; every other is answered.
        Assert.Equal(calls.Calls, calls.Answered + calls.TimedOut);
        Assert.True(calls.Answered >= calls.Calls * 0.95, $"{calls.Answered} of {calls.Calls} answered");
        Assert.Equal(0, calls.Failed);
        var byKind = report.Faults.ToDictionary(f => f.Kind, f => f.Outcomes.ToDictionary(o => o.Outcome, o => o.Count));
        Assert.Equal(2, byKind["Malformed"]["refused: PUBACK 0x99 PayloadFormatInvalid"]);
        Assert.Equal(1, byKind["Oversized"]["connection closed by the server"]);
        Assert.Equal(3, byKind["Duplicate"]["acknowledged again"]);
        Assert.Equal(50, byKind["Burst"]["acknowledged"]);
        Assert.Equal(10, byKind["ReconnectStorm"]["reconnected at once"]);
        Assert.Equal(1, byKind["Disconnect"]["reconnected with back-off"]);
        Assert.True(report.Fleets[0].ConnectionsLost >= 1, "the oversized message's connection was closed by the server");

        // Through the proxy: the half-open connection is closed by the server (keep alive) and the device reconnects;
        // a pause shorter than the keep alive leaves the connection as it was.
        Assert.True(byKind["HalfOpen"].GetValueOrDefault("device found out and reconnected") == 1, log);
        Assert.Single(byKind["HalfOpen"], o => o.Key.StartsWith("server closed the half-open connection after", StringComparison.Ordinal));
        Assert.Equal(1, byKind["Pause"]["connection survived the pause"]);

        // The flooding cash machine: over its profile's rate (1 a second, 240 at --speed 240), the server ends the
        // connection saying why; what it acknowledged before is stored (the stored expectation), and it comes back.
        var flood = byKind["Flood"];
        Assert.True(flood.GetValueOrDefault("acknowledged") > 0, string.Join(", ", flood));
        Assert.Contains(flood, o => o.Key.StartsWith("connection closed by the server: DISCONNECT 0x96", StringComparison.Ordinal) && o.Key.Contains("rate limit", StringComparison.Ordinal));
        Assert.Equal(1, flood["reconnected with back-off"]);
    }
}

/// <summary>
/// The shipped scenarios in their short form (<c>--speed</c>, <c>--scale</c>) against the real server, as CI runs
/// them, and a scenario whose expectation is wrong on purpose.
/// </summary>
public sealed class ScenarioRunTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task Environment_ShortForm_MeetsItsExpectations()
    {
        var scenario = ScenarioLoader.Load(Path.Combine(ScenarioLoaderTests.RepositoryRoot(), "scenarios", "environment.yaml"));
        var log = new StringWriter();
        // A day in 40 s: the smog alarm must be raised within 30 scenario minutes of the episode's start, 10 of
        // them its rule's duration, which leaves 280 ms of real time for the server's lag. A day in 20 s left
        // 140 ms, and a clean-clone run here, its server's p99 at 300 ms beside the browser tests, raised it late.
        const double speed = 2160;
        var report = await new SimRunner(scenario, new ScenarioScaling(speed, 0.05), fixture.Target, log).RunAsync(CancellationToken.None);
        Assert.True(report.Passed, report.Summary() + "\n" + log);
        Assert.Equal(["aq-{n:000}", "wq-{n:00}", "outlet-{n:00}"], report.Fleets.Select(f => f.Name));
        var (air, water, outlets) = (report.Fleets[0], report.Fleets[1], report.Fleets[2]);
        Assert.Equal(2, air.Devices);
        Assert.True(air.Sent > 1000, $"sent {air.Sent}");
        Assert.Equal(air.Sent, air.Acknowledged);
        Assert.Equal(air.Acknowledged, air.Stored);

        // The HJ 212 stations: every upload answered with 9014. A station reporting more often than once a second
        // (after --speed) stores one point per second of DataTime: about one per real second of the run.
        Assert.Equal(2, water.Devices);
        Assert.Equal(1, outlets.Devices);
        Assert.All([water, outlets], f => Assert.Equal(f.Sent, f.Acknowledged));
        var realSeconds = TimeSpan.FromDays(1).TotalSeconds / speed;
        Assert.InRange(outlets.Stored, 0.75 * realSeconds, 1.25 * realSeconds);

        // A garbled upload (its CRC wrong) gets no answer, as HJ 212 says, and the station keeps its connection.
        var garbled = Assert.Single(report.Faults);
        Assert.Equal(("Malformed", true), (garbled.Kind, garbled.Handled));
        Assert.Equal([("dropped without an answer (HJ 212 has none for a bad CRC); the connection kept", 1)], garbled.Outcomes);

        // The platform reads the water-quality stations' clocks (getTime: CN 1011, answered 9011, SystemTime, 9012).
        var clockReads = Assert.Single(report.Rpc);
        Assert.True(clockReads.Calls >= 4, $"{clockReads.Calls} calls");
        Assert.Equal(clockReads.Calls, clockReads.Answered);
        Assert.Equal(clockReads.Calls, water.RpcAnswered);

        // The episode reaches a quarter of the air stations: one of two raises the alarm, during the episode, and
        // clears it after; the outlet that discharges raises the COD alarm.
        Assert.Equal([("aq-001", "PM2.5 above 75 µg/m³"), ("outlet-01", "COD above the discharge limit")], report.Alarms.Select(a => (a.Device, a.Type)).Order());
        var alarm = report.Alarms.Single(a => a.Device == "aq-001");
        Assert.InRange(alarm.RaisedAt, TimeSpan.FromHours(7), TimeSpan.FromHours(7.5));
        Assert.NotNull(alarm.ClearedAt);

        var directory = Directory.CreateTempSubdirectory("taihu-sim-report-").FullName;
        try
        {
            var html = File.ReadAllText(report.Write(directory));
            Assert.Contains("uPlot", html, StringComparison.Ordinal);
            Assert.DoesNotContain("<script src=", html, StringComparison.Ordinal);
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "report.json")))!;
            Assert.True(json["passed"]!.GetValue<bool>());
            Assert.Equal(report.Timeline.Count, json["timeline"]!.AsArray().Count);

            // The server's CPU and memory, read from its /metrics each second of the run.
            Assert.Equal("the server's /metrics", report.ServerSource);
            Assert.True(report.Server.Count >= 10, $"{report.Server.Count} samples");
            Assert.All(report.Server, s => Assert.InRange(s.MemoryMb!.Value, 10, 8192));
            Assert.Contains(report.Server, s => s.CpuPercent > 0);

            // And the points the server committed, each second: what the report's "stored" chart shows.
            Assert.Contains(report.ServerStored, s => s.PointsPerSecond > 0);
            Assert.Contains("id=\"stored\"", html, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task TwoSlices_RunAtOnce_TogetherAreTheWholeFleet_EachMeetingItsExpectations()
    {
        var scenario = ScenarioLoader.Parse("""
            name: sliced
            duration: 1h
            fleets:
              - name: meter-{n}
                count: 5
                interval: 2m
                telemetry:
                  energy: { model: randomWalk, start: 100, step: 1, min: 0 }
            expect:
              - acknowledged: 100%
              - stored: 100%
            """, "sliced.yaml", ".");
        var scaling = new ScenarioScaling(720, 1);
        var runs = Enumerable.Range(1, 2).Select(i => new SimRunner(scenario, scaling, fixture.Target with { Slice = new FleetSlice(i, 2) }, new StringWriter())
            .RunAsync(CancellationToken.None)).ToList();
        var reports = await Task.WhenAll(runs);
        Assert.All(reports, r => Assert.True(r.Passed, r.Summary()));
        Assert.Equal([3, 2], reports.Select(r => r.Fleets[0].Devices));
        Assert.Equal("Slice 1/2 of the fleet: device n of each fleet (a gateway's devices with their gateway) where (n - 1) mod 2 = 0; expectations are checked on this slice.", Assert.Single(reports[0].Notes));
        Assert.All(reports, r => Assert.True(r.Fleets[0].Stored > 0 && r.Fleets[0].Stored == r.Fleets[0].Acknowledged, $"{r.Fleets[0].Stored} stored of {r.Fleets[0].Acknowledged}"));
    }

    [Fact]
    public async Task ExistingTenant_ItsDevicesAndProfilesOfTheScenariosNames_AreUsedAsTheyAre()
    {
        const string Yaml = """
            name: existing
            duration: 1h
            profiles:
              - name: meter
            fleets:
              - name: meter-{n}
                count: COUNT
                profile: meter
                interval: 5m
                telemetry:
                  energy: { model: randomWalk, start: 100, step: 1, min: 0 }
            expect:
              - stored: 100%
            """;
        var first = new StringWriter();
        var made = await new SimRunner(ScenarioLoader.Parse(Yaml.Replace("COUNT", "2", StringComparison.Ordinal), "existing.yaml", "."), new ScenarioScaling(1800, 1), fixture.Target, first)
            .RunAsync(CancellationToken.None);
        Assert.True(made.Passed, made.Summary());
        var signIn = System.Text.RegularExpressions.Regex.Match(first.ToString(), @"sign in to the console as (\S+) / (\S+)");
        var (user, password) = (signIn.Groups[1].Value, signIn.Groups[2].Value);

        // Again in that tenant with one meter more: the two are used as they are, the third is made, the profile is not made twice.
        var second = await new SimRunner(ScenarioLoader.Parse(Yaml.Replace("COUNT", "3", StringComparison.Ordinal), "existing.yaml", "."), new ScenarioScaling(1800, 1),
            fixture.Target with { Tenant = (user, password) }, new StringWriter()).RunAsync(CancellationToken.None);
        Assert.True(second.Passed, second.Summary());
        Assert.Equal($"the existing tenant of {user}", second.Tenant);
        Assert.Equal(3, second.Fleets[0].Devices);

        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var token = await Taihu.Bench.Scenarios.BenchTenant.LoginAsync(http, user, password, CancellationToken.None);
        var devices = await Taihu.Bench.Scenarios.BenchTenant.SendAsync(http, HttpMethod.Get, token, "/api/tenant/devices?pageSize=100&page=0", null, CancellationToken.None);
        Assert.Equal(["meter-1", "meter-2", "meter-3"], devices.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("name").GetString()).Order());
        var profiles = await Taihu.Bench.Scenarios.BenchTenant.SendAsync(http, HttpMethod.Get, token, "/api/deviceProfiles?pageSize=100&page=0", null, CancellationToken.None);
        Assert.Single(profiles.GetProperty("data").EnumerateArray(), p => p.GetProperty("name").GetString() == "meter");
    }

    [Fact]
    public async Task WrongExpectation_FailsWithExitCode1_NamingItAndItsLine()
    {
        var directory = Directory.CreateTempSubdirectory("taihu-sim-wrong-").FullName;
        try
        {
            var file = Path.Combine(directory, "wrong.yaml");
            await File.WriteAllTextAsync(file, """
                name: wrong on purpose
                duration: 1h
                fleets:
                  - name: meter-{n}
                    count: 2
                    interval: 1m
                    telemetry:
                      energy: { model: randomWalk, start: 100, step: 1 }
                expect:
                  - stored: 100%
                  - alarm: Meter stopped reporting
                    raisedBy: 30m
                """);
            var (exitCode, text) = await Simulator.RunAsync(
                ["run", file, "--speed", "1800", "--url", fixture.Server.HttpBaseAddress.ToString(),
                    "--mqtt-port", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture), "--report", Path.Combine(directory, "report")],
                ServerProcess.AdminPassword);
            Assert.True(exitCode == 1, $"exit code {exitCode}:\n{text}");
            Assert.Contains("PASS stored: 100% of acknowledged points (line 10)", text, StringComparison.Ordinal);
            Assert.Contains("FAIL alarm 'Meter stopped reporting' raised by at least 1 device by 30m (line 11): never raised", text, StringComparison.Ordinal);
            Assert.Contains("scenario FAILED: 1 of 3 expectation(s) not met", text, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(directory, "report", "report.html")));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task BadScenario_ExitsWith2_NamingTheLine()
    {
        var directory = Directory.CreateTempSubdirectory("taihu-sim-bad-").FullName;
        try
        {
            var file = Path.Combine(directory, "bad.yaml");
            await File.WriteAllTextAsync(file, "name: bad\nduration: 1h\nfleets:\n  - name: a-{n}\n    count: 2\n    interval: soon\n");
            var (exitCode, errors) = await Simulator.RunAsync(["check", file], null);
            Assert.Equal(2, exitCode);
            Assert.StartsWith("bad.yaml, line 6: fleets.0.interval:", errors, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}

/// <summary>The medical zone: wearables behind ward gateways; the patients who deteriorate raise both alarms, which clear when they recover.</summary>
public sealed class MedicalScenarioTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task Medical_ShortForm_ThroughGateways_MeetsItsExpectations()
    {
        var (report, _) = await ShippedScenario.RunAsync(fixture, "medical", 120, 0.1);
        var fleet = Assert.Single(report.Fleets);
        Assert.Equal(12, fleet.Devices);
        Assert.Equal(fleet.Acknowledged, fleet.Stored);
        Assert.Equal(["Heart rate above 120", "SpO2 below 90%"], report.Alarms.Select(a => a.Type).Order());
        Assert.All(report.Alarms, a => Assert.Equal("patient-001", a.Device));
    }
}
