using System.Net.Http.Headers;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Nobody can flood or forge the server's log without logging in: client-supplied strings are truncated and
/// escaped, refusals are rate-limited, and a 4xx is never logged as an error with a stack trace. Each test
/// measures the log of a server of its own over a burst, up to a sentinel line logged after the burst (the
/// console logger writes in order, so everything the burst logged is in the output by then).
/// </summary>
public sealed class LogAbuseTests : IAsyncLifetime
{
    private ServerProcess _server = null!;

    // The per-address limit on failed device authentications would refuse most of the burst before the
    // credentials are checked; raised here so that every refusal goes through the credential check and its log line.
    public async Task InitializeAsync() => _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Security__DeviceAuthFailuresPerMinute"] = "100000" });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    /// <summary>Connects a client whose id appears in the log line of its connection, and waits for that line.</summary>
    private async Task<string> OutputUpToSentinelAsync()
    {
        var sentinel = "sentinel-" + Guid.NewGuid().ToString("N");
        await using (var client = await MqttTestClient.ConnectTcpAsync(_server, sentinel))
        {
            await _server.WaitForLineAsync(line => line.Contains(sentinel, StringComparison.Ordinal));
        }

        return _server.Output;
    }

    [Fact]
    public async Task ThrottledConnects_FromAnAddressPastItsAllowance_DoNotFloodTheLog()
    {
        await using var server = await ServerProcess.StartAsync();
        var before = server.Output.Length;
        // 10,000 characters: far past the log's 128-character cut, within Broker:MaximumConnectPacketSize (16 KiB).
        var huge = new string('B', 10_000);
        var throttled = 0;
        for (var i = 0; i < 300; i++)
        {
            var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(server.TcpPort, huge + i, 5, "no-such-token", null);
            await using (client)
            {
                throttled += connAck.Body[1] == 0x9F ? 1 : 0;
            }
        }

        Assert.True(throttled > 200, $"Only {throttled} of 300 guesses were throttled.");
        // The sentinel connects from another loopback address, which has its allowance, as an anonymous client
        // (the test servers allow them); its connection line comes after everything the burst logged.
        var sentinel = "sentinel-" + Guid.NewGuid().ToString("N");
        var (sentinelClient, sentinelAck) = await RawMqttClient.ConnectWithCredentialsAsync(server.TcpPort, sentinel, 4, null, null, System.Net.IPAddress.Parse("127.0.0.2"));
        await using (sentinelClient)
        {
            Assert.Equal(0, sentinelAck.Body[1]);
            await server.WaitForLineAsync(line => line.Contains(sentinel, StringComparison.Ordinal));
        }

        var grown = server.Output.Length - before;
        Assert.True(grown < 32 * 1024, $"The log grew by {grown} characters for 300 throttled connects.");
    }

    [Fact]
    public async Task RefusedConnects_WithHugeAndNewlineBearingClientIds_NeitherFloodNorForgeTheLog()
    {
        var before = _server.Output.Length;
        // 10,000 characters: far past the log's 128-character cut, within Broker:MaximumConnectPacketSize (16 KiB).
        var huge = new string('A', 10_000);
        var forging = "x\nfail: Taihu.Forged[1]\n      forged by a client id\r\ncrit: Taihu.Forged[2]";
        for (var i = 0; i < 300; i++)
        {
            var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, i % 2 == 0 ? huge + i : forging + i, (byte)(i % 3 == 0 ? 4 : 5), "no-such-token-" + forging, null);
            await using (client)
            {
                Assert.NotEqual(0, connAck.Body[1]);
            }
        }

        var output = await OutputUpToSentinelAsync();
        var grown = output.Length - before;
        // Unguarded, each refusal logged the id twice: 300 refusals with 60,000-character ids were over 18 MB
        // (with 10,000 characters, 3 MB).
        Assert.True(grown < 32 * 1024, $"The log grew by {grown} characters for 300 refused connects.");
        var lines = output[before..].Split('\n');
        Assert.DoesNotContain(lines, line => line.StartsWith("fail: Taihu.Forged", StringComparison.Ordinal) || line.StartsWith("crit: Taihu.Forged", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, line => line.TrimStart().StartsWith("forged by a client id", StringComparison.Ordinal));
        Assert.All(lines, line => Assert.True(line.Length < 1024, $"A log line of {line.Length} characters."));
        // Refusals are still logged (the first ones of each second), truncated and escaped rather than dropped.
        Assert.Contains(lines, line => line.Contains("AAAA...(", StringComparison.Ordinal) && line.Contains("more characters)", StringComparison.Ordinal));
        Assert.Contains(lines, line => line.Contains("x\\nfail: Taihu.Forged[1]\\n", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RequestsWithABadJwt_AreNotLoggedAsErrorsWithStackTraces()
    {
        var before = _server.Output.Length;
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        for (var i = 0; i < 300; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/tenant/devices?pageSize=10&page=0");
            request.Headers.TryAddWithoutValidation("X-Authorization", "Bearer not.a.jwt" + i);
            using var response = await http.SendAsync(request);
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, response.StatusCode);
        }

        using (var noToken = await http.GetAsync("/api/tenant/devices"))
        {
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, noToken.StatusCode);
        }

        var output = await OutputUpToSentinelAsync();
        var logged = output[before..];
        Assert.DoesNotContain("fail:", logged, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", logged, StringComparison.Ordinal);
        Assert.True(logged.Length < 8 * 1024, $"The log grew by {logged.Length} characters for 300 bad JWTs.");
    }
}
