using System.Text.Json;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

/// <summary>What a live command asks for.</summary>
internal enum LiveCommandKind
{
    /// <summary>Time series of a device: a snapshot (latest values, or a time window), then every change.</summary>
    Timeseries,

    /// <summary>Attributes of a device (one scope or all): a snapshot, then every change.</summary>
    Attributes,

    /// <summary>History of time series: one answer, no subscription.</summary>
    History,
}

/// <summary>One command of a frame, checked: every field is of its type and in range.</summary>
internal sealed record LiveCommand(
    LiveCommandKind Kind,
    int CmdId,
    bool Unsubscribe,
    Guid EntityId,
    HashSet<string>? Keys,
    AttributeScope? Scope,
    long StartTs,
    long EndTs,
    long TimeWindow,
    long Interval,
    int Limit,
    Aggregation Aggregation);

/// <summary>A command that could not be taken, with the cmdId it carried (0 when it had none) and why; an alarm command's error
/// carries its cmdUpdateType, as ThingsBoard's newer commands answer in that shape.</summary>
internal readonly record struct LiveCommandError(int CmdId, string Message, string? UpdateType = null);

/// <summary>A frame, parsed: the authentication it carries, its commands, and the ones refused.</summary>
internal sealed class LiveFrame
{
    public bool HasAuth { get; set; }

    public int AuthCmdId { get; set; }

    public string? Token { get; set; }

    public List<LiveCommand> Commands { get; } = [];

    /// <summary>ALARM_DATA, ALARM_COUNT, ALARM_STATUS and their unsubscribe commands, in the order they came.</summary>
    public List<LiveAlarmCommand> AlarmCommands { get; } = [];

    public List<LiveCommandError> Errors { get; } = [];
}

/// <summary>
/// Reads ThingsBoard's WebSocket command frames, both shapes: the current one of <c>/api/ws</c>
/// (<c>{"authCmd":{"cmdId","token"},"cmds":[{"type":"TIMESERIES",..}]}</c>) and the older one of
/// <c>/api/ws/plugins/telemetry</c> (<c>{"tsSubCmds":[..],"attrSubCmds":[..],"historyCmds":[..]}</c>). A bad
/// command is refused alone, with a message naming the field; the frame's other commands are taken.
/// </summary>
internal static class LiveCommandParser
{
    /// <summary>Parses a frame; throws <see cref="JsonException"/> when it is not JSON.</summary>
    public static LiveFrame Parse(ReadOnlyMemory<byte> utf8)
    {
        using var document = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = 16 });
        var frame = new LiveFrame();
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            frame.Errors.Add(new LiveCommandError(0, "A frame is a JSON object: {\"authCmd\":{..},\"cmds\":[..]} or {\"tsSubCmds\":[..],\"attrSubCmds\":[..],\"historyCmds\":[..]}."));
            return frame;
        }

        var any = false;
        foreach (var member in root.EnumerateObject())
        {
            switch (member.Name)
            {
                case "authCmd":
                    any = true;
                    ReadAuth(member.Value, frame);
                    break;
                case "cmds":
                    any = true;
                    ReadList(member.Value, "cmds", null, frame);
                    break;
                case "tsSubCmds":
                    any = true;
                    ReadList(member.Value, "tsSubCmds", LiveCommandKind.Timeseries, frame);
                    break;
                case "attrSubCmds":
                    any = true;
                    ReadList(member.Value, "attrSubCmds", LiveCommandKind.Attributes, frame);
                    break;
                case "historyCmds":
                    any = true;
                    ReadList(member.Value, "historyCmds", LiveCommandKind.History, frame);
                    break;
                default:
                    any = true;
                    frame.Errors.Add(new LiveCommandError(0, $"Unknown command list '{Shorten(member.Name)}': this server takes authCmd, cmds, tsSubCmds, attrSubCmds and historyCmds."));
                    break;
            }
        }

        if (!any)
        {
            frame.Errors.Add(new LiveCommandError(0, "The frame carries no command: send cmds (or tsSubCmds, attrSubCmds, historyCmds)."));
        }

        return frame;
    }

    private static void ReadAuth(JsonElement auth, LiveFrame frame)
    {
        frame.HasAuth = true;
        if (auth.ValueKind != JsonValueKind.Object)
        {
            return;
        }

        if (auth.TryGetProperty("cmdId", out var id) && id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out var cmdId))
        {
            frame.AuthCmdId = cmdId;
        }

        if (auth.TryGetProperty("token", out var token) && token.ValueKind == JsonValueKind.String)
        {
            frame.Token = token.GetString();
        }
    }

    private static void ReadList(JsonElement list, string name, LiveCommandKind? kind, LiveFrame frame)
    {
        if (list.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            frame.Errors.Add(new LiveCommandError(0, $"{name} is an array of commands."));
            return;
        }

        foreach (var element in list.EnumerateArray())
        {
            if (kind is null && element.ValueKind == JsonValueKind.Object && element.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
                && LiveAlarmCommandParser.IsAlarmType(type.GetString())
                && element.TryGetProperty("cmdId", out var id) && id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out var alarmCmdId))
            {
                try
                {
                    frame.AlarmCommands.Add(LiveAlarmCommandParser.Read(element, alarmCmdId, type.GetString()!));
                }
                catch (LiveAlarmCommandException e)
                {
                    frame.Errors.Add(new LiveCommandError(e.CmdId, e.Message, e.UpdateType));
                }

                continue;
            }

            try
            {
                frame.Commands.Add(ReadCommand(element, kind));
            }
            catch (LiveCommandException e)
            {
                frame.Errors.Add(new LiveCommandError(e.CmdId, e.Message));
            }
        }
    }

    private static LiveCommand ReadCommand(JsonElement element, LiveCommandKind? listKind)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new LiveCommandException(0, "A command is a JSON object with a cmdId.");
        }

        if (!element.TryGetProperty("cmdId", out var idElement) || idElement.ValueKind != JsonValueKind.Number || !idElement.TryGetInt32(out var cmdId))
        {
            throw new LiveCommandException(0, "cmdId is required: an integer that names the subscription in its updates.");
        }

        LiveCommandKind kind;
        if (listKind is { } known)
        {
            kind = known;
        }
        else
        {
            var type = String(element, "type", cmdId);
            kind = type switch
            {
                "TIMESERIES" => LiveCommandKind.Timeseries,
                "ATTRIBUTES" => LiveCommandKind.Attributes,
                "TIMESERIES_HISTORY" => LiveCommandKind.History,
                null => throw new LiveCommandException(cmdId, "type is required: TIMESERIES, TIMESERIES_HISTORY, ATTRIBUTES, ALARM_DATA, ALARM_COUNT or ALARM_STATUS."),
                _ => throw new LiveCommandException(cmdId, $"Unknown command type '{Shorten(type)}': this server takes TIMESERIES, TIMESERIES_HISTORY, ATTRIBUTES, ALARM_DATA, ALARM_COUNT and ALARM_STATUS."),
            };
        }

        var unsubscribe = element.TryGetProperty("unsubscribe", out var unsub) && unsub.ValueKind == JsonValueKind.True;
        if (unsubscribe)
        {
            if (kind == LiveCommandKind.History)
            {
                throw new LiveCommandException(cmdId, "A history command is answered once; there is nothing to unsubscribe.");
            }

            return new LiveCommand(kind, cmdId, true, Guid.Empty, null, null, 0, 0, 0, 0, 0, Aggregation.None);
        }

        var entityType = String(element, "entityType", cmdId);
        if (entityType != "DEVICE")
        {
            throw new LiveCommandException(cmdId, entityType is null
                ? "entityType is required: DEVICE."
                : $"entityType '{Shorten(entityType)}' is not supported: this server subscribes to DEVICE.");
        }

        var entityIdText = String(element, "entityId", cmdId) ?? throw new LiveCommandException(cmdId, "entityId is required: the device's id.");
        if (!Guid.TryParse(entityIdText, out var entityId))
        {
            throw new LiveCommandException(cmdId, $"entityId '{Shorten(entityIdText)}' is not a valid id.");
        }

        var keys = Keys(element, cmdId);
        AttributeScope? scope = null;
        var scopeText = String(element, "scope", cmdId);
        if (kind == LiveCommandKind.Attributes && scopeText is not null)
        {
            scope = SqlAttributeStore.TryParseScope(scopeText, out var parsed)
                ? parsed
                : throw new LiveCommandException(cmdId, $"scope '{Shorten(scopeText)}' is not an attribute scope: CLIENT_SCOPE, SHARED_SCOPE or SERVER_SCOPE.");
        }
        else if (kind != LiveCommandKind.Attributes && scopeText is not null and not "LATEST_TELEMETRY")
        {
            throw new LiveCommandException(cmdId, $"scope '{Shorten(scopeText)}' is not a time series scope: LATEST_TELEMETRY or none.");
        }

        var startTs = Number(element, "startTs", cmdId);
        var endTs = Number(element, "endTs", cmdId);
        var timeWindow = Number(element, "timeWindow", cmdId);
        var interval = Number(element, "interval", cmdId);
        var limit = Number(element, "limit", cmdId);
        if (limit > int.MaxValue)
        {
            throw new LiveCommandException(cmdId, "limit is too large.");
        }

        if (!AggregationNames.TryParse(String(element, "agg", cmdId), out var aggregation))
        {
            throw new LiveCommandException(cmdId, AggregationNames.Expected);
        }

        if (kind == LiveCommandKind.History && endTs < startTs)
        {
            throw new LiveCommandException(cmdId, "endTs must not be before startTs.");
        }

        return new LiveCommand(kind, cmdId, false, entityId, keys, scope, startTs, endTs, timeWindow, interval, (int)limit, aggregation);
    }

    /// <summary>ThingsBoard's keys: a comma-separated string; an array of strings is taken too. None or empty: all.</summary>
    private static HashSet<string>? Keys(JsonElement element, int cmdId)
    {
        if (!element.TryGetProperty("keys", out var keys) || keys.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (keys.ValueKind == JsonValueKind.String)
        {
            return Platform.Telemetry.DeviceDataService.SplitKeys(keys.GetString());
        }

        if (keys.ValueKind != JsonValueKind.Array)
        {
            throw new LiveCommandException(cmdId, "keys is a comma-separated string of keys (or an array of strings).");
        }

        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var key in keys.EnumerateArray())
        {
            if (key.ValueKind != JsonValueKind.String)
            {
                throw new LiveCommandException(cmdId, "keys is a comma-separated string of keys (or an array of strings).");
            }

            set.Add(key.GetString()!);
        }

        return set.Count == 0 ? null : set;
    }

    private static string? String(JsonElement element, string name, int cmdId)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw new LiveCommandException(cmdId, $"{name} is a string.");
    }

    private static long Number(JsonElement element, string name, int cmdId)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return 0;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number) || number < 0)
        {
            throw new LiveCommandException(cmdId, $"{name} is a whole number of milliseconds (or a count), not negative.");
        }

        return number;
    }

    /// <summary>A value from the client quoted back in an error, cut so that an error frame stays small.</summary>
    private static string Shorten(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "...");

    private sealed class LiveCommandException(int cmdId, string message) : Exception(message)
    {
        public int CmdId { get; } = cmdId;
    }
}
