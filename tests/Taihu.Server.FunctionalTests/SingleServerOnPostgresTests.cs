using System.Globalization;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// One server, no cluster, on PostgreSQL (<c>Storage:Provider=PostgreSql</c>) as a real process: a device's MQTT
/// telemetry raises its profile's alarm, and the server goes on answering. Written after the alarm writer hung a
/// server on PostgreSQL at its first alarm (Npgsql read a savepoint's answer synchronously on an epoll thread).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class SingleServerOnPostgresTests(PostgresServer postgres)
{
    [Fact]
    public async Task MqttTelemetry_RaisesTheProfilesAlarm_AndTheServerKeepsAnswering()
    {
        var database = await postgres.CreateDatabaseAsync();
        try
        {
            await using var server = await ServerProcess.StartAsync(new Dictionary<string, string>
            {
                ["Storage__Provider"] = "PostgreSql",
                ["Storage__ConnectionString"] = postgres.ConnectionString(database),
            });
            using var sysAdmin = await PlatformApi.SysAdminAsync(server);
            var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("On PostgreSQL");
            using var _ = admin;
            var name = "air-" + Guid.NewGuid().ToString("N")[..8];
            var (first, firstToken) = await ClusterEventTests.DeviceInProfileAsync(admin, name);
            var profileId = (await admin.GetAsync($"/api/device/{first}"))["deviceProfileId"]!["id"]!.GetValue<string>();
            var (second, secondToken) = await ClusterEventTests.DeviceInProfileAsync(admin, name + "-b", profileId);

            await PublishAsync(server, firstToken, """{"pm25": 80}""");
            var alarms = await admin.EventuallyAsync($"/api/alarm/DEVICE/{first}?pageSize=10&page=0", a => a["totalElements"]!.GetValue<long>() > 0);
            Assert.Equal(("High PM2.5", "MAJOR"), (alarms["data"]![0]!["type"]!.GetValue<string>(), alarms["data"]![0]!["severity"]!.GetValue<string>()));

            // After the first alarm's write, more devices' alarms and the same device's update still go through, each
            // a write of its own (the hang came at a write, not always the first).
            await PublishAsync(server, secondToken, """{"pm25": 95}""");
            await admin.EventuallyAsync($"/api/alarm/DEVICE/{second}?pageSize=10&page=0", a => a["totalElements"]!.GetValue<long>() == 1);
            for (var i = 0; i < 4; i++)
            {
                var (device, token) = await ClusterEventTests.DeviceInProfileAsync(admin, name + "-" + i.ToString(CultureInfo.InvariantCulture), profileId);
                await PublishAsync(server, token, """{"pm25": 100}""");
                await admin.EventuallyAsync($"/api/alarm/DEVICE/{device}?pageSize=10&page=0", a => a["totalElements"]!.GetValue<long>() == 1);
            }

            await PublishAsync(server, firstToken, """{"pm25": 120}""");
            var updated = await admin.EventuallyAsync($"/api/alarm/DEVICE/{first}?pageSize=10&page=0",
                a => a["data"]![0]!["details"]?["data"]?.GetValue<string>() == "PM2.5 is 120");
            Assert.Equal(1, updated["totalElements"]!.GetValue<long>());
        }
        finally
        {
            await postgres.DropDatabaseAsync(database);
        }
    }

    private static async Task PublishAsync(ServerProcess server, string token, string json)
    {
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-q", "1", "-t", "v1/devices/me/telemetry", "-m", json);
        Assert.True(exit == 0, output);
    }
}
