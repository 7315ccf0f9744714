using System.Net;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Alarms through ThingsBoard's REST API against the real server: raise (and raise again), acknowledge, assign,
/// clear, the next raise, the lists with their filters, deletion, tenant isolation, roles, and bad input that
/// changes nothing.
/// </summary>
public sealed class AlarmApiTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private PlatformApi Admin => fixture.Admin;

    private static object Raise(Guid deviceId, string type, string severity, object? details = null) =>
        new { originator = new { entityType = "DEVICE", id = deviceId }, type, severity, details };

    private static Guid Id(JsonNode node) => Guid.Parse(node["id"]!["id"]!.GetValue<string>());

    private async Task<Guid> UserIdAsync(PlatformApi user) => Id(await user.GetAsync("/api/auth/user"));

    [Fact]
    public async Task Lifecycle_RaiseRepeatAckAssignClear_ThenTheNextRaiseIsANewAlarm()
    {
        var (deviceId, _) = await Admin.CreateDeviceAsync("alarm-life-" + Guid.NewGuid().ToString("N")[..8]);

        var raised = await Admin.PostAsync("/api/alarm", Raise(deviceId, "High Temperature", "MAJOR", new { temperature = 41 }));
        var alarmId = Id(raised);
        Assert.Equal("ALARM", raised["id"]!["entityType"]!.GetValue<string>());
        Assert.Equal(("High Temperature", "High Temperature", "MAJOR", "ACTIVE_UNACK", false, false),
            (raised["type"]!.GetValue<string>(), raised["name"]!.GetValue<string>(), raised["severity"]!.GetValue<string>(), raised["status"]!.GetValue<string>(),
             raised["acknowledged"]!.GetValue<bool>(), raised["cleared"]!.GetValue<bool>()));
        Assert.Equal(deviceId.ToString(), raised["originator"]!["id"]!.GetValue<string>());
        Assert.Equal(fixture.TenantId.ToString(), raised["tenantId"]!["id"]!.GetValue<string>());
        Assert.Equal("""{"temperature":41}""", raised["details"]!.ToJsonString());

        // A repeat updates the active alarm: same id, the new severity and details.
        var repeated = await Admin.PostAsync("/api/alarm", Raise(deviceId, "High Temperature", "CRITICAL", new { temperature = 55 }));
        Assert.Equal(alarmId, Id(repeated));
        Assert.Equal(("CRITICAL", """{"temperature":55}"""), (repeated["severity"]!.GetValue<string>(), repeated["details"]!.ToJsonString()));

        var acked = await Admin.PostAsync($"/api/alarm/{alarmId}/ack", new { });
        Assert.Equal(("ACTIVE_ACK", true), (acked["status"]!.GetValue<string>(), acked["acknowledged"]!.GetValue<bool>()));
        Assert.True(acked["ackTs"]!.GetValue<long>() > 0);
        Assert.StartsWith("alarm-life-", acked["originatorName"]!.GetValue<string>(), StringComparison.Ordinal);
        var again = await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, $"/api/alarm/{alarmId}/ack"), HttpStatusCode.BadRequest);
        Assert.Contains("already acknowledged", again["message"]!.GetValue<string>(), StringComparison.Ordinal);

        using var operatorUser = await Admin.CreateUserAsync("OPERATOR");
        var operatorId = await UserIdAsync(operatorUser);
        var assigned = await Admin.PostAsync($"/api/alarm/{alarmId}/assign/{operatorId}", new { });
        Assert.Equal(operatorId.ToString(), assigned["assigneeId"]!["id"]!.GetValue<string>());
        var info = await Admin.GetAsync($"/api/alarm/info/{alarmId}");
        Assert.Equal(operatorId.ToString(), info["assignee"]!["id"]!["id"]!.GetValue<string>());
        Assert.StartsWith("operator-", info["assignee"]!["email"]!.GetValue<string>(), StringComparison.Ordinal);
        var mine = await operatorUser.GetAsync($"/api/v2/alarms?assigneeId={operatorId}");
        Assert.Equal(alarmId, Id(Assert.Single(mine["data"]!.AsArray())!));
        var unassigned = await PlatformApi.ExpectAsync(await Admin.SendAsync(HttpMethod.Delete, $"/api/alarm/{alarmId}/assign"), HttpStatusCode.OK);
        Assert.Null(unassigned["assigneeId"]);

        // The operator may clear (operators write data); the alarm stays until deleted.
        var cleared = await operatorUser.PostAsync($"/api/alarm/{alarmId}/clear", new { });
        Assert.Equal(("CLEARED_ACK", true), (cleared["status"]!.GetValue<string>(), cleared["cleared"]!.GetValue<bool>()));
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, $"/api/alarm/{alarmId}/clear"), HttpStatusCode.BadRequest);

        var next = await Admin.PostAsync("/api/alarm", Raise(deviceId, "High Temperature", "MINOR"));
        Assert.NotEqual(alarmId, Id(next));
        Assert.Equal("ACTIVE_UNACK", next["status"]!.GetValue<string>());

        var all = await Admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?searchStatus=ANY&pageSize=10&page=0");
        Assert.Equal(2, all["totalElements"]!.GetValue<long>());
        Assert.Equal([Id(next), alarmId], all["data"]!.AsArray().Select(a => Id(a!)));
        var active = await Admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?searchStatus=ACTIVE&pageSize=10&page=0");
        Assert.Equal(Id(next), Id(Assert.Single(active["data"]!.AsArray())!));
        var clearedAck = await Admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?status=CLEARED_ACK&pageSize=10&page=0");
        Assert.Equal(alarmId, Id(Assert.Single(clearedAck["data"]!.AsArray())!));

        var highest = await Admin.SendAsync(HttpMethod.Get, $"/api/alarm/highestSeverity/DEVICE/{deviceId}");
        Assert.Equal("\"CRITICAL\"", await highest.Content.ReadAsStringAsync());
        var highestActive = await Admin.SendAsync(HttpMethod.Get, $"/api/alarm/highestSeverity/DEVICE/{deviceId}?searchStatus=ACTIVE");
        Assert.Equal("\"MINOR\"", await highestActive.Content.ReadAsStringAsync());

        Assert.True((await Admin.PostAsync("/api/alarm", Raise(deviceId, "x", "WARNING")))["id"] is not null);
        var deleted = await PlatformApi.ExpectAsync(await Admin.SendAsync(HttpMethod.Delete, $"/api/alarm/{alarmId}"), HttpStatusCode.OK);
        Assert.True(deleted.GetValue<bool>());
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Get, $"/api/alarm/{alarmId}"), HttpStatusCode.NotFound);

        var log = await Admin.GetAsync("/api/audit/logs?pageSize=100&page=0");
        var actions = log["data"]!.AsArray().Where(e => e!["entityId"]?["id"]?.GetValue<string>() == alarmId.ToString()).Select(e => e!["actionType"]!.GetValue<string>());
        Assert.Equal(["DELETED", "ALARM_CLEAR", "ALARM_UNASSIGNED", "ALARM_ASSIGNED", "ALARM_ACK", "UPDATED", "ADDED"], actions);
    }

    [Fact]
    public async Task Lists_AcrossTheTenant_PageFilterAndSort()
    {
        var tag = Guid.NewGuid().ToString("N")[..8];
        var (first, _) = await Admin.CreateDeviceAsync("alarm-list-a-" + tag);
        var (second, _) = await Admin.CreateDeviceAsync("alarm-list-b-" + tag);
        var severities = new[] { "CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE", "CRITICAL" };
        var ids = new List<Guid>();
        for (var i = 0; i < severities.Length; i++)
        {
            ids.Add(Id(await Admin.PostAsync("/api/alarm", Raise(i % 2 == 0 ? first : second, $"{tag}-type-{i}", severities[i]))));
        }

        await Admin.PostAsync($"/api/alarm/{ids[0]}/ack", new { });
        await Admin.PostAsync($"/api/alarm/{ids[1]}/clear", new { });

        var page = await Admin.GetAsync($"/api/alarms?textSearch={tag}&pageSize=4&page=0");
        Assert.Equal((6L, 2, true), (page["totalElements"]!.GetValue<long>(), page["totalPages"]!.GetValue<int>(), page["hasNext"]!.GetValue<bool>()));
        Assert.Equal([ids[5], ids[4], ids[3], ids[2]], page["data"]!.AsArray().Select(a => Id(a!)));
        var unack = await Admin.GetAsync($"/api/alarms?textSearch={tag}&searchStatus=UNACK&pageSize=10&sortProperty=createdTime&sortOrder=ASC");
        Assert.Equal([ids[1], ids[2], ids[3], ids[4], ids[5]], unack["data"]!.AsArray().Select(a => Id(a!)));

        var v2 = await Admin.GetAsync($"/api/v2/alarms?textSearch={tag}&statusList=ACTIVE&severityList=CRITICAL,MAJOR&pageSize=10&sortProperty=createdTime&sortOrder=ASC");
        Assert.Equal([ids[0], ids[5]], v2["data"]!.AsArray().Select(a => Id(a!)));
        var byType = await Admin.GetAsync($"/api/v2/alarms?typeList={tag}-type-3,{tag}-type-4&pageSize=10&sortProperty=severity&sortOrder=DESC");
        Assert.Equal([ids[3], ids[4]], byType["data"]!.AsArray().Select(a => Id(a!)));
        var ofDevice = await Admin.GetAsync($"/api/v2/alarm/DEVICE/{second}?statusList=ACTIVE,CLEARED&pageSize=10&sortProperty=createdTime&sortOrder=ASC");
        Assert.Equal([ids[1], ids[3], ids[5]], ofDevice["data"]!.AsArray().Select(a => Id(a!)));
        var info = ofDevice["data"]![0]!;
        Assert.Equal("alarm-list-b-" + tag, info["originatorName"]!.GetValue<string>());
    }

    [Fact]
    public async Task AnotherTenant_SeesNothing_AndAViewer_ChangesNothing()
    {
        var (deviceId, _) = await Admin.CreateDeviceAsync("alarm-iso-" + Guid.NewGuid().ToString("N")[..8]);
        var alarmId = Id(await Admin.PostAsync("/api/alarm", Raise(deviceId, "Leak", "CRITICAL")));
        var (_, other) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Alarm tenant " + Guid.NewGuid().ToString("N")[..8]);
        using var otherAdmin = other;
        var otherUserId = await UserIdAsync(otherAdmin);

        foreach (var (method, path) in new[]
        {
            (HttpMethod.Get, $"/api/alarm/{alarmId}"),
            (HttpMethod.Get, $"/api/alarm/info/{alarmId}"),
            (HttpMethod.Post, $"/api/alarm/{alarmId}/ack"),
            (HttpMethod.Post, $"/api/alarm/{alarmId}/clear"),
            (HttpMethod.Delete, $"/api/alarm/{alarmId}/assign"),
            (HttpMethod.Delete, $"/api/alarm/{alarmId}"),
            (HttpMethod.Get, $"/api/alarm/DEVICE/{deviceId}"),
            (HttpMethod.Get, $"/api/v2/alarm/DEVICE/{deviceId}"),
            (HttpMethod.Get, $"/api/alarm/highestSeverity/DEVICE/{deviceId}"),
        })
        {
            await PlatformApi.ExpectProblemAsync(await otherAdmin.SendAsync(method, path), HttpStatusCode.NotFound);
        }

        // Raising on another tenant's device is refused as if it did not exist; the lists show nothing of tenant A.
        await PlatformApi.ExpectProblemAsync(await otherAdmin.SendAsync(HttpMethod.Post, "/api/alarm", Raise(deviceId, "Leak", "MAJOR")), HttpStatusCode.NotFound);
        Assert.Equal(0, (await otherAdmin.GetAsync("/api/alarms?pageSize=10"))["totalElements"]!.GetValue<long>());
        Assert.Equal(0, (await otherAdmin.GetAsync("/api/v2/alarms?pageSize=10"))["totalElements"]!.GetValue<long>());
        // Nor can an alarm of A be assigned to a user of another tenant.
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, $"/api/alarm/{alarmId}/assign/{otherUserId}"), HttpStatusCode.NotFound);

        using var viewer = await Admin.CreateUserAsync("VIEWER");
        Assert.Equal(alarmId, Id(await viewer.GetAsync($"/api/alarm/{alarmId}")));
        foreach (var (method, path, body) in new[]
        {
            (HttpMethod.Post, "/api/alarm", Raise(deviceId, "Leak", "MINOR")),
            (HttpMethod.Post, $"/api/alarm/{alarmId}/ack", null),
            (HttpMethod.Post, $"/api/alarm/{alarmId}/clear", null),
            (HttpMethod.Post, $"/api/alarm/{alarmId}/assign/{await UserIdAsync(viewer)}", null),
            (HttpMethod.Delete, $"/api/alarm/{alarmId}/assign", null),
            (HttpMethod.Delete, $"/api/alarm/{alarmId}", null),
        })
        {
            await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(method, path, body), HttpStatusCode.Forbidden);
        }

        var unchanged = await Admin.GetAsync($"/api/alarm/{alarmId}");
        Assert.Equal(("CRITICAL", "ACTIVE_UNACK"), (unchanged["severity"]!.GetValue<string>(), unchanged["status"]!.GetValue<string>()));
        Assert.Null(unchanged["assigneeId"]);
    }

    [Fact]
    public async Task BadInput_GetsAPreciseError_ChangesNothing_AndTheServerKeepsServing()
    {
        var (deviceId, _) = await Admin.CreateDeviceAsync("alarm-bad-" + Guid.NewGuid().ToString("N")[..8]);
        var deep = new string('[', 40) + new string(']', 40);
        foreach (var (body, expected) in new (string Body, string Message)[]
        {
            ("[1,2]", "An alarm is a JSON object"),
            ("{\"type\":\"t\",\"severity\":\"MAJOR\"}", "originator is required"),
            ($$"""{"originator":{"entityType":"ASSET","id":"{{deviceId}}"},"type":"t","severity":"MAJOR"}""", "originator.entityType 'ASSET' is not supported"),
            ("""{"originator":{"entityType":"DEVICE","id":"not-an-id"},"type":"t","severity":"MAJOR"}""", "originator is not a valid id"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"severity":"MAJOR"}""", "type is required"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":7,"severity":"MAJOR"}""", "type is required"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"","severity":"MAJOR"}""", "type is required"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t"}""", "severity is required"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"HIGH"}""", "severity 'HIGH' is not one of"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"MAJOR","startTs":-5}""", "startTs is a time"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"MAJOR","startTs":9,"endTs":3}""", "startTs and endTs"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"MAJOR","propagate":"yes"}""", "propagate is true or false"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"MAJOR","propagateRelationTypes":[1]}""", "propagateRelationTypes is an array"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t\u0000","severity":"MAJOR"}""", "Text may not contain the NUL"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"MAJOR","details":{{deep}}}""", "details is not valid JSON"),
            ($$"""{"originator":{"entityType":"DEVICE","id":"{{deviceId}}"},"type":"t","severity":"MAJOR""", "The request body is not valid JSON"),
        })
        {
            var problem = await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, "/api/alarm", body), HttpStatusCode.BadRequest);
            Assert.Contains(expected, problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }

        foreach (var (path, expected) in new[]
        {
            ($"/api/alarm/DEVICE/{deviceId}?searchStatus=OPEN", "searchStatus 'OPEN' is not one of"),
            ($"/api/alarm/DEVICE/{deviceId}?status=OPEN", "status 'OPEN' is not one of"),
            ($"/api/alarm/DEVICE/{deviceId}?status=ACTIVE_ACK&searchStatus=ANY", "Give searchStatus or status, not both"),
            ($"/api/alarm/ASSET/{deviceId}", "entityType 'ASSET' is not supported"),
            ($"/api/alarm/DEVICE/{deviceId}?pageSize=0", "pageSize must be positive"),
            ($"/api/alarm/DEVICE/{deviceId}?startTime=soon", "startTime"),
            ("/api/alarms?searchStatus=cleared", "searchStatus 'cleared' is not one of"),
            ("/api/v2/alarms?statusList=ACTIVE,OPEN", "statusList has 'OPEN'"),
            ("/api/v2/alarms?severityList=HIGH", "severityList has 'HIGH'"),
            ("/api/v2/alarms?assigneeId=me", "assigneeId"),
            ("/api/v2/alarms?typeList=" + string.Join(",", Enumerable.Range(0, 101)), "typeList names more than 100 types"),
            ($"/api/alarm/highestSeverity/DEVICE/{deviceId}?searchStatus=SOME", "searchStatus 'SOME'"),
        })
        {
            var problem = await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Get, path), HttpStatusCode.BadRequest);
            Assert.Contains(expected, problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }

        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Get, $"/api/alarm/{Guid.NewGuid()}"), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, $"/api/alarm/{Guid.NewGuid()}/ack"), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Get, "/api/alarm/not-a-guid"), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, "/api/alarm", Raise(Guid.NewGuid(), "t", "MAJOR")), HttpStatusCode.NotFound);
        await PlatformApi.ExpectProblemAsync(await Admin.SendAsync(HttpMethod.Post, "/api/alarm",
            new { id = new { entityType = "ALARM", id = Guid.NewGuid() }, originator = new { entityType = "DEVICE", id = deviceId }, type = "t", severity = "MAJOR" }), HttpStatusCode.NotFound);

        // Nothing was stored, and the server still answers.
        var none = await Admin.GetAsync($"/api/alarm/DEVICE/{deviceId}?pageSize=10");
        Assert.Equal(0, none["totalElements"]!.GetValue<long>());
        var ok = await Admin.PostAsync("/api/alarm", Raise(deviceId, "t", "MAJOR"));
        Assert.Equal("ACTIVE_UNACK", ok["status"]!.GetValue<string>());
    }
}
