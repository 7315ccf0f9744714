using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The failed-login limits hold in parallel, per account and per source address, and answer an unknown account
/// exactly as a known one. Each test has its own server (the limits are per process), with a back-off of a minute so
/// that no test can outrun it.
/// </summary>
public sealed class LoginAbuseTests : IAsyncLifetime
{
    private const int PerAddress = 12;
    private ServerProcess _server = null!;
    private PlatformApi _sysAdmin = null!;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(new Dictionary<string, string>
        {
            ["Security__LoginBackoff"] = "00:01:00",
            ["Security__LoginFailuresPerAddressPerMinute"] = PerAddress.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        _sysAdmin = await PlatformApi.SysAdminAsync(_server);
    }

    public async Task DisposeAsync()
    {
        _sysAdmin.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task ParallelWrongPasswords_AreCheckedNoMoreThanTheAccountAllows()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Parallel " + Guid.NewGuid().ToString("N")[..6], "parallel@example.com", "parallel-password");
        admin.Dispose();
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(i =>
            http.PostAsJsonAsync("/api/auth/login", new { username = "parallel@example.com", password = "wrong-" + i })));

        // Five failures in a row are allowed (Security:FailedLoginsBeforeBackoff); every other attempt was refused unchecked.
        Assert.Equal(5, answers.Count(a => a.StatusCode == HttpStatusCode.Unauthorized));
        Assert.Equal(195, answers.Count(a => a.StatusCode == HttpStatusCode.TooManyRequests));
        var refused = answers.First(a => a.StatusCode == HttpStatusCode.TooManyRequests);
        Assert.NotNull(refused.Headers.RetryAfter?.Delta);
        await PlatformApi.ExpectProblemAsync(refused, HttpStatusCode.TooManyRequests);

        // The right password waits too.
        var right = await http.PostAsJsonAsync("/api/auth/login", new { username = "parallel@example.com", password = "parallel-password" });
        await PlatformApi.ExpectProblemAsync(right, HttpStatusCode.TooManyRequests);
    }

    [Fact]
    public async Task ParallelWrongPasswords_OverManyAccounts_AreCheckedNoMoreThanTheAddressAllows()
    {
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(i =>
            http.PostAsJsonAsync("/api/auth/login", new { username = $"spray-{i}@example.com", password = "Winter2026!" })));
        Assert.Equal(PerAddress, answers.Count(a => a.StatusCode == HttpStatusCode.Unauthorized));
        Assert.Equal(200 - PerAddress, answers.Count(a => a.StatusCode == HttpStatusCode.TooManyRequests));
    }

    [Fact]
    public async Task UnknownAccount_IsAnsweredExactlyAsAKnownOne()
    {
        var (_, admin) = await _sysAdmin.CreateTenantWithAdminAsync("Known " + Guid.NewGuid().ToString("N")[..6], "known@example.com", "known-password");
        admin.Dispose();
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress };
        for (var i = 0; i < 6; i++)
        {
            var known = await AnswerAsync(http, "known@example.com");
            var unknown = await AnswerAsync(http, "unknown@example.com");
            Assert.Equal((known.Status, known.Body), (unknown.Status, unknown.Body));

            // Retry-After counts down in whole seconds: two answers moments apart may straddle a second.
            Assert.Equal(known.RetryAfter is null, unknown.RetryAfter is null);
            if (known.RetryAfter is { } k && unknown.RetryAfter is { } u)
            {
                Assert.InRange(Math.Abs(int.Parse(k, CultureInfo.InvariantCulture) - int.Parse(u, CultureInfo.InvariantCulture)), 0, 1);
            }

            Assert.Equal(i < 5 ? 401 : 429, known.Status);
        }
    }

    /// <summary>Status, Retry-After and the body without its timestamp.</summary>
    private static async Task<(int Status, string? RetryAfter, string Body)> AnswerAsync(HttpClient http, string email)
    {
        var response = await http.PostAsJsonAsync("/api/auth/login", new { username = email, password = "not-the-password" });
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
        Assert.True(body.Remove("timestamp"));
        return ((int)response.StatusCode, response.Headers.RetryAfter?.ToString(), body.ToJsonString());
    }
}
