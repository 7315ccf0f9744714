using System.Net;
using System.Net.Http.Json;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>Deleting a tenant ends everything of it at once: its users' tokens, its API keys, its devices' connections.</summary>
public sealed class TenantDeletionTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task DeletingATenant_RevokesItsUsersTokensAndApiKeys_AndDisconnectsItsDevices()
    {
        var (tenantId, admin) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Doomed " + Guid.NewGuid().ToString("N")[..6], "doomed@example.com", "doomed-password");
        using (admin)
        {
            using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
            var login = await PlatformApi.ExpectAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "doomed@example.com", password = "doomed-password" }), HttpStatusCode.OK);
            using var operatorApi = await admin.CreateUserAsync("OPERATOR");
            var key = (await admin.PostAsync("/api/apiKey", new { name = "integration", authority = "TENANT_ADMIN" }))["key"]!.GetValue<string>();
            var (_, token) = await admin.CreateDeviceAsync("doomed-device");

            // Every credential is in use (and cached) before the deletion.
            await admin.GetAsync("/api/tenant/devices");
            await admin.GetAsync("/api/audit/logs");
            await operatorApi.GetAsync("/api/tenant/devices");
            await PlatformApi.ExpectAsync(await SendWithKeyAsync(http, key, HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.OK);
            await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);

            await PlatformApi.ExpectAsync(await fixture.SysAdmin.SendAsync(HttpMethod.Delete, $"/api/tenant/{tenantId}"), HttpStatusCode.OK);

            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Get, "/api/audit/logs"), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/device", new { name = "after" }), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/apiKey", new { name = "after" }), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await operatorApi.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = login["refreshToken"]!.GetValue<string>() }), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await SendWithKeyAsync(http, key, HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await SendWithKeyAsync(http, key, HttpMethod.Post, "/api/device", new { name = "after" }), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "doomed@example.com", password = "doomed-password" }), HttpStatusCode.Unauthorized);

            // The device's connection is closed, and its token no longer connects.
            await device.Disconnected.WaitAsync(ServerProcess.Guard);
            var (refused, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "after-" + Guid.NewGuid().ToString("N")[..8], 5, token, null);
            await refused.DisposeAsync();
            Assert.Equal(0x86, connAck.Body[1]);
        }
    }

    private static async Task<HttpResponseMessage> SendWithKeyAsync(HttpClient http, string key, HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Add("X-Api-Key", key);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }

        return await http.SendAsync(request);
    }
}
