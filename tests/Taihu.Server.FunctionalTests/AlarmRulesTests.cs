using System.Globalization;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A device profile's alarm rules running on the real server: telemetry published with <c>mosquitto_pub</c> raises
/// the alarm, the API acknowledges it, telemetry clears it; a DURATION rule measured on the points' timestamps;
/// and the rules' state surviving a restart between the points. Waits are on the live ALARM_DATA feed.
/// </summary>
public sealed class AlarmRulesTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private const long Minute = 60_000;

    /// <summary>A profile with a "High PM2.5" rule: MAJOR above 75, CRITICAL above 150 (as <paramref name="spec"/>), cleared at 35 or less.</summary>
    internal static string Profile(string name, string spec) => $$"""
    {
      "name": "{{name}}",
      "profileData": {
        "configuration": { "type": "DEFAULT" },
        "alarms": [
          {
            "id": "pm25-high",
            "alarmType": "High PM2.5",
            "createRules": {
              "CRITICAL": {
                "condition": {
                  "condition": [
                    { "key": { "type": "TIME_SERIES", "key": "pm25" }, "valueType": "NUMERIC",
                      "predicate": { "type": "NUMERIC", "operation": "GREATER", "value": { "defaultValue": 150 } } }
                  ],
                  "spec": { "type": "SIMPLE" }
                },
                "alarmDetails": "PM2.5 is ${pm25}"
              },
              "MAJOR": {
                "condition": {
                  "condition": [
                    { "key": { "type": "TIME_SERIES", "key": "pm25" }, "valueType": "NUMERIC",
                      "predicate": { "type": "NUMERIC", "operation": "GREATER", "value": { "defaultValue": 75 } } }
                  ],
                  "spec": {{spec}}
                },
                "alarmDetails": "PM2.5 is ${pm25}"
              }
            },
            "clearRule": {
              "condition": {
                "condition": [
                  { "key": { "type": "TIME_SERIES", "key": "pm25" }, "valueType": "NUMERIC",
                    "predicate": { "type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": { "defaultValue": 35 } } }
                ],
                "spec": { "type": "SIMPLE" }
              }
            },
            "propagate": false
          }
        ]
      }
    }
    """;

    internal const string Simple = """{ "type": "SIMPLE" }""";

    private const string TenMinutes = """{ "type": "DURATION", "unit": "MINUTES", "predicate": { "defaultValue": 10 } }""";

    internal static object AlarmData(Guid deviceId) => new
    {
        type = "ALARM_DATA",
        cmdId = 1,
        query = new
        {
            entityFilter = new { type = "singleEntity", singleEntity = new { entityType = "DEVICE", id = deviceId } },
            pageLink = new
            {
                page = 0,
                pageSize = 10,
                statusList = Array.Empty<string>(),
                sortOrder = new { key = new { type = "ALARM_FIELD", key = "createdTime" }, direction = "DESC" },
            },
            alarmFields = Array.Empty<object>(),
        },
    };

    /// <summary>The next alarm update of command 1 (skipping the first page and other frames).</summary>
    internal static async Task<JsonNode> NextUpdateAsync(LiveClient live)
    {
        while (true)
        {
            var frame = await live.NextAsync();
            if (frame["cmdId"]?.GetValue<int>() == 1 && frame["update"] is JsonArray { Count: > 0 } update)
            {
                return update[0]!;
            }
        }
    }

    private static async Task<(Guid Id, string Token)> DeviceInProfileAsync(PlatformApi admin, string spec)
    {
        var name = "rules-" + Guid.NewGuid().ToString("N")[..8];
        var profile = await admin.PostAsync("/api/deviceProfile", Profile(name, spec));
        var profileId = profile["id"]!["id"]!.GetValue<string>();
        var device = await admin.PostAsync("/api/device", new { name, type = "air", deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profileId } });
        var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        var credentials = await admin.GetAsync($"/api/device/{id}/credentials");
        return (id, credentials["credentialsId"]!.GetValue<string>());
    }

    private static string At(long ts, int pm25) => $$$"""{"ts": {{{ts}}}, "values": {"pm25": {{{pm25}}}}}""";

    private static async Task PublishAsync(ServerProcess server, string token, string json)
    {
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-q", "1", "-t", "v1/devices/me/telemetry", "-m", json);
        Assert.True(exit == 0, output);
    }

    [Fact]
    public async Task Telemetry_over_the_threshold_raises_the_alarm_the_api_acknowledges_it_and_telemetry_clears_it()
    {
        var (deviceId, token) = await DeviceInProfileAsync(fixture.Admin, Simple);
        await using var live = await LiveClient.ConnectAsync(fixture.Server, fixture.Admin.Token!, AlarmData(deviceId));

        await PublishAsync(fixture.Server, token, """{"pm25": 80}""");
        var raised = await NextUpdateAsync(live);
        Assert.Equal(("High PM2.5", "MAJOR", "ACTIVE_UNACK"), (raised["type"]!.GetValue<string>(), raised["severity"]!.GetValue<string>(), raised["status"]!.GetValue<string>()));
        var alarmId = raised["id"]!["id"]!.GetValue<string>();
        Assert.Equal("PM2.5 is 80", raised["details"]!["data"]!.GetValue<string>());

        // Worse: the same alarm, now CRITICAL.
        await PublishAsync(fixture.Server, token, """{"pm25": 200}""");
        var worse = await NextUpdateAsync(live);
        Assert.Equal((alarmId, "CRITICAL"), (worse["id"]!["id"]!.GetValue<string>(), worse["severity"]!.GetValue<string>()));

        await fixture.Admin.PostAsync($"/api/alarm/{alarmId}/ack", new { });
        var acked = await NextUpdateAsync(live);
        Assert.Equal("ACTIVE_ACK", acked["status"]!.GetValue<string>());

        await PublishAsync(fixture.Server, token, """{"pm25": 20}""");
        var cleared = await NextUpdateAsync(live);
        Assert.Equal((alarmId, "CLEARED_ACK"), (cleared["id"]!["id"]!.GetValue<string>(), cleared["status"]!.GetValue<string>()));

        var listed = await fixture.Admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?pageSize=10&page=0");
        Assert.Equal(1, listed["totalElements"]!.GetValue<long>());
    }

    [Fact]
    public async Task A_duration_rule_fires_on_the_points_timestamps_not_on_arrival()
    {
        var (deviceId, token) = await DeviceInProfileAsync(fixture.Admin, TenMinutes);
        await using var live = await LiveClient.ConnectAsync(fixture.Server, fixture.Admin.Token!, AlarmData(deviceId));
        var t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (60 * Minute);

        // Over the threshold for 9 minutes of the device's time: nothing yet. Then 11 minutes: raised.
        await PublishAsync(fixture.Server, token, At(t0, 90));
        await PublishAsync(fixture.Server, token, At(t0 + (9 * Minute), 95));
        await PublishAsync(fixture.Server, token, At(t0 + (11 * Minute), 99));
        var raised = await NextUpdateAsync(live);
        Assert.Equal(("High PM2.5", "MAJOR"), (raised["type"]!.GetValue<string>(), raised["severity"]!.GetValue<string>()));
        Assert.Equal("PM2.5 is 99", raised["details"]!["data"]!.GetValue<string>());

        // One alarm only: it was raised by the third point, not before.
        var listed = await fixture.Admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?pageSize=10&page=0");
        Assert.Equal(1, listed["totalElements"]!.GetValue<long>());
        Assert.Equal(t0 + (11 * Minute), listed["data"]![0]!["startTs"]!.GetValue<long>());
    }

    [Fact]
    public async Task A_device_that_goes_quiet_past_the_profiles_inactivity_timeout_raises_the_inactivity_alarm()
    {
        var name = "quiet-" + Guid.NewGuid().ToString("N")[..8];
        var profile = await fixture.Admin.PostAsync("/api/deviceProfile", $$$$$"""
            {"name": "{{{{{name}}}}}", "profileData": {"inactivityTimeoutMs": 1500, "alarms": [{"id": "inactive", "alarmType": "Inactivity",
              "createRules": {"WARNING": {"condition": {"condition": [{"key": {"type": "ATTRIBUTE", "key": "active"}, "valueType": "BOOLEAN",
                "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": false}}}], "spec": {"type": "SIMPLE"}}}},
              "clearRule": {"condition": {"condition": [{"key": {"type": "ATTRIBUTE", "key": "active"}, "valueType": "BOOLEAN",
                "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": true}}}], "spec": {"type": "SIMPLE"}}}}]}}
            """);
        var device = await fixture.Admin.PostAsync("/api/device", new { name, deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profile["id"]!["id"]!.GetValue<string>() } });
        var deviceId = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        var token = (await fixture.Admin.GetAsync($"/api/device/{deviceId}/credentials"))["credentialsId"]!.GetValue<string>();
        await using var live = await LiveClient.ConnectAsync(fixture.Server, fixture.Admin.Token!, AlarmData(deviceId));

        // One message and the client is gone: once the timeout passes without activity, "active" turns false.
        await PublishAsync(fixture.Server, token, """{"pm25": 10}""");
        var raised = await NextUpdateAsync(live);
        Assert.Equal(("Inactivity", "WARNING", "ACTIVE_UNACK"), (raised["type"]!.GetValue<string>(), raised["severity"]!.GetValue<string>(), raised["status"]!.GetValue<string>()));

        // Heard from again: active, and the clear rule clears it.
        await PublishAsync(fixture.Server, token, """{"pm25": 11}""");
        var cleared = await NextUpdateAsync(live);
        Assert.Equal(("Inactivity", "CLEARED_UNACK"), (cleared["type"]!.GetValue<string>(), cleared["status"]!.GetValue<string>()));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_duration_in_progress_survives_a_restart(bool crash)
    {
        var directory = ServerProcess.NewDataDirectory();
        try
        {
            Guid deviceId;
            string token;
            var t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (60 * Minute);
            var email = $"restart-{Guid.NewGuid():N}@example.com";
            await using (var first = await ServerProcess.StartAsync(dataDirectory: directory))
            {
                using var sys = await PlatformApi.SysAdminAsync(first);
                var (_, admin) = await sys.CreateTenantWithAdminAsync("Restart " + Guid.NewGuid().ToString("N")[..8], email);
                using (admin)
                {
                    (deviceId, token) = await DeviceInProfileAsync(admin, TenMinutes);
                    await PublishAsync(first, token, At(t0, 90));
                    await PublishAsync(first, token, At(t0 + (6 * Minute), 91));
                    Assert.Equal(0, (await admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?pageSize=10&page=0"))["totalElements"]!.GetValue<long>());
                }

                // A clean stop writes the rules' state; after a crash the event log is read again from the last
                // write. Either way the process is gone before the second start.
                if (crash)
                {
                    await first.KillAsync();
                }
                else
                {
                    await first.SignalAsync("TERM");
                    Assert.Equal(0, await first.WaitForExitAsync());
                }
            }

            await using var second = await ServerProcess.StartAsync(dataDirectory: directory);
            using var login = new PlatformApi(second);
            login.Token = await login.LoginAsync(email, "tenant-admin-pw");
            {
                await using var live = await LiveClient.ConnectAsync(second, login.Token, AlarmData(deviceId));
                // Six minutes before the restart and five after: the rule held for eleven.
                await PublishAsync(second, token, At(t0 + (11 * Minute), 92));
                var raised = await NextUpdateAsync(live);
                Assert.Equal(("High PM2.5", "MAJOR"), (raised["type"]!.GetValue<string>(), raised["severity"]!.GetValue<string>()));
            }
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(directory);
        }
    }
}
