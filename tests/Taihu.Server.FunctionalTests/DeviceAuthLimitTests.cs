using System.Net;
using System.Text;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Failed device authentications are limited per source address (loopback included), over MQTT and HTTP alike,
/// with the limit named in the refusal; successes cost nothing. Each test has its own server with a limit of 5 a
/// minute (Security:DeviceAuthFailuresPerMinute), so that no test can outrun the refill.
/// </summary>
public sealed class DeviceAuthLimitTests : IAsyncLifetime
{
    private const int Limit = 5;
    private ServerProcess _server = null!;
    private PlatformApi _sysAdmin = null!;
    private PlatformApi _admin = null!;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Security__DeviceAuthFailuresPerMinute"] = Limit.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        _sysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_, _admin) = await _sysAdmin.CreateTenantWithAdminAsync("Limits " + Guid.NewGuid().ToString("N")[..6]);
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        _sysAdmin.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task HttpGuesses_InParallel_AreCheckedNoMoreThanTheLimit_ThenRefusedWith429()
    {
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(i =>
            http.PostAsync($"/api/v1/guess-{i:D6}/telemetry", new StringContent("{\"a\":1}", Encoding.UTF8, "application/json"))));
        Assert.Equal(Limit, answers.Count(a => a.StatusCode == HttpStatusCode.Unauthorized));
        Assert.Equal(200 - Limit, answers.Count(a => a.StatusCode == HttpStatusCode.TooManyRequests));
        var refused = answers.First(a => a.StatusCode == HttpStatusCode.TooManyRequests);
        Assert.NotNull(refused.Headers.RetryAfter?.Delta);
        var problem = await PlatformApi.ExpectProblemAsync(refused, HttpStatusCode.TooManyRequests);
        Assert.Contains("Too many failed authentications from this address", problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MqttGuesses_InParallel_AreCheckedNoMoreThanTheLimit_ThenRefusedNamingTheLimit()
    {
        var connects = await Task.WhenAll(Enumerable.Range(0, 100).Select(async i =>
        {
            var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, $"guess-{i}", 5, $"guess-{i:D6}", null);
            await client.DisposeAsync();
            return connAck;
        }));
        Assert.Equal(Limit, connects.Count(c => c.Body[1] == 0x86));
        Assert.Equal(100 - Limit, connects.Count(c => c.Body[1] == 0x9F));
        var reason = Encoding.UTF8.GetString(connects.First(c => c.Body[1] == 0x9F).Body);
        Assert.Contains("Too many failed authentications from this address; try again in", reason, StringComparison.Ordinal);

        // 3.1.1 has no such code: Not authorized (5).
        var (legacy, legacyAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, "legacy-guess", 4, "legacy-guess-token", null);
        await legacy.DisposeAsync();
        Assert.Equal(5, legacyAck.Body[1]);

        // HTTP shares the address's allowance.
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        await PlatformApi.ExpectProblemAsync(await http.PostAsync("/api/v1/another-guess/telemetry", new StringContent("{\"a\":1}")), HttpStatusCode.TooManyRequests);
    }

    [Fact]
    public async Task ProvisioningWithWrongSecrets_IsLimitedLikeGuessingTokens()
    {
        var key = "key-" + Guid.NewGuid().ToString("N")[..8];
        await _admin.PostAsync("/api/deviceProfile", new { name = "provisioned", provisionType = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, profileData = new { provisionConfiguration = new { provisionDeviceSecret = "the-secret" } } });
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        HttpContent Request(string secret) => new StringContent($"{{\"deviceName\":\"p-{Guid.NewGuid():N}\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"{secret}\"}}", Encoding.UTF8, "application/json");

        // The right secret costs nothing.
        var right = await PlatformApi.ExpectAsync(await http.PostAsync("/api/v1/provision", Request("the-secret")), HttpStatusCode.OK);
        Assert.Equal("SUCCESS", right["status"]!.GetValue<string>());
        var answers = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => http.PostAsync("/api/v1/provision", Request("guess-" + i))));
        Assert.Equal(Limit, answers.Count(a => a.StatusCode == HttpStatusCode.OK));
        Assert.Equal(50 - Limit, answers.Count(a => a.StatusCode == HttpStatusCode.TooManyRequests));
        await PlatformApi.ExpectProblemAsync(answers.First(a => a.StatusCode == HttpStatusCode.TooManyRequests), HttpStatusCode.TooManyRequests);
    }

    [Fact]
    public async Task Successes_CostNothing_AndAreNotRefusedWhileUnderTheLimit()
    {
        var (_, token) = await _admin.CreateDeviceAsync("good-" + Guid.NewGuid().ToString("N")[..8]);
        // Far more successes in parallel than the limit allows failures: none is refused.
        var connects = await Task.WhenAll(Enumerable.Range(0, 50).Select(async i =>
        {
            var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, $"good-{i}", 5, token, null);
            await client.DisposeAsync();
            return connAck.Body[1];
        }));
        Assert.All(connects, code => Assert.Equal(0, code));
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        var posts = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => http.PostAsync($"/api/v1/{token}/telemetry", new StringContent($"{{\"n\":{i}}}", Encoding.UTF8, "application/json"))));
        Assert.All(posts, p => Assert.Equal(HttpStatusCode.OK, p.StatusCode));

        // The whole allowance of failures is still there.
        for (var i = 0; i < Limit; i++)
        {
            await PlatformApi.ExpectProblemAsync(await http.PostAsync($"/api/v1/wrong-{i:D6}/telemetry", new StringContent("{\"a\":1}")), HttpStatusCode.Unauthorized);
        }

        await PlatformApi.ExpectProblemAsync(await http.PostAsync("/api/v1/wrong-last/telemetry", new StringContent("{\"a\":1}")), HttpStatusCode.TooManyRequests);
    }
}
