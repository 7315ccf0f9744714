using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A gateway speaks for the devices it created and those assigned to it (additionalInfo.lastConnectedGateway),
/// never for another device of its tenant that it merely names.
/// </summary>
public sealed class GatewayAuthorizationTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task Gateway_CannotWriteToAnotherDeviceOfItsTenant_ByName()
    {
        var victimName = "Victim " + Guid.NewGuid().ToString("N")[..6];
        var (victimId, victimToken) = await fixture.Admin.CreateDeviceAsync(victimName);
        var (_, gatewayToken) = await fixture.Admin.CreateDeviceAsync("gw-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        await using var gateway = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken);

        var telemetry = await gateway.TryPublishAsync("v1/gateway/telemetry", $"{{\"{victimName}\":[{{\"forged\":1}}]}}");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, telemetry.ReasonCode);
        var attributes = await gateway.TryPublishAsync("v1/gateway/attributes", $"{{\"{victimName}\":{{\"forged\":true}}}}");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, attributes.ReasonCode);
        var connect = await gateway.TryPublishAsync("v1/gateway/connect", $"{{\"device\":\"{victimName}\"}}");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, connect.ReasonCode);
        var request = await gateway.TryPublishAsync("v1/gateway/attributes/request", $"{{\"id\":1,\"device\":\"{victimName}\",\"client\":true,\"key\":\"secret\"}}");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, request.ReasonCode);

        // A message naming its own new child and the victim is refused whole: nothing of it is kept.
        var child = "Child " + Guid.NewGuid().ToString("N")[..6];
        var mixed = await gateway.TryPublishAsync("v1/gateway/telemetry",
            $"{{\"{child}\":[{{\"x\":1}}],\"{victimName}\":[{{\"forged\":2}}]}}");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, mixed.ReasonCode);

        // The victim's own data is untouched, and it still works for its owner.
        await using (var victim = await DeviceClient.ConnectAsync(fixture.Server, victimToken))
        {
            await victim.PublishAsync("v1/devices/me/telemetry", "{\"own\":1}");
        }

        var latest = await fixture.Admin.LatestAsync(victimId);
        Assert.False(latest.ContainsKey("forged"));
        Assert.True(latest.ContainsKey("own"));
        var clientAttributes = await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{victimId}/values/attributes/CLIENT_SCOPE");
        Assert.Empty(clientAttributes.AsArray());
    }

    [Fact]
    public async Task Gateway_ReachesItsOwnChildren_AndDevicesAssignedToIt()
    {
        var (gatewayId, gatewayToken) = await fixture.Admin.CreateDeviceAsync("gw-own-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        var assignedName = "Assigned " + Guid.NewGuid().ToString("N")[..6];
        var assigned = await fixture.Admin.PostAsync("/api/device",
            new { name = assignedName, type = "meter", additionalInfo = new { lastConnectedGateway = gatewayId.ToString() } });
        var assignedId = Guid.Parse(assigned["id"]!["id"]!.GetValue<string>());
        Assert.Equal(gatewayId.ToString(), assigned["additionalInfo"]!["lastConnectedGateway"]!.GetValue<string>());

        await using var gateway = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken);
        var child = "Own child " + Guid.NewGuid().ToString("N")[..6];
        await gateway.PublishAsync("v1/gateway/telemetry", $"{{\"{child}\":[{{\"x\":1}}],\"{assignedName}\":[{{\"y\":2}}]}}");
        // Named again later, the child it created is still its own.
        await gateway.PublishAsync("v1/gateway/telemetry", $"{{\"{child}\":[{{\"x\":3}}]}}");

        Assert.Equal(2, (await fixture.Admin.LatestAsync(assignedId))["y"].Value!.GetValue<int>());
        var found = await fixture.Admin.GetAsync($"/api/tenant/devices?pageSize=10&page=0&textSearch={Uri.EscapeDataString(child)}");
        var childId = Guid.Parse(found["data"]!.AsArray()[0]!["id"]!["id"]!.GetValue<string>());
        Assert.Equal(3, (await fixture.Admin.LatestAsync(childId))["x"].Value!.GetValue<int>());
    }

    [Fact]
    public async Task ADeviceTakenAwayFromAGateway_IsNoLongerReachedByIt()
    {
        var (gatewayId, gatewayToken) = await fixture.Admin.CreateDeviceAsync("gw-unassign-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        var name = "Reassigned " + Guid.NewGuid().ToString("N")[..6];
        var created = await fixture.Admin.PostAsync("/api/device", new { name, additionalInfo = new { lastConnectedGateway = gatewayId.ToString() } });
        var id = created["id"]!["id"]!.GetValue<string>();
        await using var gateway = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken);
        await gateway.PublishAsync("v1/gateway/telemetry", $"{{\"{name}\":[{{\"x\":1}}]}}");

        await fixture.Admin.PostAsync("/api/device", new { id = new { id, entityType = "DEVICE" }, name, additionalInfo = new { lastConnectedGateway = (string?)null } });
        // The live gateway connection remembered the device; it is closed, and the next one no longer reaches it.
        var closed = await gateway.Disconnected.WaitAsync(ServerProcess.Guard);
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, closed.Reason);
        await using var again = await DeviceClient.ConnectAsync(fixture.Server, gatewayToken);
        var refused = await again.TryPublishAsync("v1/gateway/telemetry", $"{{\"{name}\":[{{\"x\":2}}]}}");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, refused.ReasonCode);
        Assert.Equal(1, (await fixture.Admin.LatestAsync(Guid.Parse(id)))["x"].Value!.GetValue<int>());
    }

    [Fact]
    public async Task AssigningADevice_ToSomethingThatIsNotAGatewayOfTheTenant_IsRefused()
    {
        var (plainId, _) = await fixture.Admin.CreateDeviceAsync("plain-" + Guid.NewGuid().ToString("N")[..8]);
        var notGateway = await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device",
            new { name = "x-" + Guid.NewGuid().ToString("N")[..8], additionalInfo = new { lastConnectedGateway = plainId.ToString() } });
        await PlatformApi.ExpectProblemAsync(notGateway, HttpStatusCode.BadRequest);
        var unknown = await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device",
            new { name = "y-" + Guid.NewGuid().ToString("N")[..8], additionalInfo = new { lastConnectedGateway = Guid.NewGuid().ToString() } });
        await PlatformApi.ExpectProblemAsync(unknown, HttpStatusCode.NotFound);
        var malformed = await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device",
            new { name = "z-" + Guid.NewGuid().ToString("N")[..8], additionalInfo = new { lastConnectedGateway = 42 } });
        await PlatformApi.ExpectProblemAsync(malformed, HttpStatusCode.BadRequest);

        // An operator writes devices but does not give gateways reach, as it does not set credentials.
        var (gatewayId, _) = await fixture.Admin.CreateDeviceAsync("gw-op-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        using var operatorApi = await fixture.Admin.CreateUserAsync("OPERATOR");
        var byOperator = await operatorApi.SendAsync(HttpMethod.Post, "/api/device",
            new { name = "op-" + Guid.NewGuid().ToString("N")[..8], additionalInfo = new { lastConnectedGateway = gatewayId.ToString() } });
        await PlatformApi.ExpectProblemAsync(byOperator, HttpStatusCode.Forbidden);
    }
}
