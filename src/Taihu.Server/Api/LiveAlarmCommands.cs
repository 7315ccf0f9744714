using System.Text.Json;
using Taihu.Platform;
using Taihu.Platform.Alarms;

namespace Taihu.Server.Api;

/// <summary>The alarm subscriptions of the live API (ThingsBoard's newer <c>cmds</c> shape).</summary>
internal enum LiveAlarmKind
{
    /// <summary>ALARM_DATA: a page of alarms, then each change.</summary>
    Data,

    /// <summary>ALARM_COUNT: how many alarms match, sent again when it changes.</summary>
    Count,

    /// <summary>ALARM_STATUS: whether the device has an active alarm that matches, sent again when that changes.</summary>
    Status,
}

/// <summary>
/// One alarm command, checked. <see cref="EntityId"/> null means every device of the tenant (entityFilter
/// <c>entityType</c> DEVICE); <see cref="TimeWindow"/> (ALARM_DATA's pageLink.timeWindow) keeps alarms created
/// within that many milliseconds before the subscription.
/// </summary>
internal sealed record LiveAlarmCommand(LiveAlarmKind Kind, int CmdId, bool Unsubscribe, Guid? EntityId, AlarmQuery Query, long TimeWindow)
{
    /// <summary>ThingsBoard's cmdUpdateType of this command's frames.</summary>
    public string UpdateType => Kind switch
    {
        LiveAlarmKind.Data => "ALARM_DATA",
        LiveAlarmKind.Count => "ALARM_COUNT_DATA",
        _ => "ALARM_STATUS",
    };
}

/// <summary>
/// Reads ALARM_DATA, ALARM_COUNT and ALARM_STATUS commands and their *_UNSUBSCRIBE forms. As for the other
/// commands, a bad one is refused alone with a message that names the field.
/// </summary>
internal static class LiveAlarmCommandParser
{
    public static bool IsAlarmType(string? type) => type is not null && type.StartsWith("ALARM_", StringComparison.Ordinal);

    /// <summary>Parses an alarm command (its type starts with ALARM_); throws <see cref="LiveAlarmCommandException"/>.</summary>
    public static LiveAlarmCommand Read(JsonElement element, int cmdId, string type)
    {
        var (kind, unsubscribe) = type switch
        {
            "ALARM_DATA" => (LiveAlarmKind.Data, false),
            "ALARM_DATA_UNSUBSCRIBE" => (LiveAlarmKind.Data, true),
            "ALARM_COUNT" => (LiveAlarmKind.Count, false),
            "ALARM_COUNT_UNSUBSCRIBE" => (LiveAlarmKind.Count, true),
            "ALARM_STATUS" => (LiveAlarmKind.Status, false),
            "ALARM_STATUS_UNSUBSCRIBE" => (LiveAlarmKind.Status, true),
            _ => throw new LiveAlarmCommandException(cmdId, null,
                $"Unknown command type '{Shorten(type)}': the alarm commands are ALARM_DATA, ALARM_COUNT, ALARM_STATUS and their _UNSUBSCRIBE forms."),
        };
        var updateType = kind switch { LiveAlarmKind.Data => "ALARM_DATA", LiveAlarmKind.Count => "ALARM_COUNT_DATA", _ => "ALARM_STATUS" };
        if (unsubscribe)
        {
            return new LiveAlarmCommand(kind, cmdId, true, null, new AlarmQuery(new PageRequest()), 0);
        }

        try
        {
            return kind switch
            {
                LiveAlarmKind.Data => ReadData(element, cmdId),
                LiveAlarmKind.Count => ReadCount(element, cmdId),
                _ => ReadStatus(element, cmdId),
            };
        }
        catch (FormatException e)
        {
            throw new LiveAlarmCommandException(cmdId, updateType, e.Message);
        }
    }

    private static LiveAlarmCommand ReadData(JsonElement element, int cmdId)
    {
        var query = Object(element, "query") ?? throw new FormatException("query is required: {\"entityFilter\":{..},\"pageLink\":{..}}.");
        var entityId = EntityFilter(query);
        var pageLink = Object(query, "pageLink") ?? throw new FormatException("query.pageLink is required: {\"pageSize\":..,\"page\":..}.");
        var pageSize = Int(pageLink, "pageSize", "query.pageLink.pageSize") ?? 10;
        var page = Int(pageLink, "page", "query.pageLink.page") ?? 0;
        if (pageSize <= 0 || page < 0)
        {
            throw new FormatException("query.pageLink.pageSize must be positive and query.pageLink.page must not be negative.");
        }

        var sortProperty = "createdTime";
        var descending = true;
        if (Object(pageLink, "sortOrder") is { } sortOrder)
        {
            if (Object(sortOrder, "key") is { } key)
            {
                sortProperty = String(key, "key", "query.pageLink.sortOrder.key.key") ?? "createdTime";
                if (sortProperty is not ("createdTime" or "startTs" or "endTs" or "ackTs" or "clearTs" or "assignTs" or "type" or "severity" or "originator"))
                {
                    throw new FormatException($"query.pageLink.sortOrder.key.key '{Shorten(sortProperty)}' is not an alarm field this server sorts by: createdTime, startTs, endTs, ackTs, clearTs, assignTs, type, severity or originator.");
                }
            }

            var direction = String(sortOrder, "direction", "query.pageLink.sortOrder.direction") ?? "DESC";
            descending = direction switch
            {
                "DESC" => true,
                "ASC" => false,
                _ => throw new FormatException($"query.pageLink.sortOrder.direction '{Shorten(direction)}' is ASC or DESC."),
            };
        }

        var timeWindow = Long(pageLink, "timeWindow", "query.pageLink.timeWindow") ?? 0;
        var paging = new PageRequest(pageSize, page, String(pageLink, "textSearch", "query.pageLink.textSearch"), sortProperty, descending);
        var filter = new AlarmQuery(paging, entityId, StatusList(pageLink, "query.pageLink.statusList"), SeverityList(pageLink, "query.pageLink.severityList"),
            TypeList(pageLink, "query.pageLink.typeList"), Assignee(pageLink, "query.pageLink.assigneeId"));
        return new LiveAlarmCommand(LiveAlarmKind.Data, cmdId, false, entityId, filter, timeWindow);
    }

    private static LiveAlarmCommand ReadCount(JsonElement element, int cmdId)
    {
        var query = Object(element, "query") ?? throw new FormatException("query is required: {\"entityFilter\":{..},\"statusList\":[..]}.");
        var entityId = EntityFilter(query);
        var filter = new AlarmQuery(new PageRequest(), entityId, StatusList(query, "query.statusList"), SeverityList(query, "query.severityList"),
            TypeList(query, "query.typeList"), Assignee(query, "query.assigneeId"));
        return new LiveAlarmCommand(LiveAlarmKind.Count, cmdId, false, entityId, filter, 0);
    }

    private static LiveAlarmCommand ReadStatus(JsonElement element, int cmdId)
    {
        var originator = Object(element, "originatorId") ?? throw new FormatException("originatorId is required: {\"entityType\":\"DEVICE\",\"id\":\"<device id>\"}.");
        var entityId = DeviceId(originator, "originatorId");
        // Active (not cleared) alarms of the originator, of the severities and types asked for.
        var filter = new AlarmQuery(new PageRequest(), entityId, new AlarmStatusFilter(false, null), SeverityList(element, "severityList"), TypeList(element, "typeList"));
        return new LiveAlarmCommand(LiveAlarmKind.Status, cmdId, false, entityId, filter, 0);
    }

    /// <summary>entityFilter: singleEntity (a device) or entityType DEVICE (every device of the tenant: null).</summary>
    private static Guid? EntityFilter(JsonElement query)
    {
        var filter = Object(query, "entityFilter") ?? throw new FormatException("query.entityFilter is required: singleEntity or entityType.");
        var type = String(filter, "type", "query.entityFilter.type");
        switch (type)
        {
            case "singleEntity":
                var single = Object(filter, "singleEntity") ?? throw new FormatException("query.entityFilter.singleEntity is required: {\"entityType\":\"DEVICE\",\"id\":..}.");
                return DeviceId(single, "query.entityFilter.singleEntity");
            case "entityType":
                var entityType = String(filter, "entityType", "query.entityFilter.entityType");
                return entityType == "DEVICE"
                    ? null
                    : throw new FormatException($"query.entityFilter.entityType '{Shorten(entityType ?? "")}' is not supported: DEVICE.");
            case null:
                throw new FormatException("query.entityFilter.type is required: singleEntity or entityType.");
            default:
                throw new FormatException($"query.entityFilter.type '{Shorten(type)}' is not supported: singleEntity or entityType.");
        }
    }

    private static Guid DeviceId(JsonElement entity, string path)
    {
        var entityType = String(entity, "entityType", path + ".entityType");
        if (entityType != "DEVICE")
        {
            throw new FormatException(entityType is null ? $"{path}.entityType is required: DEVICE." : $"{path}.entityType '{Shorten(entityType)}' is not supported: DEVICE.");
        }

        var id = String(entity, "id", path + ".id") ?? throw new FormatException($"{path}.id is required: the device's id.");
        return Guid.TryParse(id, out var guid) ? guid : throw new FormatException($"{path}.id '{Shorten(id)}' is not a valid id.");
    }

    private static AlarmStatusFilter StatusList(JsonElement element, string path)
    {
        var names = Strings(element, path[(path.LastIndexOf('.') + 1)..], path);
        if (names is null)
        {
            return AlarmStatusFilter.Any;
        }

        return AlarmStatusFilter.TryParseList(names, out var filter, out var bad)
            ? filter
            : throw new FormatException($"{path} has '{Shorten(bad!)}', which is not one of {AlarmStatusFilter.SearchStatusExpected}.");
    }

    private static List<AlarmSeverity>? SeverityList(JsonElement element, string path)
    {
        var names = Strings(element, path[(path.LastIndexOf('.') + 1)..], path);
        if (names is null)
        {
            return null;
        }

        var list = new List<AlarmSeverity>(names.Count);
        foreach (var name in names)
        {
            list.Add(AlarmNames.TryParseSeverity(name, out var severity)
                ? severity
                : throw new FormatException($"{path} has '{Shorten(name)}', which is not one of {AlarmNames.SeverityExpected}."));
        }

        return list;
    }

    private static List<string>? TypeList(JsonElement element, string path)
    {
        var types = Strings(element, path[(path.LastIndexOf('.') + 1)..], path);
        return types is { Count: > AlarmQuery.MaxTypes } ? throw new FormatException($"{path} names more than {AlarmQuery.MaxTypes} types.") : types;
    }

    private static Guid? Assignee(JsonElement element, string path)
    {
        if (!element.TryGetProperty("assigneeId", out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        var text = value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object when value.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String => id.GetString(),
            _ => null,
        };
        return Guid.TryParse(text, out var guid) ? guid : throw new FormatException($"{path} is a user's id.");
    }

    /// <summary>An array of strings; null when absent, null or empty (no condition).</summary>
    private static List<string>? Strings(JsonElement element, string name, string path)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new FormatException($"{path} is an array of strings.");
        }

        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw new FormatException($"{path} is an array of strings."));
        }

        return list.Count == 0 ? null : list;
    }

    private static JsonElement? Object(JsonElement element, string name)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Object ? value : throw new FormatException($"{name} is a JSON object.");
    }

    private static string? String(JsonElement element, string name, string path)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw new FormatException($"{path} is a string.");
    }

    private static int? Int(JsonElement element, string name, string path)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var number) ? number : throw new FormatException($"{path} is a whole number.");
    }

    private static long? Long(JsonElement element, string name, string path)
    {
        if (!element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) && number >= 0
            ? number
            : throw new FormatException($"{path} is a whole number of milliseconds, not negative.");
    }

    private static string Shorten(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "...");
}

/// <summary>An alarm command refused: its cmdId, the cmdUpdateType its error frame carries (null: unknown type), and why.</summary>
internal sealed class LiveAlarmCommandException(int cmdId, string? updateType, string message) : Exception(message)
{
    public int CmdId { get; } = cmdId;

    public string? UpdateType { get; } = updateType;
}
