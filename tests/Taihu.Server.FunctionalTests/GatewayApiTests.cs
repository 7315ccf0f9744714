using System.Text.Json.Nodes;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>ThingsBoard's gateway API: one connection speaks for the devices behind it.</summary>
public sealed class GatewayApiTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task Gateway_ConnectsDevices_SendsTheirTelemetryAndAttributes_AndHearsTheirSharedAttributes()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("gateway-" + Guid.NewGuid().ToString("N")[..8], gateway: true);
        var deviceA = "Device A " + Guid.NewGuid().ToString("N")[..6];
        var deviceB = "Device B " + Guid.NewGuid().ToString("N")[..6];
        await using var gateway = await DeviceClient.ConnectAsync(fixture.Server, token);
        await gateway.SubscribeAsync("v1/gateway/attributes");
        await gateway.SubscribeAsync("v1/gateway/attributes/response");

        await gateway.PublishAsync("v1/gateway/connect", $"{{\"device\":\"{deviceA}\"}}");
        await gateway.PublishAsync("v1/gateway/telemetry",
            $"{{\"{deviceA}\":[{{\"ts\":1483228800000,\"values\":{{\"temperature\":42,\"humidity\":80}}}}],\"{deviceB}\":[{{\"ts\":1483228801000,\"values\":{{\"temperature\":43}}}}]}}");
        await gateway.PublishAsync("v1/gateway/attributes", $"{{\"{deviceA}\":{{\"firmwareVersion\":\"2.3.1\"}}}}");

        var idA = await DeviceIdAsync(deviceA);
        var idB = await DeviceIdAsync(deviceB);
        var latestA = await fixture.Admin.LatestAsync(idA);
        Assert.Equal(42, latestA["temperature"].Value!.GetValue<long>());
        Assert.Equal(1483228800000, latestA["temperature"].Ts);
        Assert.Equal(43, (await fixture.Admin.LatestAsync(idB))["temperature"].Value!.GetValue<long>());

        // Connectivity of the device behind the gateway is kept as server attributes (written in the background).
        await gateway.PublishAsync("v1/gateway/attributes/request", $"{{\"id\":7,\"device\":\"{deviceA}\",\"client\":true,\"key\":\"firmwareVersion\"}}");
        var response = JsonNode.Parse((await gateway.NextAsync()).ConvertPayloadToString())!;
        Assert.Equal(7, response["id"]!.GetValue<int>());
        Assert.Equal(deviceA, response["device"]!.GetValue<string>());
        Assert.Equal("2.3.1", response["value"]!.GetValue<string>());

        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{idA}/SHARED_SCOPE", new { reportInterval = 60 });
        var pushed = JsonNode.Parse((await gateway.NextAsync()).ConvertPayloadToString())!;
        Assert.Equal(deviceA, pushed["device"]!.GetValue<string>());
        Assert.Equal(60, pushed["data"]!["reportInterval"]!.GetValue<int>());

        await gateway.PublishAsync("v1/gateway/disconnect", $"{{\"device\":\"{deviceA}\"}}");
    }

    [Fact]
    public async Task OrdinaryDevice_MayNotUseTheGatewayApi()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("not-a-gateway-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        var result = await device.TryPublishAsync("v1/gateway/telemetry", "{\"Sneaky\":[{\"x\":1}]}");
        Assert.Equal(MQTTnet.MqttClientPublishReasonCode.NotAuthorized, result.ReasonCode);
        var found = await fixture.Admin.GetAsync("/api/tenant/devices?pageSize=10&page=0&textSearch=Sneaky");
        Assert.Empty(found["data"]!.AsArray());
    }

    private async Task<Guid> DeviceIdAsync(string name)
    {
        var found = await fixture.Admin.GetAsync($"/api/tenant/devices?pageSize=10&page=0&textSearch={Uri.EscapeDataString(name)}");
        return Guid.Parse(found["data"]!.AsArray().Single()!["id"]!["id"]!.GetValue<string>());
    }
}
