using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// The management REST API of a running server, called the way a ThingsBoard script calls it: log in for a JWT,
/// create a tenant and its administrator (<c>POST /api/tenant</c>, <c>POST /api/user</c>, the activation link,
/// <c>POST /api/noauth/activate</c>), then devices.
/// </summary>
public sealed class PlatformApi : IDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    public PlatformApi(ServerProcess server, string? token = null)
    {
        Server = server;
        Http = new HttpClient { BaseAddress = server.HttpBaseAddress, Timeout = Guard };
        Token = token;
    }

    public ServerProcess Server { get; }

    public HttpClient Http { get; }

    /// <summary>The JWT sent in X-Authorization, as ThingsBoard's clients send it.</summary>
    public string? Token { get; set; }

    /// <summary>Logged in as the system administrator.</summary>
    public static async Task<PlatformApi> SysAdminAsync(ServerProcess server)
    {
        var api = new PlatformApi(server);
        api.Token = await api.LoginAsync("sysadmin@taihu.local", ServerProcess.AdminPassword);
        return api;
    }

    public async Task<string> LoginAsync(string email, string password)
    {
        var response = await Http.PostAsJsonAsync("/api/auth/login", new { username = email, password });
        var body = await ExpectAsync(response, HttpStatusCode.OK);
        return body["token"]!.GetValue<string>();
    }

    /// <summary>Creates a tenant and a tenant administrator with ThingsBoard's calls; returns the tenant id and an API logged in as that administrator.</summary>
    public async Task<(Guid TenantId, PlatformApi Admin)> CreateTenantWithAdminAsync(string title, string? email = null, string password = "tenant-admin-pw")
    {
        var tenant = await PostAsync("/api/tenant", new { title });
        var tenantId = Guid.Parse(tenant["id"]!["id"]!.GetValue<string>());
        email ??= $"admin-{Guid.NewGuid():N}@example.com";
        var user = await PostAsync("/api/user?sendActivationMail=false", new { email, authority = "TENANT_ADMIN", tenantId = new { id = tenantId, entityType = "TENANT" } });
        var userId = user["id"]!["id"]!.GetValue<string>();
        var link = await SendAsync(HttpMethod.Get, $"/api/user/{userId}/activationLink");
        Assert.Equal(HttpStatusCode.OK, link.StatusCode);
        var activateToken = (await link.Content.ReadAsStringAsync()).Split("activateToken=")[1];
        var activated = await Http.PostAsJsonAsync("/api/noauth/activate", new { activateToken, password });
        await ExpectAsync(activated, HttpStatusCode.OK);
        var admin = new PlatformApi(Server);
        admin.Token = await admin.LoginAsync(email, password);
        return (tenantId, admin);
    }

    /// <summary>Creates a user of the caller's tenant with a password and returns an API logged in as that user.</summary>
    public async Task<PlatformApi> CreateUserAsync(string authority, string password = "a-user-password")
    {
        var email = $"{authority.ToLowerInvariant()}-{Guid.NewGuid():N}@example.com";
        await PostAsync("/api/user?sendActivationMail=false", new { email, authority, password });
        var user = new PlatformApi(Server);
        user.Token = await user.LoginAsync(email, password);
        return user;
    }

    /// <summary>Creates a device with an access token (generated when null); returns its id and token.</summary>
    public async Task<(Guid Id, string Token)> CreateDeviceAsync(string name, string? accessToken = null, bool gateway = false, string? type = null)
    {
        var path = accessToken is null ? "/api/device" : $"/api/device?accessToken={Uri.EscapeDataString(accessToken)}";
        var device = await PostAsync(path, new { name, type = type ?? "sensor", additionalInfo = new { gateway } });
        var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        var credentials = await GetAsync($"/api/device/{id}/credentials");
        return (id, credentials["credentialsId"]!.GetValue<string>());
    }

    /// <summary>Latest values of a device, typed (useStrictDataTypes=true): key to (ts, value).</summary>
    public async Task<Dictionary<string, (long Ts, JsonNode? Value)>> LatestAsync(Guid deviceId, string? keys = null)
    {
        var node = await GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?useStrictDataTypes=true{(keys is null ? "" : "&keys=" + keys)}");
        var result = new Dictionary<string, (long, JsonNode?)>(StringComparer.Ordinal);
        foreach (var (key, value) in node.AsObject())
        {
            var first = value!.AsArray()[0]!;
            result[key] = (first["ts"]!.GetValue<long>(), first["value"]?.DeepClone());
        }

        return result;
    }

    /// <summary>Raw history of one key in a range (ascending, up to <paramref name="limit"/>).</summary>
    public async Task<List<(long Ts, JsonNode? Value)>> HistoryAsync(Guid deviceId, string key, long startTs, long endTs, int limit = 10_000)
    {
        var node = await GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys={key}&startTs={startTs}&endTs={endTs}&limit={limit}&orderBy=ASC&useStrictDataTypes=true");
        var list = new List<(long, JsonNode?)>();
        if (node[key] is JsonArray points)
        {
            foreach (var point in points)
            {
                list.Add((point!["ts"]!.GetValue<long>(), point["value"]?.DeepClone()));
            }
        }

        return list;
    }

    public async Task<JsonNode> GetAsync(string path)
    {
        var response = await SendAsync(HttpMethod.Get, path);
        return await ExpectAsync(response, HttpStatusCode.OK);
    }

    /// <summary>Asks <paramref name="path"/> until <paramref name="condition"/> holds (each ask is a round trip; no sleeps), for at most 30 s.</summary>
    public async Task<JsonNode> EventuallyAsync(string path, Func<JsonNode, bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var node = await GetAsync(path);
            if (condition(node))
            {
                return node;
            }

            Xunit.Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{path} did not come to the expected state: {node.ToJsonString()}");
        }
    }

    public async Task<JsonNode> PostAsync(string path, object body)
    {
        var response = await SendAsync(HttpMethod.Post, path, body);
        return await ExpectAsync(response, HttpStatusCode.OK);
    }

    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (Token is not null)
        {
            request.Headers.Add("X-Authorization", "Bearer " + Token);
        }

        if (body is string raw)
        {
            request.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        }
        else if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }

        return await Http.SendAsync(request);
    }

    /// <summary>Asserts the status and returns the JSON body (an empty object for an empty body).</summary>
    public static async Task<JsonNode> ExpectAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"Expected {(int)status} but got {(int)response.StatusCode}: {text}");
        return text.Length == 0 ? new JsonObject() : JsonNode.Parse(text)!;
    }

    /// <summary>Asserts an error response: the status, and problem details carrying ThingsBoard's members.</summary>
    public static async Task<JsonNode> ExpectProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var body = await ExpectAsync(response, status);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal((int)status, body["status"]!.GetValue<int>());
        Assert.False(string.IsNullOrEmpty(body["message"]?.GetValue<string>()));
        Assert.NotNull(body["errorCode"]);
        Assert.NotNull(body["timestamp"]);
        return body;
    }

    public void Dispose() => Http.Dispose();
}
