using System.Net;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Unique things shared by all tenants (access tokens, MQTT basic user names, provision keys, e-mail addresses)
/// are refused with one answer that says nothing about who holds them, the same in the holder's tenant and in any
/// other; and trying tokens through device creation is limited like trying them over MQTT.
/// </summary>
public sealed class CredentialConflictTests : IAsyncLifetime
{
    private const int Limit = 4;
    private ServerProcess _server = null!;
    private PlatformApi _sysAdmin = null!;
    private PlatformApi _holder = null!;
    private PlatformApi _other = null!;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Security__DeviceAuthFailuresPerMinute"] = Limit.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        _sysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_, _holder) = await _sysAdmin.CreateTenantWithAdminAsync("Holder " + Guid.NewGuid().ToString("N")[..6]);
        (_, _other) = await _sysAdmin.CreateTenantWithAdminAsync("Other " + Guid.NewGuid().ToString("N")[..6]);
    }

    public async Task DisposeAsync()
    {
        _holder.Dispose();
        _other.Dispose();
        _sysAdmin.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task AccessTokenHeldElsewhere_GetsTheSameGenericAnswerAsOneHeldInTheSameTenant()
    {
        var token = "STATION-" + Guid.NewGuid().ToString("N")[..8];
        await _holder.CreateDeviceAsync("station", token);
        var sameTenant = await AnswerAsync(_holder, HttpMethod.Post, $"/api/device?accessToken={token}", new { name = "station-copy" });
        var otherTenant = await AnswerAsync(_other, HttpMethod.Post, $"/api/device?accessToken={token}", new { name = "station-copy" });
        Assert.Equal(sameTenant, otherTenant);
        Assert.Equal((409, "These credentials cannot be used; choose other ones."), sameTenant);
    }

    [Fact]
    public async Task MqttBasicUserNameHeldElsewhere_GetsTheSameGenericAnswer()
    {
        var user = "basic-" + Guid.NewGuid().ToString("N")[..8];
        var (held, _) = await _holder.CreateDeviceAsync("basic-held");
        var (mine, _) = await _holder.CreateDeviceAsync("basic-mine");
        var (theirs, _) = await _other.CreateDeviceAsync("basic-theirs");
        object Basic(Guid id) => new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "MQTT_BASIC", credentialsValue = $"{{\"userName\":\"{user}\",\"password\":\"pw-{user}\"}}" };
        await _holder.PostAsync("/api/device/credentials", Basic(held));
        var sameTenant = await AnswerAsync(_holder, HttpMethod.Post, "/api/device/credentials", Basic(mine));
        var otherTenant = await AnswerAsync(_other, HttpMethod.Post, "/api/device/credentials", Basic(theirs));
        Assert.Equal(sameTenant, otherTenant);
        Assert.Equal((409, "These credentials cannot be used; choose other ones."), sameTenant);
    }

    [Fact]
    public async Task EmailHeldElsewhere_GetsTheSameAnswerAsOneHeldInTheSameTenant()
    {
        var email = $"taken-{Guid.NewGuid():N}@example.com";
        await _holder.PostAsync("/api/user?sendActivationMail=false", new { email, authority = "VIEWER", password = "viewer-password" });
        var sameTenant = await AnswerAsync(_holder, HttpMethod.Post, "/api/user?sendActivationMail=false", new { email, authority = "VIEWER", password = "viewer-password" });
        var otherTenant = await AnswerAsync(_other, HttpMethod.Post, "/api/user?sendActivationMail=false", new { email, authority = "VIEWER", password = "viewer-password" });
        Assert.Equal(sameTenant, otherTenant);
        Assert.Equal((409, "This e-mail address cannot be used for a new user."), sameTenant);
    }

    [Fact]
    public async Task ProvisionKeyHeldElsewhere_GetsTheSameAnswerAsOneHeldInTheSameTenant()
    {
        var key = "key-" + Guid.NewGuid().ToString("N")[..8];
        object Profile(string name) => new { name, provisionType = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, profileData = new { provisionConfiguration = new { provisionDeviceSecret = "secret-" + name } } };
        await _holder.PostAsync("/api/deviceProfile", Profile("held"));
        var sameTenant = await AnswerAsync(_holder, HttpMethod.Post, "/api/deviceProfile", Profile("probe"));
        var otherTenant = await AnswerAsync(_other, HttpMethod.Post, "/api/deviceProfile", Profile("probe"));
        Assert.Equal(sameTenant, otherTenant);
    }

    [Fact]
    public async Task TryingTokensThroughDeviceCreation_IsLimitedLikeGuessingThem()
    {
        var taken = new List<string>();
        for (var i = 0; i < Limit + 2; i++)
        {
            var token = $"taken-{i}-" + Guid.NewGuid().ToString("N")[..8];
            await _holder.CreateDeviceAsync("held-" + i, token);
            taken.Add(token);
        }

        // Choosing fresh tokens costs nothing; each conflict counts as a failed authentication of the address.
        await _other.CreateDeviceAsync("fresh-1", "fresh-" + Guid.NewGuid().ToString("N")[..8]);
        for (var i = 0; i < Limit; i++)
        {
            Assert.Equal(409, (await AnswerAsync(_other, HttpMethod.Post, $"/api/device?accessToken={taken[i]}", new { name = "probe-" + i })).Status);
        }

        var refused = await _other.SendAsync(HttpMethod.Post, $"/api/device?accessToken={taken[Limit]}", new { name = "probe-last" });
        await PlatformApi.ExpectProblemAsync(refused, HttpStatusCode.TooManyRequests);
        Assert.NotNull(refused.Headers.RetryAfter?.Delta);
    }

    private static async Task<(int Status, string Message)> AnswerAsync(PlatformApi api, HttpMethod method, string path, object body)
    {
        var response = await api.SendAsync(method, path, body);
        var node = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        return ((int)response.StatusCode, node["message"]!.GetValue<string>());
    }
}
