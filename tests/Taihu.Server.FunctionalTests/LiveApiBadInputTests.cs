using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Bad input on the live WebSocket API: each gets ThingsBoard's errorCode (2 bad request, 3 unauthorized) and a
/// message saying what was wrong, and the socket (where it is still authenticated) and the server keep serving.
/// </summary>
public sealed class LiveApiBadInputTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task BadFrames_GetErrorCode2_AndTheSocketKeepsServing()
    {
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("live-bad-" + Guid.NewGuid().ToString("N")[..8]);
        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!, []);

        await live.SendTextAsync("this is not JSON {");
        await AssertErrorAsync(live, 0, 2, "The frame is not valid JSON");

        await live.SendTextAsync("""{"cmds":[{"type":"ENTITY_DATA","cmdId":5}]}""");
        await AssertErrorAsync(live, 5, 2, "Unknown command type 'ENTITY_DATA'");

        await live.SendTextAsync("""{"fooCmds":[]}""");
        await AssertErrorAsync(live, 0, 2, "Unknown command list 'fooCmds'");

        await live.SendTextAsync("""{"cmds":[{"type":"TIMESERIES","entityType":"DEVICE","entityId":"x"}]}""");
        await AssertErrorAsync(live, 0, 2, "cmdId is required");

        await live.SendTextAsync("""{"cmds":[{"type":"TIMESERIES","cmdId":6,"entityType":"DEVICE","entityId":"not-a-guid"}]}""");
        await AssertErrorAsync(live, 6, 2, "entityId 'not-a-guid' is not a valid id");

        await live.SendTextAsync("""{"cmds":[{"type":"TIMESERIES","cmdId":7,"entityType":"ASSET","entityId":"9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}]}""");
        await AssertErrorAsync(live, 7, 2, "entityType 'ASSET' is not supported");

        await live.SendTextAsync($$"""{"cmds":[{"type":"ATTRIBUTES","cmdId":8,"entityType":"DEVICE","entityId":"{{deviceId}}","scope":"NOPE"}]}""");
        await AssertErrorAsync(live, 8, 2, "scope 'NOPE' is not an attribute scope");

        await live.SendTextAsync($$"""{"cmds":[{"type":"TIMESERIES","cmdId":9,"entityType":"DEVICE","entityId":"{{deviceId}}","startTs":-5,"timeWindow":1000}]}""");
        await AssertErrorAsync(live, 9, 2, "startTs is a whole number");

        // Larger than Live:MaxFrameBytes (64 KiB): read to its end, dropped, answered.
        await live.SendTextAsync("""{"cmds":[{"type":"TIMESERIES","cmdId":1,"keys":""" + "\"" + new string('k', 70_000) + "\"}]}");
        await AssertErrorAsync(live, 0, 2, "The frame is larger than 65536 bytes");

        // After all of that the socket still subscribes and pushes.
        await live.SendAsync(new { cmds = new[] { new { type = "TIMESERIES", cmdId = 20, entityType = "DEVICE", entityId = deviceId, keys = "t" } } });
        Assert.Equal(0, (await live.NextAsync())["errorCode"]!.GetValue<int>());
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("v1/devices/me/telemetry", """{"t":1}""");
        var update = await live.NextAsync();
        Assert.Equal(20, update["subscriptionId"]!.GetValue<int>());
        Assert.Equal("1", update["data"]!["t"]![0]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task AnotherTenantsDevice_IsErrorCode3_WithoutData_AsAnUnknownOneIs()
    {
        var (_, otherAdmin) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Other " + Guid.NewGuid().ToString("N")[..8]);
        using var _ = otherAdmin;
        var (foreignId, foreignToken) = await otherAdmin.CreateDeviceAsync("foreign");
        await using (var foreign = await DeviceClient.ConnectAsync(Server, foreignToken))
        {
            await foreign.PublishAsync("v1/devices/me/telemetry", """{"secret":42}""");
        }

        var unknownId = Guid.NewGuid();
        await using var live = await LiveClient.ConnectAsync(Server, fixture.Admin.Token!,
            new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = foreignId },
            new { type = "ATTRIBUTES", cmdId = 2, entityType = "DEVICE", entityId = foreignId },
            new { type = "TIMESERIES", cmdId = 3, entityType = "DEVICE", entityId = unknownId });

        var foreignTs = await AssertErrorAsync(live, 1, 3, $"Device {foreignId} was not found, or this user may not read it.");
        Assert.Equal("{}", foreignTs["data"]!.ToJsonString());
        await AssertErrorAsync(live, 2, 3, $"Device {foreignId} was not found, or this user may not read it.");
        await AssertErrorAsync(live, 3, 3, $"Device {unknownId} was not found, or this user may not read it.");

        // Nothing of the other tenant's device reaches this socket later either: a sentinel subscription of our
        // own device answers next.
        var (ownId, _) = await fixture.Admin.CreateDeviceAsync("own-" + Guid.NewGuid().ToString("N")[..8]);
        await using (var foreign = await DeviceClient.ConnectAsync(Server, foreignToken))
        {
            await foreign.PublishAsync("v1/devices/me/telemetry", """{"secret":43}""");
        }

        await live.SendAsync(new { cmds = new[] { new { type = "TIMESERIES", cmdId = 4, entityType = "DEVICE", entityId = ownId } } });
        Assert.Equal(4, (await live.NextAsync())["subscriptionId"]!.GetValue<int>());
    }

    [Fact]
    public async Task MissingJwt_OnEitherPath_IsErrorCode3_AndTheSocketIsClosed_AsIsAFirstFrameThatIsNotJson()
    {
        await using (var noAuth = await LiveClient.OpenAsync(Server, "/api/ws"))
        {
            await noAuth.SendAsync(new { cmds = new[] { new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = Guid.NewGuid() } } });
            await AssertErrorAsync(noAuth, 0, 3, "Not authenticated: the first frame carries authCmd");
            Assert.Equal((WebSocketCloseStatus.PolicyViolation, "Unauthorized"), await noAuth.ReadToCloseAsync());
        }

        await using (var junkFirst = await LiveClient.OpenAsync(Server, "/api/ws"))
        {
            await junkFirst.SendTextAsync("hello?");
            await AssertErrorAsync(junkFirst, 0, 2, "The frame is not valid JSON");
            Assert.Equal((WebSocketCloseStatus.PolicyViolation, "Unauthorized"), await junkFirst.ReadToCloseAsync());
        }

        await using (var emptyToken = await LiveClient.ConnectAsync(Server, "", new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = Guid.NewGuid() }))
        {
            await AssertErrorAsync(emptyToken, 0, 3, "Not authenticated: a JWT is required");
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, (await emptyToken.ReadToCloseAsync()).Status);
        }

        await using (var noQuery = await LiveClient.OpenAsync(Server, "/api/ws/plugins/telemetry"))
        {
            await AssertErrorAsync(noQuery, 0, 3, "Not authenticated: a JWT is required");
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, (await noQuery.ReadToCloseAsync()).Status);
        }

        await using (var forged = await LiveClient.OpenAsync(Server, "/api/ws/plugins/telemetry?token=" + fixture.Admin.Token + "x"))
        {
            await AssertErrorAsync(forged, 0, 3, "Authentication failed: the token is not valid.");
        }
    }

    [Fact]
    public async Task ExpiredJwt_IsErrorCode3_TokenHasExpired_AndOthersAreServed()
    {
        var expired = Resign(fixture.Admin.Token!, payload =>
        {
            var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            payload["iat"] = now - 7200;
            payload["nbf"] = now - 7200;
            payload["exp"] = now - 60;
        });

        await using (var live = await LiveClient.ConnectAsync(Server, expired, new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = Guid.NewGuid() }))
        {
            await AssertErrorAsync(live, 0, 3, "Token has expired");
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, (await live.ReadToCloseAsync()).Status);
        }

        await using (var old = await LiveClient.OpenAsync(Server, "/api/ws/plugins/telemetry?token=" + expired))
        {
            await AssertErrorAsync(old, 0, 3, "Token has expired");
        }

        // The same token re-signed without the change works: the refusal above was the expiry.
        var (deviceId, _) = await fixture.Admin.CreateDeviceAsync("after-expired-" + Guid.NewGuid().ToString("N")[..8]);
        await using var fine = await LiveClient.ConnectAsync(Server, Resign(fixture.Admin.Token!, _ => { }),
            new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = deviceId });
        Assert.Equal(0, (await fine.NextAsync())["errorCode"]!.GetValue<int>());
    }

    [Fact]
    public async Task AJwtExpiringWhileTheSocketIsOpen_EndsIt_WithErrorCode3()
    {
        // Signed by the server's key to expire two seconds from now; the wait is for the server's frame.
        var shortLived = Resign(fixture.Admin.Token!, payload => payload["exp"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 2);
        var (deviceId, _) = await fixture.Admin.CreateDeviceAsync("expiring-" + Guid.NewGuid().ToString("N")[..8]);
        await using var live = await LiveClient.ConnectAsync(Server, shortLived, new { type = "TIMESERIES", cmdId = 1, entityType = "DEVICE", entityId = deviceId });
        Assert.Equal(0, (await live.NextAsync())["errorCode"]!.GetValue<int>());

        await AssertErrorAsync(live, 0, 3, "Token has expired: connect again with a fresh token.");
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "Token has expired"), await live.ReadToCloseAsync());
    }

    [Fact]
    public async Task NotAWebSocket_IsAProblemDetails400()
    {
        var response = await fixture.Admin.SendAsync(HttpMethod.Get, "/api/ws");
        var body = await PlatformApi.ExpectProblemAsync(response, System.Net.HttpStatusCode.BadRequest);
        Assert.Equal("This path takes WebSocket connections only (ThingsBoard's live API).", body["message"]!.GetValue<string>());
    }

    private static async Task<JsonObject> AssertErrorAsync(LiveClient live, int subscriptionId, int errorCode, string message)
    {
        var frame = await live.NextAsync();
        Assert.Equal(subscriptionId, frame["subscriptionId"]!.GetValue<int>());
        Assert.Equal(errorCode, frame["errorCode"]!.GetValue<int>());
        var text = frame["errorMsg"]!.GetValue<string>();
        Assert.True(text.StartsWith(message, StringComparison.Ordinal), $"errorMsg '{text}' does not start with '{message}'.");
        return frame;
    }

    /// <summary>The token with its payload changed and signed again with the server's own key (read from its data directory).</summary>
    private string Resign(string token, Action<JsonNode> change)
    {
        var parts = token.Split('.');
        var payload = JsonNode.Parse(Base64UrlDecode(parts[1]))!;
        change(payload);
        var key = Convert.FromBase64String(File.ReadAllText(Path.Combine(Server.DataDirectory, "jwt-signing.key")).Trim());
        var unsigned = parts[0] + "." + Base64UrlEncode(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        return unsigned + "." + Base64UrlEncode(HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(unsigned)));
    }

    private static byte[] Base64UrlDecode(string text)
    {
        var padded = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(padded + new string('=', (4 - padded.Length % 4) % 4));
    }

    private static string Base64UrlEncode(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
