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

    public SimTarget Target => new(Server.HttpBaseAddress, "127.0.0.1", Server.TcpPort, "sysadmin@taihu.local", ServerProcess.AdminPassword);

    public async Task InitializeAsync() => Server = await ServerProcess.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
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
        var report = await new SimRunner(scenario, new ScenarioScaling(2880, 0.1), fixture.Target, log).RunAsync(CancellationToken.None);
        Assert.True(report.Passed, report.Summary() + "\n" + log);
        var fleet = Assert.Single(report.Fleets);
        Assert.Equal(4, fleet.Devices);
        Assert.True(fleet.Sent > 1000, $"sent {fleet.Sent}");
        Assert.Equal(fleet.Sent, fleet.Acknowledged);
        Assert.Equal(fleet.Acknowledged, fleet.Stored);

        // The episode reaches a quarter of the stations: one of four raises the alarm, during the episode, and clears it after.
        var alarm = Assert.Single(report.Alarms);
        Assert.Equal("aq-001", alarm.Device);
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
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
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
            var simulator = Path.Combine(AppContext.BaseDirectory, "taihu-sim.dll");
            var start = new ProcessStartInfo("dotnet")
            {
                ArgumentList =
                {
                    simulator, "run", file, "--speed", "1800", "--url", fixture.Server.HttpBaseAddress.ToString(),
                    "--mqtt-port", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture), "--report", Path.Combine(directory, "report"),
                },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.Environment["TAIHU_ADMIN_PASSWORD"] = ServerProcess.AdminPassword;
            using var process = Process.Start(start)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
            var text = await output + await errors;
            Assert.True(process.ExitCode == 1, $"exit code {process.ExitCode}:\n{text}");
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
            var start = new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "taihu-sim.dll"), "check", file }, RedirectStandardError = true, UseShellExecute = false };
            using var process = Process.Start(start)!;
            var errors = await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(2, process.ExitCode);
            Assert.StartsWith("bad.yaml, line 6: fleets.0.interval:", errors, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
