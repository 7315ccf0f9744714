using System.Diagnostics;
using System.Text.Json;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The third-party JT/T 808 and HJ 212 clients of <c>bench/protocols.sh</c> (<c>bench/thirdparty/*_fleet.py</c>,
/// Python written from the standards) run small against the real server, so that they keep working: every report and
/// upload answered after its commit, and every answered one read back through the REST API; and the HJ 212 CRC on the
/// standard's own example.
/// </summary>
public sealed class ThirdPartyFleetTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task Jt808Fleet_FiveTerminals_AllReportsAndHeartbeatsAnswered_AndStored()
    {
        var result = await RunFleetAsync("jt808_fleet.py", fixture.Server.Jt808Port,
            ["--terminals", "5", "--interval", "0.5", "--heartbeat", "1", "--duration", "2", "--drain", "10", "--verify", "5"]);

        var sent = result.GetProperty("reports_sent").GetInt32();
        Assert.True(sent >= 15, $"only {sent} reports sent");
        Assert.Equal(sent, result.GetProperty("reports_answered").GetInt32());
        Assert.Equal(0, result.GetProperty("lost").GetInt32());
        Assert.Equal(0, result.GetProperty("answers_not_ok").GetInt32());
        Assert.Equal(0, result.GetProperty("bad_frames").GetInt32());
        Assert.True(result.GetProperty("heartbeats_sent").GetInt32() >= 5);
        Assert.Equal(result.GetProperty("heartbeats_sent").GetInt32(), result.GetProperty("heartbeats_answered").GetInt32());
        Assert.Equal(5, result.GetProperty("verified_terminals").GetInt32());
        Assert.Equal(sent, result.GetProperty("reports_stored").GetInt32());
    }

    [Fact]
    public async Task Hj212Fleet_FiveStations_AllUploadsAnswered_AndStored()
    {
        var result = await RunFleetAsync("hj212_fleet.py", fixture.Server.Hj212Port,
            ["--stations", "5", "--interval", "0.5", "--duration", "2", "--verify", "5"]);

        var sent = result.GetProperty("uploads_sent").GetInt32();
        Assert.True(sent >= 15, $"only {sent} uploads sent");
        Assert.Equal(sent, result.GetProperty("uploads_answered").GetInt32());
        Assert.Equal(0, result.GetProperty("unanswered").GetInt32());
        Assert.Equal(0, result.GetProperty("bad_packets").GetInt32());
        Assert.Equal(5, result.GetProperty("verified_stations").GetInt32());
        Assert.Equal(sent, result.GetProperty("uploads_stored").GetInt32());
    }

    [Fact]
    public async Task Hj212Fleet_Crc_MatchesTheStandardsExample()
    {
        // HJ 212-2017's own example frame (section 6.6, set the real-time interval) ends in CRC 1C80.
        var output = await RunPythonAsync(["-c", "import hj212_fleet as h; print('%04X' % h.crc16(b'QN=20160801085857223;ST=32;CN=1062;PW=100000;"
            + "MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&'))"]);

        Assert.Equal("1C80", output.Trim());
    }

    /// <summary>Runs /usr/bin/python3 in bench/thirdparty with the arguments; returns its output (its exit code must be 0).</summary>
    private static async Task<string> RunPythonAsync(string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.Combine(RepositoryRoot(), "bench", "thirdparty"),
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var guard = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(guard.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"python3 {string.Join(' ', arguments)} did not finish within 90 s:\n{await stdout}\n{await stderr}");
        }

        Assert.True(process.ExitCode == 0, $"python3 {arguments[0]} exited with {process.ExitCode}:\n{await stdout}\n{await stderr}");
        return await stdout;
    }

    /// <summary>Runs a fleet with /usr/bin/python3 to its end; returns its JSON result (its exit code must be 0).</summary>
    private async Task<JsonElement> RunFleetAsync(string script, int port, string[] arguments)
    {
        var output = Path.Combine(Path.GetTempPath(), $"taihu-fleet-{Guid.NewGuid():N}.json");
        await RunPythonAsync([script, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--api", fixture.Server.HttpBaseAddress.ToString(), "--admin-password", ServerProcess.AdminPassword, "--json", output, .. arguments]);
        try
        {
            using var document = JsonDocument.Parse(await File.ReadAllTextAsync(output));
            return document.RootElement.Clone();
        }
        finally
        {
            File.Delete(output);
        }
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Taihu.slnx")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("The repository root (with Taihu.slnx) was not found above " + AppContext.BaseDirectory);
    }
}
