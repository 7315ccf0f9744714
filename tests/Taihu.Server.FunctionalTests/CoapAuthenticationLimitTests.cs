using Taihu.Protocols.Coap;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Guessing access tokens over CoAP costs what it costs over HTTP and MQTT: past the source address's allowance of
/// failed device authentications (<c>Security:DeviceAuthFailuresPerMinute</c>, 3 here) every request is refused
/// with 4.29 and a Max-Age to wait, the right token too (so a refusal tells nothing), and counted.
/// </summary>
public sealed class CoapAuthenticationLimitTests : IAsyncLifetime
{
    private ServerProcess _server = null!;

    public async Task InitializeAsync() => _server = await ServerProcess.StartAsync(new Dictionary<string, string>
    {
        ["Security__DeviceAuthFailuresPerMinute"] = "3",
        ["Coap__AuthenticationLifetime"] = "00:00:00",
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task GuessingTokens_IsRefused429_PastTheAllowance_EvenWithTheRightToken()
    {
        using var sysAdmin = await PlatformApi.SysAdminAsync(_server);
        var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Tenant " + Guid.NewGuid().ToString("N")[..8]);
        using (admin)
        {
            var (_, token) = await admin.CreateDeviceAsync("coap-guessed-" + Guid.NewGuid().ToString("N")[..8]);
            using var client = new RawCoapClient(_server);
            Assert.Equal("2.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"t\":1}")).CodeText);
            for (var i = 0; i < 3; i++)
            {
                Assert.Equal("4.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/guess-{i}/telemetry", "{\"t\":1}")).CodeText);
            }

            var refused = await client.RequestAsync(CoapCode.Post, "/api/v1/guess-4/telemetry", "{\"t\":1}");
            Assert.Equal("4.29", refused.CodeText);
            Assert.True(refused.UInt(CoapOption.MaxAge) >= 1);
            Assert.False(string.IsNullOrWhiteSpace(refused.Text));
            Assert.Equal("4.29", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"t\":2}")).CodeText);
        }
    }
}
