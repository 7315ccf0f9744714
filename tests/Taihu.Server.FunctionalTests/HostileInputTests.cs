using System.Net;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Bad input gets a precise answer and changes nothing: malformed JSON, wrong types, oversized payloads, SQL-looking
/// names and keys. After each case the server still serves and what was stored before is unchanged.
/// </summary>
public sealed class HostileInputTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    public static TheoryData<string> BadTelemetry => new()
    {
        "{\"temperature\":",
        "not json at all",
        "",
        "42",
        "\"a string\"",
        "{\"a\":null}",
        "{\"ts\":\"yesterday\",\"values\":{\"a\":1}}",
        "{\"ts\":1700000000000,\"values\":[1,2]}",
        "{\"ts\":1700000000000,\"values\":{\"a\":1},\"extra\":2}",
        "[{\"a\":1},3]",
        "{\"\":1}",
        "{\"a\":1}{\"b\":2}",
        "{\"a\":1e999}",
    };

    [Theory]
    [MemberData(nameof(BadTelemetry))]
    public async Task V5_BadTelemetry_GetsPayloadFormatInvalid_AndStoresNothing(string payload)
    {
        var (id, token) = await DeviceWithBaselineAsync();
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        var atLeastOnce = await device.TryPublishAsync("v1/devices/me/telemetry", payload);
        Assert.Equal(MqttClientPublishReasonCode.PayloadFormatInvalid, atLeastOnce.ReasonCode);

        // QoS 2, on the wire: PUBREC carries 0x99 (and the flow ends there, section 4.3.3).
        var (raw, _) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "raw-" + Guid.NewGuid().ToString("N")[..8], 5, token, null);
        await using (raw)
        {
            var topic = Encoding.UTF8.GetBytes("v1/devices/me/telemetry");
            await raw.SendAsync(0x34, [(byte)(topic.Length >> 8), (byte)topic.Length, .. topic, 0x00, 0x07, 0x00, .. Encoding.UTF8.GetBytes(payload)]);
            var pubRec = await raw.ReceiveAsync();
            Assert.Equal(5, pubRec!.Type);
            Assert.Equal([0x00, 0x07, 0x99], pubRec.Body.Take(3));
        }

        // The connection goes on, and the baseline is all there is.
        await device.PublishAsync("v1/devices/me/telemetry", "{\"after\":1}");
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(["after", "baseline"], DeviceKeys(latest).Order());
        Assert.Equal(1, latest["baseline"].Value!.GetValue<int>());
    }

    [Fact]
    public async Task V311_BadTelemetry_ClosesTheConnection_BecauseNoAcknowledgementCanSayNo()
    {
        var (id, token) = await DeviceWithBaselineAsync();
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token, MqttProtocolVersion.V311);
        await Assert.ThrowsAnyAsync<Exception>(() => device.TryPublishAsync("v1/devices/me/telemetry", "{broken"));
        await device.Disconnected.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(["baseline"], DeviceKeys(await fixture.Admin.LatestAsync(id)));
    }

    [Fact]
    public async Task V5_BadTelemetryAtQoS0_IsAnsweredWithDisconnect0x99()
    {
        var (_, token) = await DeviceWithBaselineAsync();
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.TryPublishAsync("v1/devices/me/telemetry", "[[[", MqttQualityOfServiceLevel.AtMostOnce);
        var disconnected = await device.Disconnected.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(MqttClientDisconnectReason.PayloadFormatInvalid, disconnected.Reason);
    }

    [Fact]
    public async Task OversizedTelemetry_IsRefused_OverMqttAndHttp()
    {
        var (id, token) = await DeviceWithBaselineAsync();
        var big = "{\"blob\":\"" + new string('x', 70 * 1024) + "\"}";
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, (await device.TryPublishAsync("v1/devices/me/telemetry", big)).ReasonCode);
        var response = await fixture.Admin.Http.PostAsync($"/api/v1/{token}/telemetry", new StringContent(big, Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
        Assert.Equal(["baseline"], DeviceKeys(await fixture.Admin.LatestAsync(id)));
    }

    [Theory]
    [InlineData("{\"temperature\":")]
    [InlineData("{\"a\":null}")]
    [InlineData("[1,2,3]")]
    public async Task Http_BadTelemetry_Is400WithProblemDetails(string payload)
    {
        var (id, token) = await DeviceWithBaselineAsync();
        var response = await fixture.Admin.Http.PostAsync($"/api/v1/{token}/telemetry", new StringContent(payload, Encoding.UTF8, "application/json"));
        var problem = await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal(30, problem["errorCode"]!.GetValue<int>());
        var attributes = await fixture.Admin.Http.PostAsync($"/api/v1/{token}/attributes", new StringContent(payload, Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectProblemAsync(attributes, HttpStatusCode.BadRequest);
        Assert.Equal(["baseline"], DeviceKeys(await fixture.Admin.LatestAsync(id)));
    }

    [Fact]
    public async Task ManagementApi_BadBodies_Are400_AndUnknownIds404()
    {
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device", "{\"name\":"), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device", new { name = "" }), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device", new { name = new string('n', 300) }), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/device/{Guid.NewGuid()}"), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, "/api/tenant/devices?pageSize=-1"), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/plugins/telemetry/DEVICE/{Guid.NewGuid()}/SHARED_SCOPE", new { a = 1 }), HttpStatusCode.NotFound);
        var noToken = new PlatformApi(fixture.Server);
        await PlatformApi.ExpectProblemAsync(await noToken.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
        noToken.Token = "not.a.jwt";
        await PlatformApi.ExpectProblemAsync(await noToken.SendAsync(HttpMethod.Get, "/api/tenant/devices"), HttpStatusCode.Unauthorized);
        var wrongLogin = await fixture.Admin.Http.PostAsync("/api/auth/login", new StringContent("{\"username\":\"sysadmin@taihu.local\",\"password\":\"nope\"}", Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectProblemAsync(wrongLogin, HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task SqlLookingNamesAndKeys_AreStoredVerbatim_AndHarmless()
    {
        const string name = "x'); DROP TABLE devices;--";
        const string key = "k'; DELETE FROM ts_kv;--";
        var (id, token) = await fixture.Admin.CreateDeviceAsync(name + Guid.NewGuid().ToString("N")[..6]);
        await using (var device = await DeviceClient.ConnectAsync(fixture.Server, token))
        {
            await device.PublishAsync("v1/devices/me/telemetry", $"{{\"{key.Replace("'", "\\u0027", StringComparison.Ordinal)}\":\"1; DROP TABLE ts_kv\"}}");
            await device.PublishAsync("v1/devices/me/attributes", "{\"a' OR '1'='1\":true}");
        }

        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal("1; DROP TABLE ts_kv", latest[key].Value!.GetValue<string>());
        var found = await fixture.Admin.GetAsync($"/api/tenant/devices?pageSize=10&page=0&textSearch={Uri.EscapeDataString("DROP TABLE")}");
        Assert.StartsWith(name, found["data"]!.AsArray().Single()!["name"]!.GetValue<string>(), StringComparison.Ordinal);
        // Search wildcards in the text are literal: '%' finds nothing here.
        Assert.Empty((await fixture.Admin.GetAsync("/api/tenant/devices?pageSize=10&page=0&textSearch=%25"))["data"]!.AsArray());
        var (other, _) = await DeviceWithBaselineAsync();
        Assert.Equal(1, (await fixture.Admin.LatestAsync(other))["baseline"].Value!.GetValue<int>());
    }

    [Fact]
    public async Task ProvisioningTurnedOff_RefusesTheProvisionUser_WithNotAuthorized()
    {
        await using var server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Security__ProvisioningEnabled"] = "false" });
        var (v5, ack5) = await RawMqttClient.ConnectWithCredentialsAsync(server.TcpPort, "p5", 5, "provision", null);
        await v5.DisposeAsync();
        Assert.Equal(0x87, ack5.Body[1]);
        var (v3, ack3) = await RawMqttClient.ConnectWithCredentialsAsync(server.TcpPort, "p3", 4, "provision", null);
        await v3.DisposeAsync();
        Assert.Equal(5, ack3.Body[1]);
    }

    /// <summary>A new device with one stored point, "baseline" = 1, to check nothing else was stored.</summary>
    /// <summary>The keys the device sent: without <c>active</c>, the platform's own connectivity series.</summary>
    private static IEnumerable<string> DeviceKeys<T>(Dictionary<string, T> latest) => latest.Keys.Where(key => key != "active");

    private async Task<(Guid Id, string Token)> DeviceWithBaselineAsync()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("hostile-" + Guid.NewGuid().ToString("N")[..8]);
        var response = await fixture.Admin.Http.PostAsync($"/api/v1/{token}/telemetry", new StringContent("{\"baseline\":1}", Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectAsync(response, HttpStatusCode.OK);
        return (id, token);
    }
}
