using System.Net;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Who may connect as a device: access token, MQTT basic credentials, certificate; and the refusals, with
/// ThingsBoard's codes (3.1.1 return code 4 / 5.0 0x86 for unknown or wrong credentials, 5 / 0x87 for a known
/// identity that is refused).
/// </summary>
public sealed class DeviceAuthenticationTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Theory]
    [InlineData((byte)4, "no-such-token", null, (byte)4)]
    [InlineData((byte)5, "no-such-token", null, (byte)0x86)]
    [InlineData((byte)4, "", null, (byte)4)]
    [InlineData((byte)5, "", null, (byte)0x86)]
    [InlineData((byte)4, "someone", "wrong", (byte)4)]
    [InlineData((byte)5, "someone", "wrong", (byte)0x86)]
    public async Task UnknownOrWrongCredentials_AreRefused_WithBadUserNameOrPassword(byte level, string userName, string? password, byte expected)
    {
        var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "c-" + Guid.NewGuid().ToString("N")[..8], level, userName, password);
        await using (client)
        {
            Assert.Equal(expected, connAck.Body[1]);
            Assert.Empty(await client.ReceiveUntilClosedAsync());
        }
    }

    [Theory]
    [InlineData((byte)4)]
    [InlineData((byte)5)]
    public async Task AccessToken_WithAnEmptyPassword_IsAccepted(byte level)
    {
        // Firmware that always sends a password often sends an empty one beside the token.
        var (_, token) = await fixture.Admin.CreateDeviceAsync("empty-password-" + Guid.NewGuid().ToString("N")[..8]);
        var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "e-" + Guid.NewGuid().ToString("N")[..8], level, token, "");
        await client.DisposeAsync();
        Assert.Equal(0, connAck.Body[1]);
    }

    [Fact]
    public async Task MosquittoPub_WithAWrongToken_IsToldBadUserNameOrPassword()
    {
        var (exitCode, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(), "-u", "wrong-token", "-t", "v1/devices/me/telemetry", "-m", "{\"a\":1}");
        Assert.NotEqual(0, exitCode);
        Assert.Contains("bad user name or password", output, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Http_WithAnUnknownToken_Is401()
    {
        var response = await fixture.Admin.Http.PostAsync("/api/v1/no-such-token/telemetry", new StringContent("{\"a\":1}"));
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task MqttBasicCredentials_ConnectWithClientIdUserNameAndPassword_AndNothingElse()
    {
        var (id, _) = await fixture.Admin.CreateDeviceAsync("basic-" + Guid.NewGuid().ToString("N")[..8]);
        var user = "user-" + Guid.NewGuid().ToString("N")[..8];
        await fixture.Admin.PostAsync("/api/device/credentials", new
        {
            deviceId = new { id, entityType = "DEVICE" },
            credentialsType = "MQTT_BASIC",
            credentialsValue = $"{{\"clientId\":\"cid-{user}\",\"userName\":\"{user}\",\"password\":\"s3cret-pw\"}}",
        });

        await using (var device = await DeviceClient.ConnectAsync(fixture.Server, user, password: "s3cret-pw", clientId: "cid-" + user))
        {
            await device.PublishAsync("v1/devices/me/telemetry", "{\"basic\":1}");
        }

        Assert.Equal(1, (await fixture.Admin.LatestAsync(id))["basic"].Value!.GetValue<int>());
        var (wrongPassword, ack1) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "cid-" + user, 5, user, "not-it");
        await wrongPassword.DisposeAsync();
        Assert.Equal(0x86, ack1.Body[1]);
        var (wrongClient, ack2) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "other-client", 5, user, "s3cret-pw");
        await wrongClient.DisposeAsync();
        Assert.Equal(0x86, ack2.Body[1]);

        // The password is never shown back.
        var credentials = await fixture.Admin.GetAsync($"/api/device/{id}/credentials");
        Assert.DoesNotContain("s3cret-pw", credentials.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task RotatingCredentials_ClosesTheLiveConnection_AndTheOldTokenStopsWorking()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("rotate-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        var newToken = "rotated-" + Guid.NewGuid().ToString("N");
        await fixture.Admin.PostAsync("/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "ACCESS_TOKEN", credentialsId = newToken });

        var disconnected = await device.Disconnected.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, disconnected.Reason);
        var (old, ack) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "old", 5, token, null);
        await old.DisposeAsync();
        Assert.Equal(0x86, ack.Body[1]);
        await using var renewed = await DeviceClient.ConnectAsync(fixture.Server, newToken);
    }

    [Fact]
    public async Task DeletingADevice_ClosesItsConnection()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("delete-" + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/device/{id}"), HttpStatusCode.OK);
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, (await device.Disconnected.WaitAsync(TimeSpan.FromSeconds(15))).Reason);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/device/{id}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Connectivity_IsKeptAsServerAttributes()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("connectivity-" + Guid.NewGuid().ToString("N")[..8]);
        await using (var device = await DeviceClient.ConnectAsync(fixture.Server, token))
        {
            await device.PublishAsync("v1/devices/me/telemetry", "{\"x\":1}");
        }

        // Written in the background once a second: read until both times are there (each read is a round trip).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var attributes = (await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE")).AsArray();
            var keys = attributes.Select(a => a!["key"]!.GetValue<string>()).ToHashSet();
            if (keys.IsSupersetOf(["active", "lastConnectTime", "lastDisconnectTime", "lastActivityTime"]))
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "Connectivity attributes were not written: " + attributes.ToJsonString());
        }
    }
}
