using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// A tenant of the bench's own on a Taihu server, made through the management API as a user would: the system
/// administrator creates the tenant and a tenant administrator, who creates the devices (8 requests at a time,
/// each device with a known access token). Shared by the platform scenarios (telemetry, rpc, rpc-persistent,
/// live); <see cref="DeleteAsync"/> removes the tenant with everything in it.
/// </summary>
public sealed class BenchTenant
{
    private BenchTenant(HttpClient http, string runId, string tenantId, string sysToken, string adminEmail, string adminPassword, string adminToken)
    {
        Http = http;
        RunId = runId;
        TenantId = tenantId;
        SysToken = sysToken;
        AdminEmail = adminEmail;
        AdminPassword = adminPassword;
        AdminToken = adminToken;
    }

    public HttpClient Http { get; }

    /// <summary>Eight characters that name this run's tenant, devices and client ids.</summary>
    public string RunId { get; }

    public string TenantId { get; }

    public string SysToken { get; }

    public string AdminEmail { get; }

    public string AdminPassword { get; }

    /// <summary>The tenant administrator's JWT (for the RPC and live APIs).</summary>
    public string AdminToken { get; private set; }

    public static async Task<BenchTenant> CreateAsync(HttpClient http, string adminUser, string adminPassword, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(http);
        var runId = Guid.NewGuid().ToString("N")[..8];
        var sysToken = await LoginAsync(http, adminUser, adminPassword, cancellationToken);
        var tenant = await SendAsync(http, HttpMethod.Post, sysToken, "/api/tenant", new { title = "bench-" + runId }, cancellationToken);
        var tenantId = tenant.GetProperty("id").GetProperty("id").GetString()!;
        var email = $"bench-{runId}@bench.local";
        var password = "bench-" + Guid.NewGuid().ToString("N");
        await SendAsync(http, HttpMethod.Post, sysToken, "/api/user?sendActivationMail=false",
            new { email, authority = "TENANT_ADMIN", password, tenantId = new { id = tenantId, entityType = "TENANT" } }, cancellationToken);
        var adminToken = await LoginAsync(http, email, password, cancellationToken);
        return new BenchTenant(http, runId, tenantId, sysToken, email, password, adminToken);
    }

    /// <summary>An existing tenant (after a server restart): logs its administrator in again.</summary>
    public static async Task<BenchTenant> ReopenAsync(HttpClient http, string runId, string tenantId, string adminUser, string adminPassword, string email, string password, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(http);
        var sysToken = await LoginAsync(http, adminUser, adminPassword, cancellationToken);
        var adminToken = await LoginAsync(http, email, password, cancellationToken);
        return new BenchTenant(http, runId, tenantId, sysToken, email, password, adminToken);
    }

    /// <summary>Creates <paramref name="count"/> devices with access tokens <c>bench-{run}-{i}</c>; returns their ids and tokens.</summary>
    public async Task<(string[] Ids, string[] Tokens)> CreateDevicesAsync(int count, IProgress<ProgressReport>? progress, CancellationToken cancellationToken)
    {
        var ids = new string[count];
        var tokens = new string[count];
        var next = -1;
        var started = Stopwatch.GetTimestamp();
        var workers = new Task[8];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < count)
                {
                    tokens[i] = $"bench-{RunId}-{i}";
                    var device = await SendAsync(Http, HttpMethod.Post, AdminToken, $"/api/device?accessToken={tokens[i]}", new { name = $"bench meter {i}", type = "meter" }, cancellationToken);
                    ids[i] = device.GetProperty("id").GetProperty("id").GetString()!;
                    if (i % 100 == 0)
                    {
                        progress?.Report(new ProgressReport("creating devices", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(1), i + 1, 0, 0));
                    }
                }
            }, cancellationToken);
        }

        await Task.WhenAll(workers);
        return (ids, tokens);
    }

    /// <summary>Deletes the tenant with its devices; failures are ignored (the run is over).</summary>
    public async Task DeleteAsync()
    {
        using var delete = new HttpRequestMessage(HttpMethod.Delete, $"/api/tenant/{TenantId}");
        delete.Headers.Add("X-Authorization", "Bearer " + SysToken);
        try
        {
            using var response = await Http.SendAsync(delete, CancellationToken.None);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
        }
    }

    public static async Task<string> LoginAsync(HttpClient http, string user, string password, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(http);
        var response = await http.PostAsJsonAsync("/api/auth/login", new { username = user, password }, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Login as {user} failed: {(int)response.StatusCode} {body}");
        }

        return JsonDocument.Parse(body).RootElement.GetProperty("token").GetString()!;
    }

    /// <summary>Sends a request with a JWT; a failure status throws with the server's answer.</summary>
    public static async Task<JsonElement> SendAsync(HttpClient http, HttpMethod method, string? token, string path, object? body, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(http);
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
        if (token is not null)
        {
            request.Headers.Add("X-Authorization", "Bearer " + token);
        }

        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"{method} {path} failed: {(int)response.StatusCode} {text}");
        }

        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }
}
