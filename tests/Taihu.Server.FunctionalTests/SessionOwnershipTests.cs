using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A session belongs to the identity that made it: a device's sessions are kept per device, so another device of
/// the same tenant that presents the same client id gets a session of its own. It never sees the first one's
/// Session Present, subscriptions or queued messages, and never disconnects it; and this holds after a restart.
/// </summary>
public sealed class SessionOwnershipTests(PlatformFixture platform) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => platform.Server;

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task AnotherDeviceWithTheSameClientId_GetsAFreshSession_AndTheOwnerKeepsItsOwn(MqttProtocolVersion version)
    {
        var clientId = "a1-fw-" + Guid.NewGuid().ToString("N")[..8];
        var (ownerId, ownerToken) = await platform.Admin.CreateDeviceAsync("owner-" + Guid.NewGuid().ToString("N")[..8]);
        var (_, intruderToken) = await platform.Admin.CreateDeviceAsync("intruder-" + Guid.NewGuid().ToString("N")[..8]);
        await using (var owner = await DeviceClient.ConnectAsync(Server, ownerToken, version, clientId: clientId, persistent: true))
        {
            Assert.False(owner.ConnectResult.IsSessionPresent);
            await owner.SubscribeAsync("v1/devices/me/attributes");
        }

        // Queued for the owner's session while it is away.
        await platform.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{ownerId}/SHARED_SCOPE", new { secret = "for-a1-only" });

        await using (var intruder = await DeviceClient.ConnectAsync(Server, intruderToken, version, clientId: clientId, persistent: true))
        {
            Assert.False(intruder.ConnectResult.IsSessionPresent);
            await intruder.SubscribeAsync("probe/" + clientId);
            await intruder.PublishAsync("probe/" + clientId, "marker");
            // Anything the owner's session held would have been sent at CONNECT, before the marker.
            Assert.Equal("probe/" + clientId, (await intruder.NextAsync()).Topic);
        }

        await using var resumed = await DeviceClient.ConnectAsync(Server, ownerToken, version, clientId: clientId, persistent: true);
        Assert.True(resumed.ConnectResult.IsSessionPresent);
        var queued = JsonNode.Parse((await resumed.NextAsync()).ConvertPayloadToString())!;
        Assert.Equal("for-a1-only", queued["secret"]!.GetValue<string>());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task AnotherDeviceWithTheSameClientId_NeverDisconnectsTheLiveOwner(MqttProtocolVersion version)
    {
        var clientId = "live-fw-" + Guid.NewGuid().ToString("N")[..8];
        var (_, ownerToken) = await platform.Admin.CreateDeviceAsync("live-owner-" + Guid.NewGuid().ToString("N")[..8]);
        var (_, intruderToken) = await platform.Admin.CreateDeviceAsync("live-intruder-" + Guid.NewGuid().ToString("N")[..8]);
        await using var owner = await DeviceClient.ConnectAsync(Server, ownerToken, version, clientId: clientId);
        await owner.SubscribeAsync("probe/" + clientId);
        await using var intruder = await DeviceClient.ConnectAsync(Server, intruderToken, version, clientId: clientId);

        await intruder.PublishAsync("probe/" + clientId, "both alive");
        Assert.Equal("both alive", (await owner.NextAsync()).ConvertPayloadToString());
        Assert.False(owner.Disconnected.IsCompleted);
        Assert.True(owner.Client.IsConnected);
    }

    [Fact]
    public async Task TheSameDevice_StillTakesOverItsOwnSession()
    {
        var clientId = "self-fw-" + Guid.NewGuid().ToString("N")[..8];
        var (_, token) = await platform.Admin.CreateDeviceAsync("self-" + Guid.NewGuid().ToString("N")[..8]);
        await using var first = await DeviceClient.ConnectAsync(Server, token, clientId: clientId, persistent: true);
        await first.SubscribeAsync("probe/" + clientId);
        await using var second = await DeviceClient.ConnectAsync(Server, token, clientId: clientId, persistent: true);
        Assert.True(second.ConnectResult.IsSessionPresent);
        Assert.Equal(MqttClientDisconnectReason.SessionTakenOver, (await first.Disconnected.WaitAsync(TimeSpan.FromSeconds(15))).Reason);
    }

    [Fact]
    public async Task SessionOwner_SurvivesARestart()
    {
        var dataDirectory = ServerProcess.NewDataDirectory();
        var clientId = "restart-fw-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            string ownerToken;
            string intruderToken;
            await using (var server = await ServerProcess.StartAsync(dataDirectory: dataDirectory))
            {
                using var sysAdmin = await PlatformApi.SysAdminAsync(server);
                var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Restart " + Guid.NewGuid().ToString("N")[..8]);
                using (admin)
                {
                    (_, ownerToken) = await admin.CreateDeviceAsync("restart-owner");
                    (_, intruderToken) = await admin.CreateDeviceAsync("restart-intruder");
                }

                await using (var owner = await DeviceClient.ConnectAsync(server, ownerToken, clientId: clientId, persistent: true))
                {
                    await owner.SubscribeAsync("kept/" + clientId);
                }

                await server.SignalAsync("TERM");
                Assert.Equal(0, await server.WaitForExitAsync());
            }

            await using var restarted = await ServerProcess.StartAsync(dataDirectory: dataDirectory);
            await using (var intruder = await DeviceClient.ConnectAsync(restarted, intruderToken, clientId: clientId, persistent: true))
            {
                Assert.False(intruder.ConnectResult.IsSessionPresent);
            }

            await using var resumed = await DeviceClient.ConnectAsync(restarted, ownerToken, clientId: clientId, persistent: true);
            Assert.True(resumed.ConnectResult.IsSessionPresent);
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(dataDirectory);
        }
    }

    [Fact]
    public async Task AnonymousClients_KeepPlainBrokerTakeover()
    {
        var clientId = "anon-" + Guid.NewGuid().ToString("N")[..8];
        await using var first = await MqttTestClient.ConnectPersistentTcpAsync(Server, clientId, MqttProtocolVersion.V500);
        await first.SubscribeAsync("anon/" + clientId);
        await using var second = await MqttTestClient.ConnectPersistentTcpAsync(Server, clientId, MqttProtocolVersion.V500);
        Assert.True(second.ConnectResult!.IsSessionPresent);
    }
}
