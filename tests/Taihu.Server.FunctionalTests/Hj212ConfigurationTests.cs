using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>The HJ 212 listener's settings: -1 turns it off, and bad values stop the server naming the setting.</summary>
public sealed class Hj212ConfigurationTests
{
    [Fact]
    public async Task Hj212PortMinusOne_TurnsTheListenerOff()
    {
        await using var server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Listeners__Hj212Port"] = "-1" });
        Assert.Equal(-1, server.Hj212Port);
        Assert.Contains("HJ 212 -1,", server.Banner, StringComparison.Ordinal);
        Assert.True(server.TcpPort > 0 && server.HttpPort > 0, server.Banner);
    }

    [Fact]
    public async Task BadHj212Settings_StopTheServer_NamingEachSetting()
    {
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string>
        {
            ["Hj212__TimeZone"] = "Mars/Olympus",
            ["Hj212__IdleTimeout"] = "00:00:00",
            ["Hj212__MaxDataLength"] = "10000",
        });

        Assert.Equal(1, exitCode);
        Assert.Contains("Taihu cannot start:", output, StringComparison.Ordinal);
        Assert.Contains("Hj212:TimeZone", output, StringComparison.Ordinal);
        Assert.Contains("Hj212:IdleTimeout", output, StringComparison.Ordinal);
        Assert.Contains("Hj212:MaxDataLength", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }
}
