using System.Text;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A device profile's <c>profileData.rateLimits</c> (<c>maxPublishRate</c> messages/s, <c>maxPublishBytesRate</c>
/// payload bytes/s) become the publish limits of each connection of its devices, over the broker's own
/// (off by default). Going over one ends the connection: 5.0 with DISCONNECT 0x96 and a reason string that names
/// the limit. The server runs on the wall clock, so each test sends far more than a bucket's refill could cover
/// while it sends (a burst in microseconds against a refill of seconds).
/// </summary>
public sealed class PublishRateLimitTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private const string Telemetry = "v1/devices/me/telemetry";

    private async Task<string> DeviceInProfileAsync(int? maxPublishRate = null, long? maxPublishBytesRate = null)
    {
        var rateLimits = new { maxPublishRate, maxPublishBytesRate };
        var name = "limited-" + Guid.NewGuid().ToString("N")[..8];
        var profile = await fixture.Admin.PostAsync("/api/deviceProfile", new { name, provisionType = "DISABLED", profileData = new { rateLimits } });
        var profileId = profile["id"]!["id"]!.GetValue<string>();

        // The limits read back as they were set.
        var stored = await fixture.Admin.GetAsync($"/api/deviceProfile/{profileId}");
        var readBack = stored["profileData"]!["rateLimits"]!;
        Assert.Equal(maxPublishRate, readBack["maxPublishRate"]?.GetValue<int>());
        Assert.Equal(maxPublishBytesRate, readBack["maxPublishBytesRate"]?.GetValue<long>());

        var device = await fixture.Admin.PostAsync("/api/device", new { name, deviceProfileId = new { id = profileId, entityType = "DEVICE_PROFILE" } });
        var id = device["id"]!["id"]!.GetValue<string>();
        var credentials = await fixture.Admin.GetAsync($"/api/device/{id}/credentials");
        return credentials["credentialsId"]!.GetValue<string>();
    }

    private static byte[] TelemetryOf(int size)
    {
        var prefix = "{\"v\":\"";
        return Encoding.UTF8.GetBytes(prefix + new string('x', size - prefix.Length - 2) + "\"}");
    }

    /// <summary>The reason code and reason string of a 5.0 DISCONNECT body.</summary>
    private static (byte Code, string? Reason) ReadDisconnect(RawPacket packet)
    {
        Assert.Equal(14, packet.Type);
        var body = packet.Body;
        var code = body[0];
        var position = 2; // reason code, then a property length below 128
        while (position < body.Length)
        {
            var id = body[position++];
            var length = (body[position] << 8) | body[position + 1];
            if (id == 0x1F)
            {
                return (code, Encoding.UTF8.GetString(body, position + 2, length));
            }

            position += 2 + length;
        }

        return (code, null);
    }

    [Fact]
    public async Task A_device_over_its_profiles_message_rate_gets_0x96_naming_the_limit()
    {
        var token = await DeviceInProfileAsync(maxPublishRate: 2);
        var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "rate-device", 5, token, null);
        await using (client)
        {
            Assert.Equal(0x00, connAck.Body[1]);
            for (var i = 0; i < 10; i++)
            {
                await client.PublishV5Async(Telemetry, TelemetryOf(16));
            }

            var packets = await client.ReceiveUntilClosedAsync();
            var (code, reason) = ReadDisconnect(Assert.Single(packets));
            Assert.Equal(0x96, code);
            Assert.Equal("publish rate limit of 2 messages per second exceeded", reason);
        }
    }

    [Fact]
    public async Task A_device_over_its_profiles_byte_rate_gets_0x96_naming_the_limit()
    {
        var token = await DeviceInProfileAsync(maxPublishBytesRate: 1000);
        var (client, _) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "byte-device", 5, token, null);
        await using (client)
        {
            for (var i = 0; i < 10; i++)
            {
                await client.PublishV5Async(Telemetry, TelemetryOf(400));
            }

            var (code, reason) = ReadDisconnect(Assert.Single(await client.ReceiveUntilClosedAsync()));
            Assert.Equal(0x96, code);
            Assert.Equal("publish byte rate limit of 1000 bytes per second exceeded", reason);
        }
    }

    [Fact]
    public async Task A_3_1_1_device_over_its_profiles_rate_is_disconnected()
    {
        var token = await DeviceInProfileAsync(maxPublishRate: 2);
        var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "rate-device-311", 4, token, null);
        await using (client)
        {
            Assert.Equal(0x00, connAck.Body[1]);
            var payload = TelemetryOf(16);
            for (var i = 0; i < 10; i++)
            {
                await client.SendAsync(0x30, [0x00, (byte)Telemetry.Length, .. Encoding.UTF8.GetBytes(Telemetry), .. payload]);
            }

            Assert.Empty(await client.ReceiveUntilClosedAsync());
        }
    }

    [Fact]
    public async Task A_device_in_a_profile_without_limits_is_not_limited()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("unlimited-" + Guid.NewGuid().ToString("N")[..8]);
        var (client, _) = await RawMqttClient.ConnectWithCredentialsAsync(fixture.Server.TcpPort, "unlimited-device", 5, token, null);
        await using (client)
        {
            for (var i = 0; i < 200; i++)
            {
                await client.PublishV5Async(Telemetry, TelemetryOf(400));
            }

            await client.SendAsync(0xC0, []);
            Assert.Equal(13, (await client.ReceiveAsync())?.Type);
        }
    }
}
