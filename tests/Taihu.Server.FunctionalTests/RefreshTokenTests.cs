using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>Token rules: a refresh token is good for one exchange, and a JWT is not good before its <c>nbf</c>.</summary>
public sealed class RefreshTokenTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task RefreshToken_IsGoodForOneExchange_AndReusingIt_RevokesTheFamily()
    {
        var (_, admin) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Rotate " + Guid.NewGuid().ToString("N")[..6], "rotate@example.com", "rotate-password");
        admin.Dispose();
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var login = await PlatformApi.ExpectAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "rotate@example.com", password = "rotate-password" }), HttpStatusCode.OK);
        var first = login["refreshToken"]!.GetValue<string>();
        var second = await PlatformApi.ExpectAsync(await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = first }), HttpStatusCode.OK);
        Assert.NotEqual(first, second["refreshToken"]!.GetValue<string>());

        // The same refresh token again: refused, and whatever the exchange gave is revoked with it (a thief and
        // the owner cannot both keep going).
        await PlatformApi.ExpectProblemAsync(await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = first }), HttpStatusCode.Unauthorized);
        await PlatformApi.ExpectProblemAsync(await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = second["refreshToken"]!.GetValue<string>() }), HttpStatusCode.Unauthorized);
        using var rotated = new PlatformApi(fixture.Server, second["token"]!.GetValue<string>());
        await PlatformApi.ExpectProblemAsync(await rotated.SendAsync(HttpMethod.Get, "/api/auth/user"), HttpStatusCode.Unauthorized);

        // Logging in again works.
        rotated.Token = await rotated.LoginAsync("rotate@example.com", "rotate-password");
        await rotated.GetAsync("/api/auth/user");
    }

    [Fact]
    public async Task RefreshToken_ExchangedInParallel_WorksOnce()
    {
        var (_, admin) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Race " + Guid.NewGuid().ToString("N")[..6], "race@example.com", "race-password");
        admin.Dispose();
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var login = await PlatformApi.ExpectAsync(await http.PostAsJsonAsync("/api/auth/login", new { username = "race@example.com", password = "race-password" }), HttpStatusCode.OK);
        var refresh = login["refreshToken"]!.GetValue<string>();
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => http.PostAsJsonAsync("/api/auth/token", new { refreshToken = refresh })));
        Assert.Equal(1, answers.Count(a => a.StatusCode == HttpStatusCode.OK));
        Assert.Equal(7, answers.Count(a => a.StatusCode == HttpStatusCode.Unauthorized));
    }

    [Fact]
    public async Task Jwt_WithNotBeforeInTheFuture_IsRefused()
    {
        // A token the server itself signed, with nbf an hour ahead: only the nbf check can refuse it.
        var token = fixture.Admin.Token!;
        var parts = token.Split('.');
        var payload = JsonNode.Parse(Base64UrlDecode(parts[1]))!;
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        payload["nbf"] = now + 3600;
        payload["iat"] = now;
        var key = Convert.FromBase64String(File.ReadAllText(Path.Combine(fixture.Server.DataDirectory, "jwt-signing.key")).Trim());
        var unsigned = parts[0] + "." + Base64UrlEncode(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        var forged = unsigned + "." + Base64UrlEncode(HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(unsigned)));

        // The same re-signing with nbf now is accepted, so the refusal below is the nbf check.
        payload["nbf"] = now - 1;
        var fineUnsigned = parts[0] + "." + Base64UrlEncode(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        var fine = fineUnsigned + "." + Base64UrlEncode(HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(fineUnsigned)));
        using var api = new PlatformApi(fixture.Server, fine);
        await api.GetAsync("/api/auth/user");

        api.Token = forged;
        await PlatformApi.ExpectProblemAsync(await api.SendAsync(HttpMethod.Get, "/api/auth/user"), HttpStatusCode.Unauthorized);
    }

    private static byte[] Base64UrlDecode(string text)
    {
        var padded = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(padded + new string('=', (4 - padded.Length % 4) % 4));
    }

    private static string Base64UrlEncode(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
