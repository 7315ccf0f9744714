using System.Net;
using Taihu.Protocols.Coap;
using Taihu.Protocols.Jt808;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The sessions of HJ 212 stations, JT/T 808 terminals and CoAP devices follow their devices as MQTT connections
/// do: deleting a device or changing its credentials through the REST API closes its connections (for CoAP, forgets
/// the token the endpoint authenticated with), and a JT/T 808 terminal authenticating on a second connection closes
/// the first, as an MQTT client id taken over does.
/// </summary>
public sealed class ProtocolSessionLifecycleTests(CoapFixture fixture) : IClassFixture<CoapFixture>
{
    private PlatformApi Admin => fixture.Admin;

    [Fact]
    public async Task Hj212_DeletingTheStationsDevice_ClosesItsConnection()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        Assert.Equal("9014", (await station.UploadAsync("2011", $"DataTime={time};a34004-Rtd=12.5,a34004-Flag=N")).Cn);

        await PlatformApi.ExpectAsync(await Admin.SendAsync(HttpMethod.Delete, $"/api/device/{id}"), HttpStatusCode.OK);
        await station.ExpectClosedAsync();
    }

    [Fact]
    public async Task Hj212_NewCredentials_CloseTheConnectionThatUsedTheOldOnes()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(Admin);
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        Assert.Equal("9014", (await station.UploadAsync("2011", $"DataTime={time};a34004-Rtd=12.5,a34004-Flag=N")).Cn);

        await Admin.PostAsync("/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "HJ212", credentialsId = mn, credentialsValue = "654321" });
        await station.ExpectClosedAsync();

        // The station with the new password is served on a new connection.
        await using var again = await Hj212Station.ConnectAsync(fixture.Server, mn, "654321");
        Assert.Equal("9014", (await again.UploadAsync("2011", $"DataTime={time};a34004-Rtd=13.5,a34004-Flag=N")).Cn);
    }

    [Fact]
    public async Task Jt808_DeletingTheTerminalsDevice_ClosesItsConnection()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await Jt808Tests.CreateTerminalAsync(Admin, phone, "code-1");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code-1"));

        await PlatformApi.ExpectAsync(await Admin.SendAsync(HttpMethod.Delete, $"/api/device/{id}"), HttpStatusCode.OK);
        Assert.True(await terminal.ClosedAsync());
    }

    [Fact]
    public async Task Jt808_NewCredentials_CloseTheConnection_AndTheOldCodeIsRefused()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await Jt808Tests.CreateTerminalAsync(Admin, phone, "code-1");
        await using var terminal = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code-1"));

        await Admin.PostAsync("/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "JT808", credentialsId = phone, credentialsValue = "code-2" });
        Assert.True(await terminal.ClosedAsync());

        await using var old = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Failure, await old.AuthenticateAsync("code-1"));
        await using var renewed = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await renewed.AuthenticateAsync("code-2"));
    }

    [Fact]
    public async Task Jt808_AuthenticatingOnASecondConnection_ClosesTheFirst_AndTheSecondIsServed()
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await Jt808Tests.CreateTerminalAsync(Admin, phone, "code-1");
        await using var first = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await first.AuthenticateAsync("code-1"));

        await using var second = await Jt808Terminal.ConnectAsync(fixture.Server, phone);
        Assert.Equal(Jt808Results.Ok, await second.AuthenticateAsync("code-1"));
        Assert.True(await first.ClosedAsync());

        // The older connection's end leaves the device online and its commands going to the newer one.
        Assert.Equal(Jt808Results.Ok, await second.HeartbeatAsync());
        var serial = await second.SendAsync(Jt808MessageIds.Location, Jt808Terminal.LocationBody(31.5, 120.3, 0, DateTimeOffset.UtcNow));
        Assert.Equal(Jt808Results.Ok, await second.ReadReplyAsync(Jt808MessageIds.Location, serial));
        Assert.True((await Admin.LatestAsync(id)).ContainsKey("latitude"));
        await Admin.EventuallyAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=active",
            node => node.AsArray().Any(a => a!["key"]!.GetValue<string>() == "active" && a["value"]!.GetValue<bool>()));
    }

    [Fact]
    public async Task Coap_NewToken_IsNeededAtOnce_TheRememberedOldOneIsForgotten()
    {
        var (id, token) = await Admin.CreateDeviceAsync("coap-lifecycle-" + Guid.NewGuid().ToString("N")[..8]);
        using var client = new RawCoapClient(fixture.Server);
        Assert.Equal("2.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"counter\":1}")).CodeText);

        // Within Coap:AuthenticationLifetime (30 s) the endpoint would be trusted with the old token; the change ends that.
        var renewed = "renewed-" + Guid.NewGuid().ToString("N");
        await Admin.PostAsync("/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "ACCESS_TOKEN", credentialsId = renewed });
        Assert.Equal("4.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"counter\":2}")).CodeText);
        Assert.Equal("2.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{renewed}/telemetry", "{\"counter\":3}")).CodeText);
        Assert.Equal(3L, (await Admin.LatestAsync(id))["counter"].Value!.GetValue<long>());
    }

    [Fact]
    public async Task Coap_DeletingTheDevice_ForgetsItsRememberedToken()
    {
        var (id, token) = await Admin.CreateDeviceAsync("coap-deleted-" + Guid.NewGuid().ToString("N")[..8]);
        using var client = new RawCoapClient(fixture.Server);
        Assert.Equal("2.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"counter\":1}")).CodeText);

        await PlatformApi.ExpectAsync(await Admin.SendAsync(HttpMethod.Delete, $"/api/device/{id}"), HttpStatusCode.OK);
        Assert.Equal("4.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"counter\":2}")).CodeText);
    }
}
