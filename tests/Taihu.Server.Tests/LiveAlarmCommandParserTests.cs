using System.Text;
using Taihu.Platform.Alarms;
using Taihu.Server.Api;

namespace Taihu.Server.Tests;

/// <summary>
/// The live API's alarm commands (ALARM_DATA, ALARM_COUNT, ALARM_STATUS and their unsubscribe forms) without a
/// socket: what is taken, and for each bad command an error naming the field, in the command's cmdUpdateType.
/// </summary>
public sealed class LiveAlarmCommandParserTests
{
    private static readonly Guid Device = Guid.Parse("2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f");

    private static LiveFrame Parse(string json) => LiveCommandParser.Parse(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void AlarmCommands_AreTaken_WithTheirFilters()
    {
        var frame = Parse($$$"""
            {"cmds":[
              {"type":"ALARM_DATA","cmdId":1,"query":{"entityFilter":{"type":"singleEntity","singleEntity":{"entityType":"DEVICE","id":"{{{Device}}}"}},
                "pageLink":{"page":1,"pageSize":5,"textSearch":"hot","statusList":["ACTIVE","UNACK"],"severityList":["CRITICAL","MAJOR"],"typeList":["Overheat"],
                "sortOrder":{"key":{"type":"ALARM_FIELD","key":"createdTime"},"direction":"ASC"},"timeWindow":86400000},"alarmFields":[],"entityFields":[],"latestValues":[]}},
              {"type":"ALARM_COUNT","cmdId":2,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"statusList":["CLEARED"],"severityList":[],"typeList":null}},
              {"type":"ALARM_STATUS","cmdId":3,"originatorId":{"entityType":"DEVICE","id":"{{{Device}}}"},"severityList":["WARNING"]},
              {"type":"ALARM_DATA_UNSUBSCRIBE","cmdId":1},
              {"type":"TIMESERIES","cmdId":4,"entityType":"DEVICE","entityId":"{{{Device}}}"}]}
            """);

        Assert.Empty(frame.Errors);
        Assert.Single(frame.Commands);
        Assert.Equal(4, frame.AlarmCommands.Count);
        var data = frame.AlarmCommands[0];
        Assert.Equal((LiveAlarmKind.Data, 1, false, (Guid?)Device, 86_400_000L), (data.Kind, data.CmdId, data.Unsubscribe, data.EntityId, data.TimeWindow));
        Assert.Equal(new Platform.PageRequest(5, 1, "hot", "createdTime", false), data.Query.Page);
        Assert.Equal(new AlarmStatusFilter(false, false), data.Query.Status);
        Assert.Equal([AlarmSeverity.Critical, AlarmSeverity.Major], data.Query.Severities!);
        Assert.Equal(["Overheat"], data.Query.Types!);
        var count = frame.AlarmCommands[1];
        Assert.Equal((LiveAlarmKind.Count, (Guid?)null, new AlarmStatusFilter(true, null)), (count.Kind, count.EntityId, count.Query.Status));
        Assert.Null(count.Query.Severities);
        var status = frame.AlarmCommands[2];
        Assert.Equal((LiveAlarmKind.Status, (Guid?)Device, new AlarmStatusFilter(false, null)), (status.Kind, status.EntityId, status.Query.Status));
        Assert.Equal([AlarmSeverity.Warning], status.Query.Severities!);
        Assert.True(frame.AlarmCommands[3].Unsubscribe);
    }

    [Theory]
    [InlineData("""{"type":"ALARM_NOPE","cmdId":5}""", null, "Unknown command type 'ALARM_NOPE'")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5}""", "ALARM_DATA", "query is required")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":[]}""", "ALARM_DATA", "query is a JSON object")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"pageLink":{}}}""", "ALARM_DATA", "query.entityFilter is required")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"assetType"},"pageLink":{}}}""", "ALARM_DATA", "query.entityFilter.type 'assetType' is not supported")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"ASSET"},"pageLink":{}}}""", "ALARM_DATA", "query.entityFilter.entityType 'ASSET' is not supported")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"singleEntity","singleEntity":{"entityType":"DEVICE","id":"x"}},"pageLink":{}}}""", "ALARM_DATA", "query.entityFilter.singleEntity.id 'x' is not a valid id")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"singleEntity","singleEntity":{"entityType":"ASSET","id":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f"}},"pageLink":{}}}""", "ALARM_DATA", "query.entityFilter.singleEntity.entityType 'ASSET'")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"}}}""", "ALARM_DATA", "query.pageLink is required")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"pageSize":0}}}""", "ALARM_DATA", "query.pageLink.pageSize must be positive")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"pageSize":"10"}}}""", "ALARM_DATA", "query.pageLink.pageSize is a whole number")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"statusList":["OPEN"]}}}""", "ALARM_DATA", "query.pageLink.statusList has 'OPEN'")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"statusList":"ACTIVE"}}}""", "ALARM_DATA", "query.pageLink.statusList is an array of strings")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"severityList":["HIGH"]}}}""", "ALARM_DATA", "query.pageLink.severityList has 'HIGH'")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"typeList":[1]}}}""", "ALARM_DATA", "query.pageLink.typeList is an array of strings")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"sortOrder":{"key":{"key":"temperature"}}}}}""", "ALARM_DATA", "query.pageLink.sortOrder.key.key 'temperature'")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"sortOrder":{"direction":"UP"}}}}""", "ALARM_DATA", "query.pageLink.sortOrder.direction 'UP'")]
    [InlineData("""{"type":"ALARM_DATA","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"pageLink":{"timeWindow":-1}}}""", "ALARM_DATA", "query.pageLink.timeWindow is a whole number")]
    [InlineData("""{"type":"ALARM_COUNT","cmdId":5,"query":{"entityFilter":{"type":"entityType","entityType":"DEVICE"},"assigneeId":"me"}}""", "ALARM_COUNT_DATA", "query.assigneeId is a user's id")]
    [InlineData("""{"type":"ALARM_STATUS","cmdId":5}""", "ALARM_STATUS", "originatorId is required")]
    [InlineData("""{"type":"ALARM_STATUS","cmdId":5,"originatorId":{"entityType":"DEVICE"}}""", "ALARM_STATUS", "originatorId.id is required")]
    public void BadAlarmCommand_IsRefusedAlone_NamingTheField_InItsUpdateType(string command, string? updateType, string message)
    {
        var frame = Parse($$$"""{"cmds":[{{{command}}},{"type":"ALARM_COUNT_UNSUBSCRIBE","cmdId":9}]}""");

        var error = Assert.Single(frame.Errors);
        Assert.Equal((5, updateType), (error.CmdId, error.UpdateType));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
        Assert.Equal(9, Assert.Single(frame.AlarmCommands).CmdId);
    }

    [Fact]
    public void TooManyTypes_AndLongValues_AreRefusedShort()
    {
        var types = string.Join(",", Enumerable.Range(0, 101).Select(i => $"\"t{i}\""));
        var frame = Parse($$$"""{"cmds":[{"type":"ALARM_STATUS","cmdId":1,"originatorId":{"entityType":"DEVICE","id":"{{{Device}}}"},"typeList":[{{{types}}}]},"""
            + $$$"""{"type":"ALARM_STATUS","cmdId":2,"originatorId":{"entityType":"{{{new string('x', 10_000)}}}","id":"{{{Device}}}"}}]}""");

        Assert.Equal(2, frame.Errors.Count);
        Assert.StartsWith("typeList names more than 100 types", frame.Errors[0].Message, StringComparison.Ordinal);
        Assert.True(frame.Errors[1].Message.Length < 200);
    }
}
