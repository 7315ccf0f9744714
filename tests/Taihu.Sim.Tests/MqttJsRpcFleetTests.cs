using Taihu.Bench.Client;
using Taihu.Bench.Scenarios;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Sim.Tests;

/// <summary>
/// taihu-bench's rpc scenario with its devices on the npm mqtt client (MQTT.js, in a Node.js process of its own)
/// against the real server: every call made through the REST API is answered by the device it was made to.
/// </summary>
public sealed class MqttJsRpcFleetTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task RpcBench_WithMqttJsDevices_AnswersEveryCall()
    {
        var options = new BenchOptions
        {
            Port = fixture.Server.TcpPort, Client = ClientKind.MqttJs, Clients = 20, Rate = 20, WarmupSeconds = 0.5, DurationSeconds = 2, Quiet = true,
        };
        var target = new PlatformTarget(fixture.Server.HttpBaseAddress.ToString().TrimEnd('/'), "sysadmin@taihu.local", ServerProcess.AdminPassword);

        // No no-GC region (0): it would hold the collector off for every test running in this process.
        var result = await new RpcScenario(options, target, 10_000, noGcMegabytes: 0, progress: null).RunAsync(CancellationToken.None);

        Assert.Equal("mqttjs", result.Client);
        // 40 calls are paced into the window; on a loaded 2-core machine the generator may fall behind (CI once made
        // 23). What this test is for is below: every call made is answered.
        Assert.True(result.Sent >= 10, $"{result.Sent} calls in the window");
        Assert.Equal(result.Sent, result.Delivered);
        Assert.Equal(0, result.Lost);
    }
}
