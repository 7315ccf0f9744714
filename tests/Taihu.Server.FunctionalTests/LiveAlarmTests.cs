using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Alarms on ThingsBoard's live WebSocket API against the real server: ALARM_DATA (the current page first, then
/// the raise, acknowledgement and clear as they commit), ALARM_COUNT and ALARM_STATUS (sent again when they
/// change), unsubscribing, tenant isolation and bad commands.
/// </summary>
public sealed class LiveAlarmTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    private PlatformApi Admin => fixture.Admin;

    private static object Raise(Guid deviceId, string type, string severity) =>
        new { originator = new { entityType = "DEVICE", id = deviceId }, type, severity };

    private static object AlarmData(int cmdId, object entityFilter, params string[] statusList) => new
    {
        type = "ALARM_DATA",
        cmdId,
        query = new
        {
            entityFilter,
            pageLink = new
            {
                page = 0,
                pageSize = 10,
                statusList,
                sortOrder = new { key = new { type = "ALARM_FIELD", key = "createdTime" }, direction = "DESC" },
            },
            alarmFields = Array.Empty<object>(),
        },
    };

    private static object Single(Guid deviceId) => new { type = "singleEntity", singleEntity = new { entityType = "DEVICE", id = deviceId } };

    /// <summary>The next frame of a newer-shape command (cmdId, cmdUpdateType), skipping others.</summary>
    private static async Task<JsonObject> NextOfCmdAsync(LiveClient live, int cmdId)
    {
        while (true)
        {
            var frame = await live.NextAsync();
            if (frame["cmdId"]?.GetValue<int>() == cmdId)
            {
                return frame;
            }
        }
    }

    private static Guid Id(JsonNode node) => Guid.Parse(node["id"]!["id"]!.GetValue<string>());

    [Fact]
    public async Task AlarmData_CurrentPageFirst_ThenTheRaiseAckAndClear_AsTheyCommit()
    {
        var (deviceId, _) = await Admin.CreateDeviceAsync("live-alarm-" + Guid.NewGuid().ToString("N")[..8]);
        var earlier = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Door Open", "WARNING")));

        await using var live = await LiveClient.ConnectAsync(Server, Admin.Token!, AlarmData(1, Single(deviceId)));
        var first = await NextOfCmdAsync(live, 1);
        Assert.Equal(("ALARM_DATA", 0), (first["cmdUpdateType"]!.GetValue<string>(), first["errorCode"]!.GetValue<int>()));
        Assert.Null(first["update"]);
        Assert.Equal(1, first["data"]!["totalElements"]!.GetValue<long>());
        var snapshot = first["data"]!["data"]![0]!;
        Assert.Equal((earlier, "WARNING", deviceId.ToString()), (Id(snapshot), snapshot["severity"]!.GetValue<string>(), snapshot["entityId"]!["id"]!.GetValue<string>()));
        Assert.StartsWith("live-alarm-", snapshot["originatorName"]!.GetValue<string>(), StringComparison.Ordinal);

        var raisedId = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Overheat", "CRITICAL")));
        var raised = Assert.Single((await NextOfCmdAsync(live, 1))["update"]!.AsArray())!;
        Assert.Equal((raisedId, "ACTIVE_UNACK", "CRITICAL"), (Id(raised), raised["status"]!.GetValue<string>(), raised["severity"]!.GetValue<string>()));

        await Admin.PostAsync($"/api/alarm/{raisedId}/ack", new { });
        var acked = Assert.Single((await NextOfCmdAsync(live, 1))["update"]!.AsArray())!;
        Assert.Equal((raisedId, "ACTIVE_ACK", true), (Id(acked), acked["status"]!.GetValue<string>(), acked["acknowledged"]!.GetValue<bool>()));

        await Admin.PostAsync($"/api/alarm/{raisedId}/clear", new { });
        var cleared = Assert.Single((await NextOfCmdAsync(live, 1))["update"]!.AsArray())!;
        Assert.Equal((raisedId, "CLEARED_ACK", true), (Id(cleared), cleared["status"]!.GetValue<string>(), cleared["cleared"]!.GetValue<bool>()));

        // Deleted: the page is read again and sent whole.
        await PlatformApi.ExpectAsync(await Admin.SendAsync(HttpMethod.Delete, $"/api/alarm/{earlier}"), System.Net.HttpStatusCode.OK);
        var afterDelete = await NextOfCmdAsync(live, 1);
        Assert.Equal([raisedId], afterDelete["data"]!["data"]!.AsArray().Select(a => Id(a!)));
    }

    [Fact]
    public async Task ActiveOnly_AClearedAlarmLeavesThePage_AndCountAndStatusFollow()
    {
        var (deviceId, _) = await Admin.CreateDeviceAsync("live-alarm-active-" + Guid.NewGuid().ToString("N")[..8]);
        await using var live = await LiveClient.ConnectAsync(Server, Admin.Token!,
            AlarmData(1, Single(deviceId), "ACTIVE"),
            new { type = "ALARM_COUNT", cmdId = 2, query = new { entityFilter = Single(deviceId), statusList = new[] { "ACTIVE" } } },
            new { type = "ALARM_STATUS", cmdId = 3, originatorId = new { entityType = "DEVICE", id = deviceId }, severityList = new[] { "CRITICAL", "MAJOR" } });
        // Every frame is read in order (no skipping): a change reaches the subscriptions in the order they were
        // made, each queues its frame, and a count or status that did not change sends nothing.
        var first = await live.NextAsync();
        Assert.Equal((1, 0L), (first["cmdId"]!.GetValue<int>(), first["data"]!["totalElements"]!.GetValue<long>()));
        var count = await live.NextAsync();
        Assert.Equal((2, "ALARM_COUNT_DATA", 0L), (count["cmdId"]!.GetValue<int>(), count["cmdUpdateType"]!.GetValue<string>(), count["count"]!.GetValue<long>()));
        var status = await live.NextAsync();
        Assert.Equal((3, "ALARM_STATUS", false), (status["cmdId"]!.GetValue<int>(), status["cmdUpdateType"]!.GetValue<string>(), status["active"]!.GetValue<bool>()));

        // A MINOR alarm: in the page and the count, not in the status (it asks for CRITICAL or MAJOR), which stays silent.
        var minor = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Low Battery", "MINOR")));
        var update = await live.NextAsync();
        Assert.Equal((1, minor), (update["cmdId"]!.GetValue<int>(), Id(Assert.Single(update["update"]!.AsArray())!)));
        count = await live.NextAsync();
        Assert.Equal((2, 1L), (count["cmdId"]!.GetValue<int>(), count["count"]!.GetValue<long>()));

        var major = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Overheat", "MAJOR")));
        update = await live.NextAsync();
        Assert.Equal((1, major), (update["cmdId"]!.GetValue<int>(), Id(Assert.Single(update["update"]!.AsArray())!)));
        count = await live.NextAsync();
        Assert.Equal((2, 2L), (count["cmdId"]!.GetValue<int>(), count["count"]!.GetValue<long>()));
        status = await live.NextAsync();
        Assert.Equal((3, true), (status["cmdId"]!.GetValue<int>(), status["active"]!.GetValue<bool>()));

        // Cleared: it leaves the ACTIVE page (the page is read again), the count goes down, the status goes false.
        await Admin.PostAsync($"/api/alarm/{major}/clear", new { });
        var page = await live.NextAsync();
        Assert.Equal(1, page["cmdId"]!.GetValue<int>());
        Assert.Equal([minor], page["data"]!["data"]!.AsArray().Select(a => Id(a!)));
        count = await live.NextAsync();
        Assert.Equal((2, 1L), (count["cmdId"]!.GetValue<int>(), count["count"]!.GetValue<long>()));
        status = await live.NextAsync();
        Assert.Equal((3, false), (status["cmdId"]!.GetValue<int>(), status["active"]!.GetValue<bool>()));

        // Unsubscribed from the page and the status; a new count (cmdId 5) answers once the frame was handled.
        await live.SendAsync(new { cmds = new object[]
        {
            new { type = "ALARM_DATA_UNSUBSCRIBE", cmdId = 1 },
            new { type = "ALARM_STATUS_UNSUBSCRIBE", cmdId = 3 },
            new { type = "ALARM_COUNT", cmdId = 5, query = new { entityFilter = Single(deviceId) } },
        } });
        var all = await live.NextAsync();
        Assert.Equal((5, 2L), (all["cmdId"]!.GetValue<int>(), all["count"]!.GetValue<long>()));
        // An ack changes neither count; the next raise changes both, and nothing comes for the unsubscribed ones.
        await Admin.PostAsync($"/api/alarm/{minor}/ack", new { });
        await Admin.PostAsync("/api/alarm", Raise(deviceId, "Overheat", "CRITICAL"));
        // The two subscriptions' updates come in either order.
        var counts = new[] { await live.NextAsync(), await live.NextAsync() }
            .Select(c => (c["cmdId"]!.GetValue<int>(), c["count"]!.GetValue<long>())).OrderBy(c => c.Item1).ToArray();
        Assert.Equal([(2, 2L), (5, 3L)], counts);
    }

    [Fact]
    public async Task AllDevices_OfTheTenantOnly_AndBadCommands_AreRefusedAlone()
    {
        var (deviceId, _) = await Admin.CreateDeviceAsync("live-alarm-all-" + Guid.NewGuid().ToString("N")[..8]);
        var (_, other) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Live alarm tenant " + Guid.NewGuid().ToString("N")[..8]);
        using var otherAdmin = other;
        var (otherDevice, _) = await otherAdmin.CreateDeviceAsync("elsewhere");

        await using var live = await LiveClient.ConnectAsync(Server, Admin.Token!,
            AlarmData(1, new { type = "entityType", entityType = "DEVICE" }),
            AlarmData(2, Single(otherDevice)),
            new { type = "ALARM_DATA", cmdId = 3, query = new { entityFilter = new { type = "entityType", entityType = "ASSET" }, pageLink = new { pageSize = 10 } } },
            new { type = "ALARM_STATUS", cmdId = 4 },
            new
            {
                type = "ALARM_DATA",
                cmdId = 8,
                query = new { entityFilter = new { type = "entityType", entityType = "DEVICE" }, pageLink = new { pageSize = 10, textSearch = "visible" } },
            });
        // Errors of the parser come first, then the commands in order.
        var bad = await NextOfCmdAsync(live, 3);
        Assert.Equal(("ALARM_DATA", 2), (bad["cmdUpdateType"]!.GetValue<string>(), bad["errorCode"]!.GetValue<int>()));
        Assert.Contains("query.entityFilter.entityType 'ASSET' is not supported", bad["errorMsg"]!.GetValue<string>(), StringComparison.Ordinal);
        var noStatus = await NextOfCmdAsync(live, 4);
        Assert.Contains("originatorId is required", noStatus["errorMsg"]!.GetValue<string>(), StringComparison.Ordinal);
        var all = await NextOfCmdAsync(live, 1);
        Assert.Equal(0, all["errorCode"]!.GetValue<int>());
        var hidden = await NextOfCmdAsync(live, 2);
        Assert.Equal(3, hidden["errorCode"]!.GetValue<int>());
        Assert.Contains("was not found, or this user may not read it", hidden["errorMsg"]!.GetValue<string>(), StringComparison.Ordinal);

        var searched = await NextOfCmdAsync(live, 8);
        Assert.Equal(0, searched["errorCode"]!.GetValue<int>());

        // Another tenant's alarm is never pushed: the first update is this tenant's raise that followed it. The
        // subscription that searches for "visible" gets only the alarm whose type has it.
        await otherAdmin.PostAsync("/api/alarm", Raise(otherDevice, "Secret", "CRITICAL"));
        var quiet = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Quiet", "MAJOR")));
        var mine = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Visible", "MAJOR")));
        var update = await live.NextAsync();
        Assert.Equal((1, quiet), (update["cmdId"]!.GetValue<int>(), Id(Assert.Single(update["update"]!.AsArray())!)));
        update = await live.NextAsync();
        Assert.Equal((1, mine), (update["cmdId"]!.GetValue<int>(), Id(Assert.Single(update["update"]!.AsArray())!)));
        update = await live.NextAsync();
        Assert.Equal((8, mine), (update["cmdId"]!.GetValue<int>(), Id(Assert.Single(update["update"]!.AsArray())!)));
    }
}
