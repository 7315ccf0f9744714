using System.Net;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Tenants never see each other; a device reaches only its own device topics; roles limit what users change.
/// Every refusal is checked through the API a real client would use.
/// </summary>
public sealed class IsolationTests : IAsyncLifetime
{
    private ServerProcess _server = null!;
    private PlatformApi _sysAdmin = null!;
    private PlatformApi _adminA = null!;
    private PlatformApi _adminB = null!;
    private Guid _tenantA;
    private Guid _deviceA;
    private string _tokenA = "";

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync();
        _sysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_tenantA, _adminA) = await _sysAdmin.CreateTenantWithAdminAsync("Tenant A");
        (_, _adminB) = await _sysAdmin.CreateTenantWithAdminAsync("Tenant B");
        (_deviceA, _tokenA) = await _adminA.CreateDeviceAsync("secret-station", "token-of-a");
        await using var device = await DeviceClient.ConnectAsync(_server, _tokenA);
        await device.PublishAsync("v1/devices/me/telemetry", "{\"level\":7}");
        await device.PublishAsync("v1/devices/me/attributes", "{\"model\":\"A-1\"}");
        await _adminA.PostAsync($"/api/plugins/telemetry/DEVICE/{_deviceA}/SHARED_SCOPE", new { mode = "a" });
    }

    public async Task DisposeAsync()
    {
        _sysAdmin.Dispose();
        _adminA.Dispose();
        _adminB.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task AnotherTenantsAdministrator_CanNeitherReadNorChangeNorLearnOfADevice()
    {
        var id = _deviceA;
        foreach (var path in new[]
        {
            $"/api/device/{id}",
            $"/api/device/{id}/credentials",
            $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries",
            $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=level&startTs=0&endTs=9999999999999",
            $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries/page?key=level&startTs=0&endTs=9999999999999",
            $"/api/plugins/telemetry/DEVICE/{id}/keys/timeseries",
            $"/api/plugins/telemetry/DEVICE/{id}/values/attributes",
            $"/api/plugins/telemetry/DEVICE/{id}/values/attributes/CLIENT_SCOPE",
            $"/api/tenant/{_tenantA}",
            $"/api/tenant/{_tenantA}/users",
        })
        {
            // Not found, exactly as for an id that does not exist: the answer says nothing of the other tenant.
            await PlatformApi.ExpectProblemAsync(await _adminB.SendAsync(HttpMethod.Get, path), HttpStatusCode.NotFound);
        }

        await PlatformApi.ExpectProblemAsync(await _adminB.SendAsync(HttpMethod.Post, "/api/device", new { id = new { id, entityType = "DEVICE" }, name = "hijacked" }), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await _adminB.SendAsync(HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { mode = "b" }), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await _adminB.SendAsync(HttpMethod.Post, "/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "ACCESS_TOKEN", credentialsId = "stolen" }), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await _adminB.SendAsync(HttpMethod.Delete, $"/api/plugins/telemetry/DEVICE/{id}/timeseries/delete?keys=level&deleteAllDataForKeys=true"), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await _adminB.SendAsync(HttpMethod.Delete, $"/api/device/{id}"), HttpStatusCode.NotFound);

        var listed = await _adminB.GetAsync("/api/tenant/devices?pageSize=100&page=0&textSearch=secret");
        Assert.Empty(listed["data"]!.AsArray());
        Assert.Equal(0, listed["totalElements"]!.GetValue<int>());
        var audit = await _adminB.GetAsync("/api/audit/logs?pageSize=100&page=0");
        Assert.DoesNotContain("secret-station", audit.ToJsonString(), StringComparison.Ordinal);

        // And tenant A still has everything, unchanged.
        var device = await _adminA.GetAsync($"/api/device/{id}");
        Assert.Equal("secret-station", device["name"]!.GetValue<string>());
        Assert.Equal("token-of-a", (await _adminA.GetAsync($"/api/device/{id}/credentials"))["credentialsId"]!.GetValue<string>());
        Assert.Equal(7, (await _adminA.LatestAsync(id))["level"].Value!.GetValue<int>());
        var auditA = await _adminA.GetAsync("/api/audit/logs?pageSize=100&page=0");
        Assert.Contains("secret-station", auditA.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SystemAdministrator_ManagesTenants_ButDoesNotReadTheirDevices()
    {
        await PlatformApi.ExpectProblemAsync(await _sysAdmin.SendAsync(HttpMethod.Get, $"/api/device/{_deviceA}"), HttpStatusCode.Forbidden);
        await PlatformApi.ExpectProblemAsync(await _sysAdmin.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Forbidden);
        var tenants = await _sysAdmin.GetAsync("/api/tenants?pageSize=10&page=0");
        Assert.True(tenants["totalElements"]!.GetValue<int>() >= 2);
        await PlatformApi.ExpectProblemAsync(await _adminA.SendAsync(HttpMethod.Get, "/api/tenants?pageSize=10&page=0"), HttpStatusCode.Forbidden);
        await PlatformApi.ExpectProblemAsync(await _adminA.SendAsync(HttpMethod.Post, "/api/tenant", new { title = "Self-made" }), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Viewer_ReadsButChangesNothing_AndOperator_ManagesDataButNotCredentialsOrUsers()
    {
        using var viewer = await _adminA.CreateUserAsync("VIEWER");
        Assert.Equal("secret-station", (await viewer.GetAsync($"/api/device/{_deviceA}"))["name"]!.GetValue<string>());
        Assert.Equal(7, (await viewer.LatestAsync(_deviceA))["level"].Value!.GetValue<int>());
        foreach (var (method, path, body) in new (HttpMethod, string, object?)[]
        {
            (HttpMethod.Post, "/api/device", new { name = "by-viewer" }),
            (HttpMethod.Post, "/api/device", new { id = new { id = _deviceA, entityType = "DEVICE" }, name = "renamed" }),
            (HttpMethod.Delete, $"/api/device/{_deviceA}", null),
            (HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{_deviceA}/SHARED_SCOPE", new { mode = "v" }),
            (HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{_deviceA}/attributes/SERVER_SCOPE", new { mode = "v" }),
            (HttpMethod.Delete, $"/api/plugins/telemetry/DEVICE/{_deviceA}/timeseries/delete?keys=level&deleteAllDataForKeys=true", null),
            (HttpMethod.Get, $"/api/device/{_deviceA}/credentials", null),
            (HttpMethod.Post, "/api/user?sendActivationMail=false", new { email = "v@example.com", authority = "VIEWER" }),
            (HttpMethod.Post, "/api/deviceProfile", new { name = "p", provisionType = "DISABLED" }),
            (HttpMethod.Get, "/api/audit/logs?pageSize=10&page=0", null),
        })
        {
            await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(method, path, body), HttpStatusCode.Forbidden);
        }

        Assert.Equal(7, (await _adminA.LatestAsync(_deviceA))["level"].Value!.GetValue<int>());
        Assert.Equal("secret-station", (await _adminA.GetAsync($"/api/device/{_deviceA}"))["name"]!.GetValue<string>());

        using var operatorUser = await _adminA.CreateUserAsync("OPERATOR");
        var created = await operatorUser.PostAsync("/api/device", new { name = "by-operator" });
        await operatorUser.PostAsync($"/api/plugins/telemetry/DEVICE/{created["id"]!["id"]}/SHARED_SCOPE", new { mode = "o" });
        await PlatformApi.ExpectProblemAsync(await operatorUser.SendAsync(HttpMethod.Get, $"/api/device/{_deviceA}/credentials"), HttpStatusCode.Forbidden);
        await PlatformApi.ExpectProblemAsync(await operatorUser.SendAsync(HttpMethod.Post, "/api/user?sendActivationMail=false", new { email = "o@example.com", authority = "VIEWER" }), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Device_CannotPublishOrSubscribeToAnotherDevicesTopics_NorHearThemThroughWildcards()
    {
        var (otherId, otherToken) = await _adminA.CreateDeviceAsync("neighbour-" + Guid.NewGuid().ToString("N")[..6]);
        var otherPrefix = "$devices/" + otherId.ToString("N") + "/";
        await using var spy = await DeviceClient.ConnectAsync(_server, _tokenA);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await spy.TryPublishAsync(otherPrefix + "telemetry", "{\"level\":666}")).ReasonCode);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await spy.TrySubscribeAsync(otherPrefix + "#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await spy.TrySubscribeAsync("$devices/+/telemetry"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await spy.TrySubscribeAsync("$share/g/" + otherPrefix + "telemetry"));
        await spy.SubscribeAsync("#");

        await using (var neighbour = await DeviceClient.ConnectAsync(_server, otherToken))
        {
            await neighbour.PublishAsync("v1/devices/me/telemetry", "{\"private\":1}");
        }

        // The neighbour's PUBACK came after its message was routed; anything routed to the spy is queued before
        // the spy's own marker, so the marker arriving first means the neighbour's telemetry never did.
        await spy.PublishAsync("marker", "m");
        var first = await spy.NextAsync();
        Assert.Equal("marker", first.Topic);
        Assert.Equal(7, (await _adminA.LatestAsync(_deviceA))["level"].Value!.GetValue<int>());
        Assert.False((await _adminA.LatestAsync(otherId)).ContainsKey("level"));
    }

    [Fact]
    public async Task PlainTopics_AreSharedWithinATenant_AndInvisibleToOtherTenants()
    {
        var (_, tokenA2) = await _adminA.CreateDeviceAsync("same-tenant-" + Guid.NewGuid().ToString("N")[..6]);
        var (_, tokenB) = await _adminB.CreateDeviceAsync("other-tenant-" + Guid.NewGuid().ToString("N")[..6]);
        await using var sameTenant = await DeviceClient.ConnectAsync(_server, tokenA2);
        await using var otherTenant = await DeviceClient.ConnectAsync(_server, tokenB);
        await sameTenant.SubscribeAsync("city/#");
        await otherTenant.SubscribeAsync("city/#");
        await using var publisher = await DeviceClient.ConnectAsync(_server, _tokenA);
        await publisher.PublishAsync("city/air/pm25", "35");

        Assert.Equal("city/air/pm25", (await sameTenant.NextAsync()).Topic);
        await otherTenant.PublishAsync("city/marker", "b");
        Assert.Equal("city/marker", (await otherTenant.NextAsync()).Topic);
    }

    [Fact]
    public async Task DevicePublishingItsAttributes_DoesNotHearItsOwnPublishBack()
    {
        await using var device = await DeviceClient.ConnectAsync(_server, _tokenA);
        await device.SubscribeAsync("v1/devices/me/attributes");
        await device.PublishAsync("v1/devices/me/attributes", "{\"firmware\":\"2\"}");
        await _adminA.PostAsync($"/api/plugins/telemetry/DEVICE/{_deviceA}/SHARED_SCOPE", new { pushed = true });
        var first = System.Text.Json.Nodes.JsonNode.Parse((await device.NextAsync()).ConvertPayloadToString())!;
        Assert.True(first["pushed"]!.GetValue<bool>());
    }
}
