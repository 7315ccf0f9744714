using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>Logins, refresh, logout, back-off after failed logins, and API keys for integrations.</summary>
public sealed class ManagementAuthTests : IAsyncLifetime
{
    private ServerProcess _server = null!;
    private PlatformApi _sysAdmin = null!;

    public async Task InitializeAsync()
    {
        // Failed logins back off for a minute here, so the test cannot outrun the wait.
        _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Security__LoginBackoff"] = "00:01:00" });
        _sysAdmin = await PlatformApi.SysAdminAsync(_server);
    }

    public async Task DisposeAsync()
    {
        _sysAdmin.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task RefreshToken_GivesANewPair_AndLogout_EndsEveryTokenOfTheUser()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Refresh " + Guid.NewGuid().ToString("N")[..6], "refresh@example.com", "refresh-password");
        using (admin)
        {
            var login = await PlatformApi.ExpectAsync(await admin.Http.PostAsJsonAsync("/api/auth/login", new { username = "refresh@example.com", password = "refresh-password" }), HttpStatusCode.OK);
            var refreshed = await PlatformApi.ExpectAsync(await admin.Http.PostAsJsonAsync("/api/auth/token", new { refreshToken = login["refreshToken"]!.GetValue<string>() }), HttpStatusCode.OK);
            var fresh = new PlatformApi(_server, refreshed["token"]!.GetValue<string>());
            Assert.Equal("refresh@example.com", (await fresh.GetAsync("/api/auth/user"))["email"]!.GetValue<string>());

            // An access token is not a refresh token.
            await PlatformApi.ExpectProblemAsync(await admin.Http.PostAsJsonAsync("/api/auth/token", new { refreshToken = login["token"]!.GetValue<string>() }), HttpStatusCode.Unauthorized);

            await PlatformApi.ExpectAsync(await fresh.SendAsync(HttpMethod.Post, "/api/auth/logout"), HttpStatusCode.OK);
            await PlatformApi.ExpectProblemAsync(await fresh.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
            await PlatformApi.ExpectProblemAsync(await admin.Http.PostAsJsonAsync("/api/auth/token", new { refreshToken = refreshed["refreshToken"]!.GetValue<string>() }), HttpStatusCode.Unauthorized);

            // Logging in again works.
            fresh.Token = await fresh.LoginAsync("refresh@example.com", "refresh-password");
            await fresh.GetAsync("/api/tenant/devices");
            fresh.Dispose();
        }
    }

    [Fact]
    public async Task LanguageAndTimeZone_AreTheUsersAdditionalInfo_SavedByPostingTheUserBack()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Lang " + Guid.NewGuid().ToString("N")[..6]);
        using (admin)
        {
            using var viewer = await admin.CreateUserAsync("VIEWER");
            var me = await viewer.GetAsync("/api/auth/user");
            Assert.Null(me["additionalInfo"]!["lang"]);
            Assert.Null(me["additionalInfo"]!["timeZone"]);
            Assert.True(me["additionalInfo"]!["userCredentialsEnabled"]!.GetValue<bool>());

            // ThingsBoard's clients post the user back whole, with its language changed; even a viewer may.
            me["additionalInfo"]!["lang"] = "zh_CN";
            me["additionalInfo"]!["timeZone"] = "Asia/Shanghai";
            var saved = await viewer.PostAsync("/api/user", me);
            Assert.Equal("zh_CN", saved["additionalInfo"]!["lang"]!.GetValue<string>());
            Assert.Equal("Asia/Shanghai", (await viewer.GetAsync("/api/auth/user"))["additionalInfo"]!["timeZone"]!.GetValue<string>());
            var id = me["id"]!["id"]!.GetValue<string>();
            Assert.Equal("zh_CN", (await admin.GetAsync($"/api/user/{id}"))["additionalInfo"]!["lang"]!.GetValue<string>());
            var listed = (await admin.GetAsync("/api/users?pageSize=100&page=0"))["data"]!.AsArray().Single(u => u!["id"]!["id"]!.GetValue<string>() == id)!;
            Assert.Equal("Asia/Shanghai", listed["additionalInfo"]!["timeZone"]!.GetValue<string>());

            // A member left out is kept; null clears it.
            saved = await viewer.PostAsync("/api/user", new { id = me["id"], additionalInfo = new { timeZone = (string?)null } });
            Assert.Equal("zh_CN", saved["additionalInfo"]!["lang"]!.GetValue<string>());
            Assert.Null((await viewer.GetAsync("/api/auth/user"))["additionalInfo"]!["timeZone"]);

            // Bad values are refused, naming the field, and nothing is stored.
            var refused = await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Post, "/api/user", new { id = me["id"], additionalInfo = new { timeZone = "Mars/Olympus" } }), HttpStatusCode.BadRequest);
            Assert.StartsWith("additionalInfo.timeZone 'Mars/Olympus'", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
            refused = await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Post, "/api/user", new { id = me["id"], additionalInfo = new { lang = "Chinese" } }), HttpStatusCode.BadRequest);
            Assert.StartsWith("additionalInfo.lang", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
            refused = await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Post, "/api/user", new { id = me["id"], authority = "TENANT_ADMIN", additionalInfo = new { lang = "en_US" } }), HttpStatusCode.BadRequest);
            Assert.Equal("authority cannot be changed.", refused["message"]!.GetValue<string>());
            Assert.Equal("zh_CN", (await viewer.GetAsync("/api/auth/user"))["additionalInfo"]!["lang"]!.GetValue<string>());

            // Another user's settings are theirs, even for the tenant's administrator.
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/user", new { id = me["id"], additionalInfo = new { lang = "en_US" } }), HttpStatusCode.Forbidden);
            Assert.Equal("zh_CN", (await admin.GetAsync($"/api/user/{id}"))["additionalInfo"]!["lang"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task FailedLogins_MakeTheAccountWait_EvenForTheRightPassword()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Backoff " + Guid.NewGuid().ToString("N")[..6], "backoff@example.com", "backoff-password");
        admin.Dispose();
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        for (var i = 0; i < 5; i++)
        {
            await PlatformApi.ExpectProblemAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "backoff@example.com", password = "wrong" }), HttpStatusCode.Unauthorized);
        }

        var refused = await PlatformApi.ExpectProblemAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "backoff@example.com", password = "backoff-password" }), HttpStatusCode.TooManyRequests);
        Assert.Contains("Too many failed logins", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
        // Another account is not affected.
        await PlatformApi.ExpectAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "sysadmin@taihu.local", password = ServerProcess.AdminPassword }), HttpStatusCode.OK);
    }

    [Fact]
    public async Task ApiKey_ActsWithItsAuthority_InItsTenantOnly()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Keys " + Guid.NewGuid().ToString("N")[..6]);
        var (_, other) = await _sysAdmin.CreateTenantWithAdminAsync("Other " + Guid.NewGuid().ToString("N")[..6]);
        using (admin)
        using (other)
        {
            var (deviceId, _) = await admin.CreateDeviceAsync("keyed-device");
            var (otherDevice, _) = await other.CreateDeviceAsync("not-yours");
            var viewerKey = (await admin.PostAsync("/api/apiKey", new { name = "dashboard", authority = "VIEWER" }))["key"]!.GetValue<string>();
            var operatorKey = (await admin.PostAsync("/api/apiKey", new { name = "integration", authority = "OPERATOR" }))["key"]!.GetValue<string>();

            using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
            async Task<HttpResponseMessage> Send(string key, HttpMethod method, string path, object? body = null)
            {
                using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
                request.Headers.Add("X-Api-Key", key);
                return await http.SendAsync(request);
            }

            var listed = await PlatformApi.ExpectAsync(await Send(viewerKey, HttpMethod.Get, "/api/tenant/devices?pageSize=10&page=0"), HttpStatusCode.OK);
            Assert.Equal(["keyed-device"], listed["data"]!.AsArray().Select(d => d!["name"]!.GetValue<string>()));
            await PlatformApi.ExpectProblemAsync(await Send(viewerKey, HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", new { a = 1 }), HttpStatusCode.Forbidden);
            await PlatformApi.ExpectAsync(await Send(operatorKey, HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", new { a = 1 }), HttpStatusCode.OK);
            await PlatformApi.ExpectProblemAsync(await Send(operatorKey, HttpMethod.Get, $"/api/device/{otherDevice}"), HttpStatusCode.NotFound);
            await PlatformApi.ExpectProblemAsync(await Send("tk_not-a-key", HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);

            // The audit trail names the key.
            var audit = await admin.GetAsync("/api/audit/logs?pageSize=50&page=0");
            Assert.Contains(audit["data"]!.AsArray(), e => e!["userName"]?.GetValue<string>() == "api key integration" && e["actionType"]!.GetValue<string>() == "ATTRIBUTES_UPDATED");
        }
    }

    [Fact]
    public async Task ApiKey_IsListedWithoutItsKey_AndOnceRevokedIsRefused()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Revoke " + Guid.NewGuid().ToString("N")[..6]);
        var (_, other) = await _sysAdmin.CreateTenantWithAdminAsync("Elsewhere " + Guid.NewGuid().ToString("N")[..6]);
        using (admin)
        using (other)
        {
            var created = await admin.PostAsync("/api/apiKey", new { name = "billing export", authority = "VIEWER" });
            var id = created["id"]!["id"]!.GetValue<string>();
            var key = created["key"]!.GetValue<string>();
            using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
            async Task<HttpResponseMessage> WithKey(string path)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, path);
                request.Headers.Add("X-Api-Key", key);
                return await http.SendAsync(request);
            }

            var listed = await admin.GetAsync("/api/apiKeys?pageSize=10&page=0");
            var entry = Assert.Single(listed["data"]!.AsArray());
            Assert.Equal(id, entry!["id"]!["id"]!.GetValue<string>());
            Assert.Equal("billing export", entry["name"]!.GetValue<string>());
            Assert.Equal("VIEWER", entry["authority"]!.GetValue<string>());
            Assert.Null(entry["key"]);
            Assert.DoesNotContain(key, listed.ToJsonString(), StringComparison.Ordinal);
            await PlatformApi.ExpectAsync(await WithKey("/api/tenant/devices?pageSize=1&page=0"), HttpStatusCode.OK);

            // Another tenant sees none of it and cannot revoke it; users other than administrators may not list keys.
            Assert.Empty((await other.GetAsync("/api/apiKeys?pageSize=10&page=0"))["data"]!.AsArray());
            await PlatformApi.ExpectProblemAsync(await other.SendAsync(HttpMethod.Delete, $"/api/apiKey/{id}"), HttpStatusCode.NotFound);
            using var viewer = await admin.CreateUserAsync("VIEWER");
            await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Get, "/api/apiKeys"), HttpStatusCode.Forbidden);
            await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Delete, $"/api/apiKey/{id}"), HttpStatusCode.Forbidden);
            await PlatformApi.ExpectAsync(await WithKey("/api/tenant/devices?pageSize=1&page=0"), HttpStatusCode.OK);

            await PlatformApi.ExpectAsync(await admin.SendAsync(HttpMethod.Delete, $"/api/apiKey/{id}"), HttpStatusCode.OK);
            await PlatformApi.ExpectProblemAsync(await WithKey("/api/tenant/devices?pageSize=1&page=0"), HttpStatusCode.Unauthorized);
            Assert.Empty((await admin.GetAsync("/api/apiKeys?pageSize=10&page=0"))["data"]!.AsArray());
            await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Delete, $"/api/apiKey/{id}"), HttpStatusCode.NotFound);
        }
    }
}
