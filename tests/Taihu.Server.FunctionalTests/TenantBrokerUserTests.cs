using System.Net;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Broker users that a tenant administrator manages through /api/mqtt/users: they connect into the tenant's
/// namespace with their password and have exactly their rules there, never a device's $devices/... topics.
/// </summary>
public sealed class TenantBrokerUserTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    private async Task<(string Id, string Name)> CreateUserAsync(PlatformApi admin, object[] rules, string password = "user-password-1")
    {
        var name = "app-" + Guid.NewGuid().ToString("N")[..10];
        var created = await admin.PostAsync("/api/mqtt/users", new { userName = name, password, rules });
        Assert.Equal(name, created["userName"]!.GetValue<string>());
        Assert.Null(created["password"]);
        return (created["id"]!.GetValue<string>(), name);
    }

    [Fact]
    public async Task User_ReachesItsTenantsPlainTopics_WithinItsRules_AndNoDeviceTopics()
    {
        var (_, name) = await CreateUserAsync(fixture.Admin, [new { access = "read", topic = "#" }, new { access = "write", topic = "city/+/air" }]);
        var (_, token) = await fixture.Admin.CreateDeviceAsync("sensor-" + Guid.NewGuid().ToString("N")[..6]);
        await using var user = await DeviceClient.ConnectAsync(Server, name, MqttProtocolVersion.V500, "user-password-1");
        await user.SubscribeAsync("city/#");
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await user.TrySubscribeAsync("$devices/+/telemetry"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await user.TrySubscribeAsync("$devices/#"));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await user.TryPublishAsync("city/north/water", "x")).ReasonCode);

        // A device of the tenant publishes on a plain topic: the user hears it, so they share the namespace.
        await using var device = await DeviceClient.ConnectAsync(Server, token);
        await device.PublishAsync("city/north/air", "from-device");
        Assert.Equal("from-device", (await user.NextAsync()).ConvertPayloadToString());
        await user.PublishAsync("city/south/air", "from-user");
        Assert.Equal("from-user", (await user.NextAsync()).ConvertPayloadToString());

        // mosquitto_pub as the user: write allowed where the rules say.
        var port = Server.TcpPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var published = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", port, "-u", name, "-P", "user-password-1", "-q", "1", "-t", "city/east/air", "-m", "mosquitto");
        Assert.True(published.ExitCode == 0, published.Output);
        Assert.Equal("mosquitto", (await user.NextAsync()).ConvertPayloadToString());
    }

    [Fact]
    public async Task OtherTenantsUser_DoesNotHearThisTenant()
    {
        var (_, otherAdmin) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Other " + Guid.NewGuid().ToString("N")[..6]);
        using var _ = otherAdmin;
        var (_, outsider) = await CreateUserAsync(otherAdmin, [new { access = "readwrite", topic = "#" }]);
        var (_, insider) = await CreateUserAsync(fixture.Admin, [new { access = "readwrite", topic = "#" }]);
        await using var spy = await DeviceClient.ConnectAsync(Server, outsider, MqttProtocolVersion.V500, "user-password-1");
        await spy.SubscribeAsync("#");
        await using var writer = await DeviceClient.ConnectAsync(Server, insider, MqttProtocolVersion.V500, "user-password-1");

        await writer.PublishAsync("tenant-private/x", "secret");
        await spy.PublishAsync("sync/own", "sentinel");

        Assert.Equal("sync/own", (await spy.NextAsync()).Topic);
        Assert.False(spy.TryTake(out var _));
    }

    [Fact]
    public async Task WrongPassword_Is0x86_AndChangesAndDeletionCloseTheConnection()
    {
        var (id, name) = await CreateUserAsync(fixture.Admin, [new { access = "readwrite", topic = "a/#" }]);
        var from = IPAddress.Parse("127.0.0.31");
        var (wrong, wrongAck) = await RawMqttClient.ConnectWithCredentialsAsync(Server.TcpPort, "w", 5, name, "not-the-password", from);
        await wrong.DisposeAsync();
        Assert.Equal(0x86, wrongAck.Body[1]);

        var user = await DeviceClient.ConnectAsync(Server, name, MqttProtocolVersion.V500, "user-password-1");
        await using (user)
        {
            await fixture.Admin.SendAsync(HttpMethod.Put, $"/api/mqtt/users/{id}", new { password = "user-password-2" });
            await user.Disconnected.WaitAsync(ServerProcess.Guard);
        }

        var (old, oldAck) = await RawMqttClient.ConnectWithCredentialsAsync(Server.TcpPort, "o", 5, name, "user-password-1", from);
        await old.DisposeAsync();
        Assert.Equal(0x86, oldAck.Body[1]);

        var again = await DeviceClient.ConnectAsync(Server, name, MqttProtocolVersion.V500, "user-password-2");
        await using (again)
        {
            await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/mqtt/users/{id}"), HttpStatusCode.OK);
            await again.Disconnected.WaitAsync(ServerProcess.Guard);
        }

        var (gone, goneAck) = await RawMqttClient.ConnectWithCredentialsAsync(Server.TcpPort, "g", 5, name, "user-password-2", from);
        await gone.DisposeAsync();
        Assert.Equal(0x86, goneAck.Body[1]);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/mqtt/users/{id}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task BadRequests_AreProblems_AndOnlyTenantAdministratorsManageUsers()
    {
        var admin = fixture.Admin;
        await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/mqtt/users",
            new { userName = "x-" + Guid.NewGuid().ToString("N"), password = "long-enough", rules = new[] { new { access = "read", topic = "$devices/#" } } }), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/mqtt/users",
            new { userName = "x-" + Guid.NewGuid().ToString("N"), password = "long-enough", rules = new[] { new { access = "all", topic = "a" } } }), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/mqtt/users",
            new { userName = "x-" + Guid.NewGuid().ToString("N"), password = "long-enough", rules = new[] { new { access = "read", topic = "a/#/b" } } }), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/mqtt/users",
            new { userName = "x-" + Guid.NewGuid().ToString("N"), password = "short" }), HttpStatusCode.BadRequest);
        await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/mqtt/users", "{not json"), HttpStatusCode.BadRequest);

        var (_, name) = await CreateUserAsync(admin, []);
        await PlatformApi.ExpectProblemAsync(await admin.SendAsync(HttpMethod.Post, "/api/mqtt/users", new { userName = name, password = "long-enough" }), HttpStatusCode.Conflict);
        var list = await admin.GetAsync("/api/mqtt/users");
        Assert.Contains(list.AsArray(), u => u!["userName"]!.GetValue<string>() == name);

        using var operatorUser = await admin.CreateUserAsync("OPERATOR");
        await PlatformApi.ExpectProblemAsync(await operatorUser.SendAsync(HttpMethod.Get, "/api/mqtt/users"), HttpStatusCode.Forbidden);
        await PlatformApi.ExpectProblemAsync(await fixture.SysAdmin.SendAsync(HttpMethod.Post, "/api/mqtt/users", new { userName = "sys-" + Guid.NewGuid().ToString("N"), password = "long-enough" }), HttpStatusCode.Forbidden);
        var audit = await admin.GetAsync("/api/audit/logs?pageSize=100&page=0");
        Assert.Contains(audit["data"]!.AsArray(), e => e!["entityId"]?["entityType"]?.GetValue<string>() == "MQTT_USER" && e["entityName"]!.GetValue<string>() == name);
    }
}
