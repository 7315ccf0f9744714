using System.Net;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>ThingsBoard's device provisioning: with user name "provision" over MQTT, and POST /api/v1/provision.</summary>
public sealed class ProvisioningTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private async Task<(string Key, string Secret)> CreateProfileAsync(string strategy)
    {
        var key = "key-" + Guid.NewGuid().ToString("N");
        var secret = "secret-" + Guid.NewGuid().ToString("N");
        await fixture.Admin.PostAsync("/api/deviceProfile", new
        {
            name = "profile-" + Guid.NewGuid().ToString("N")[..8],
            provisionType = strategy,
            profileData = new { provisionConfiguration = new { type = strategy, provisionDeviceKey = key, provisionDeviceSecret = secret } },
        });
        return (key, secret);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Mqtt_ProvisionRequest_CreatesTheDevice_AndItsTokenWorks(MqttProtocolVersion version)
    {
        var (key, secret) = await CreateProfileAsync("ALLOW_CREATE_NEW_DEVICES");
        var name = "provisioned-" + Guid.NewGuid().ToString("N")[..8];
        await using (var provisioner = await DeviceClient.ConnectAsync(fixture.Server, "provision", version))
        {
            await provisioner.SubscribeAsync("/provision/response");
            await provisioner.PublishAsync("/provision/request", $"{{\"deviceName\":\"{name}\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"{secret}\"}}");
            var response = JsonNode.Parse((await provisioner.NextAsync()).ConvertPayloadToString())!;
            Assert.Equal("SUCCESS", response["status"]!.GetValue<string>());
            Assert.Equal("ACCESS_TOKEN", response["credentialsType"]!.GetValue<string>());
            var token = response["credentialsValue"]!.GetValue<string>();

            await using var device = await DeviceClient.ConnectAsync(fixture.Server, token, version);
            await device.PublishAsync("v1/devices/me/telemetry", "{\"provisioned\":true}");
        }

        var found = await fixture.Admin.GetAsync($"/api/tenant/devices?pageSize=10&page=0&textSearch={name}");
        var id = Guid.Parse(found["data"]!.AsArray().Single()!["id"]!["id"]!.GetValue<string>());
        Assert.True((await fixture.Admin.LatestAsync(id))["provisioned"].Value!.GetValue<bool>());

        // Asking again for the same name: ThingsBoard refuses a second provisioning of one device.
        await using var again = await DeviceClient.ConnectAsync(fixture.Server, "provision", version);
        await again.SubscribeAsync("/provision/response");
        await again.PublishAsync("/provision/request", $"{{\"deviceName\":\"{name}\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"{secret}\"}}");
        Assert.Equal("FAILURE", JsonNode.Parse((await again.NextAsync()).ConvertPayloadToString())!["status"]!.GetValue<string>());
    }

    [Fact]
    public async Task Http_Provision_WithWrongSecret_IsNotFound_AndWithTheRightOne_ReturnsAToken()
    {
        var (key, secret) = await CreateProfileAsync("ALLOW_CREATE_NEW_DEVICES");
        var url = $"http://127.0.0.1:{fixture.Server.HttpPort}/api/v1/provision";
        var (status, body) = await Curl.RunAsync("-X", "POST", url, "--data", $"{{\"deviceName\":\"x\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"wrong\"}}");
        Assert.Equal(200, status);
        Assert.Equal("NOT_FOUND", JsonNode.Parse(body)!["status"]!.GetValue<string>());

        (status, body) = await Curl.RunAsync("-X", "POST", url, "--data", $"{{\"deviceName\":\"http-{Guid.NewGuid():N}\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"{secret}\",\"credentialsType\":\"ACCESS_TOKEN\",\"token\":\"chosen-{key}\"}}");
        Assert.Equal(200, status);
        var response = JsonNode.Parse(body)!;
        Assert.Equal("SUCCESS", response["status"]!.GetValue<string>());
        Assert.Equal("chosen-" + key, response["credentialsValue"]!.GetValue<string>());
    }

    [Fact]
    public async Task PreProvisionedStrategy_HandsOutOnlyTheCredentialsOfExistingDevices()
    {
        var (key, secret) = await CreateProfileAsync("CHECK_PRE_PROVISIONED_DEVICES");
        var profiles = await fixture.Admin.GetAsync("/api/deviceProfiles?pageSize=100&page=0");
        var profileId = profiles["data"]!.AsArray().Single(p => p!["provisionDeviceKey"]?.GetValue<string>() == key)!["id"]!["id"]!.GetValue<string>();
        var name = "pre-" + Guid.NewGuid().ToString("N")[..8];
        await fixture.Admin.PostAsync("/api/device?accessToken=pre-" + key, new { name, deviceProfileId = new { id = profileId, entityType = "DEVICE_PROFILE" } });

        var url = $"http://127.0.0.1:{fixture.Server.HttpPort}/api/v1/provision";
        var (_, unknown) = await Curl.RunAsync("-X", "POST", url, "--data", $"{{\"deviceName\":\"never-created\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"{secret}\"}}");
        Assert.Equal("NOT_FOUND", JsonNode.Parse(unknown)!["status"]!.GetValue<string>());
        var (_, known) = await Curl.RunAsync("-X", "POST", url, "--data", $"{{\"deviceName\":\"{name}\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"{secret}\"}}");
        Assert.Equal("pre-" + key, JsonNode.Parse(known)!["credentialsValue"]!.GetValue<string>());
    }

    [Fact]
    public async Task ProvisioningConnection_MayOnlyAskAndHear()
    {
        await using var provisioner = await DeviceClient.ConnectAsync(fixture.Server, "provision");
        Assert.Equal(MQTTnet.MqttClientSubscribeResultCode.NotAuthorized, await provisioner.TrySubscribeAsync("#"));
        var result = await provisioner.TryPublishAsync("v1/devices/me/telemetry", "{\"a\":1}");
        Assert.Equal(MQTTnet.MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
    }
}
