using System.Text;
using System.Text.Json;
using Taihu.Platform.Telemetry;
using Taihu.Server.Api;

namespace Taihu.Server.Tests;

/// <summary>
/// The live API's command frames, both of ThingsBoard's shapes, without a socket: what is taken, and for each bad
/// command an error naming the field, while the frame's other commands are still taken.
/// </summary>
public sealed class LiveCommandParserTests
{
    private static readonly Guid Device = Guid.Parse("2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f");

    private static LiveFrame Parse(string json) => LiveCommandParser.Parse(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void CurrentShape_AuthAndCommands()
    {
        var frame = Parse($$"""
            {"authCmd":{"cmdId":0,"token":"jwt"},"cmds":[
              {"type":"TIMESERIES","cmdId":1,"entityType":"DEVICE","entityId":"{{Device}}","keys":"a, b","startTs":5,"timeWindow":60000,"interval":1000,"limit":10,"agg":"avg"},
              {"type":"ATTRIBUTES","cmdId":2,"entityType":"DEVICE","entityId":"{{Device}}","scope":"SHARED_SCOPE","keys":["x"]},
              {"type":"TIMESERIES_HISTORY","cmdId":3,"entityType":"DEVICE","entityId":"{{Device}}","startTs":1,"endTs":2},
              {"type":"TIMESERIES","cmdId":1,"unsubscribe":true}]}
            """);

        Assert.True(frame.HasAuth);
        Assert.Equal("jwt", frame.Token);
        Assert.Empty(frame.Errors);
        Assert.Equal(4, frame.Commands.Count);
        var ts = frame.Commands[0];
        Assert.Equal((LiveCommandKind.Timeseries, 1, Device, 5L, 60_000L, 1_000L, 10, Aggregation.Avg), (ts.Kind, ts.CmdId, ts.EntityId, ts.StartTs, ts.TimeWindow, ts.Interval, ts.Limit, ts.Aggregation));
        Assert.Equal(["a", "b"], ts.Keys!.Order());
        Assert.Equal((LiveCommandKind.Attributes, AttributeScope.Shared), (frame.Commands[1].Kind, frame.Commands[1].Scope));
        Assert.Equal(["x"], frame.Commands[1].Keys!);
        Assert.Equal((LiveCommandKind.History, 1L, 2L), (frame.Commands[2].Kind, frame.Commands[2].StartTs, frame.Commands[2].EndTs));
        Assert.True(frame.Commands[3].Unsubscribe);
    }

    [Fact]
    public void OlderShape_TheListNamesTheKind()
    {
        var frame = Parse($$"""
            {"tsSubCmds":[{"entityType":"DEVICE","entityId":"{{Device}}","scope":"LATEST_TELEMETRY","cmdId":10}],
             "historyCmds":[{"entityType":"DEVICE","entityId":"{{Device}}","keys":"t","startTs":0,"endTs":9,"cmdId":11}],
             "attrSubCmds":[{"entityType":"DEVICE","entityId":"{{Device}}","cmdId":12}]}
            """);

        Assert.False(frame.HasAuth);
        Assert.Empty(frame.Errors);
        Assert.Equal([LiveCommandKind.Timeseries, LiveCommandKind.History, LiveCommandKind.Attributes], frame.Commands.Select(c => c.Kind));
        Assert.Null(frame.Commands[0].Keys);
        Assert.Null(frame.Commands[2].Scope);
    }

    [Theory]
    [InlineData("""{"cmds":[{"type":"ENTITY_DATA","cmdId":5}]}""", 5, "Unknown command type 'ENTITY_DATA'")]
    [InlineData("""{"cmds":[{"cmdId":5}]}""", 5, "type is required")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":"5"}]}""", 0, "cmdId is required")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5.5}]}""", 0, "cmdId is required")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5}]}""", 5, "entityType is required")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"ASSET"}]}""", 5, "entityType 'ASSET' is not supported")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE"}]}""", 5, "entityId is required")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":7}]}""", 5, "entityId is a string")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":"nope"}]}""", 5, "entityId 'nope' is not a valid id")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f","startTs":1e400}]}""", 5, "startTs is a whole number")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f","limit":99999999999}]}""", 5, "limit is too large")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f","agg":"MEDIAN"}]}""", 5, "agg is NONE")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f","keys":{"a":1}}]}""", 5, "keys is a comma-separated string")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES","cmdId":5,"entityType":"DEVICE","entityId":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f","scope":"SERVER_SCOPE"}]}""", 5, "scope 'SERVER_SCOPE' is not a time series scope")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES_HISTORY","cmdId":5,"entityType":"DEVICE","entityId":"2f6a3c1e-8d4b-4e7a-9c1d-0a1b2c3d4e5f","startTs":9,"endTs":1}]}""", 5, "endTs must not be before startTs")]
    [InlineData("""{"cmds":[{"type":"TIMESERIES_HISTORY","cmdId":5,"unsubscribe":true}]}""", 5, "A history command is answered once")]
    [InlineData("""{"cmds":[7]}""", 0, "A command is a JSON object")]
    [InlineData("""{"cmds":{}}""", 0, "cmds is an array")]
    [InlineData("""{"entityDataCmds":[]}""", 0, "Unknown command list 'entityDataCmds'")]
    [InlineData("""{}""", 0, "The frame carries no command")]
    [InlineData("""[1,2]""", 0, "A frame is a JSON object")]
    [InlineData("\"text\"", 0, "A frame is a JSON object")]
    public void BadCommand_IsRefusedAlone_NamingWhatIsWrong(string json, int cmdId, string message)
    {
        var frame = Parse(json);

        var error = Assert.Single(frame.Errors);
        Assert.Equal(cmdId, error.CmdId);
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
        Assert.Empty(frame.Commands);
    }

    [Fact]
    public void ABadCommand_DoesNotCostTheOthersOfItsFrame()
    {
        var frame = Parse($$"""{"cmds":[{"type":"NOPE","cmdId":1},{"type":"TIMESERIES","cmdId":2,"entityType":"DEVICE","entityId":"{{Device}}"}]}""");

        Assert.Equal(1, Assert.Single(frame.Errors).CmdId);
        Assert.Equal(2, Assert.Single(frame.Commands).CmdId);
    }

    [Fact]
    public void AValueQuotedBack_IsCut()
    {
        var frame = Parse($$"""{"cmds":[{"type":"{{new string('x', 10_000)}}","cmdId":1}]}""");

        Assert.True(Assert.Single(frame.Errors).Message.Length < 200);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{\"cmds\":[")]
    [InlineData("")]
    [InlineData("{\"cmds\":[{\"a\":\"\\ud800\"}]}x")]
    public void NotJson_ThrowsJsonException(string text) => Assert.ThrowsAny<JsonException>(() => Parse(text));

    [Fact]
    public void DeepNesting_IsRefusedAsNotJson_NotByTheStack()
    {
        var deep = "{\"cmds\":[" + new string('[', 10_000) + new string(']', 10_000) + "]}";

        Assert.ThrowsAny<JsonException>(() => Parse(deep));
    }
}
