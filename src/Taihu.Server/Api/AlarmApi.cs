using System.Text.Json;
using System.Text.Json.Nodes;
using Taihu.Platform;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;

namespace Taihu.Server.Api;

/// <summary>ThingsBoard's <c>AlarmAssignee</c>.</summary>
public sealed record AlarmAssigneeDto(EntityIdDto Id, string? FirstName, string? LastName, string Email);

/// <summary>
/// An alarm in ThingsBoard's shape (3.5 and later): <c>status</c> beside the newer <c>acknowledged</c> and
/// <c>cleared</c>, <c>name</c> equal to <c>type</c>. The info fields (originator's name and label, the assignee)
/// are filled only by the calls that return ThingsBoard's <c>AlarmInfo</c>.
/// </summary>
public sealed record AlarmDto(
    EntityIdDto Id, long CreatedTime, EntityIdDto TenantId, EntityIdDto CustomerId, string Name, string Type, EntityIdDto Originator,
    string Severity, bool Acknowledged, bool Cleared, EntityIdDto? AssigneeId, long StartTs, long EndTs, long AckTs, long ClearTs, long AssignTs,
    JsonNode? Details, bool Propagate, bool PropagateToOwner, bool PropagateToTenant, string[] PropagateRelationTypes, string Status)
{
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public string? OriginatorName { get; init; }

    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public string? OriginatorLabel { get; init; }

    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public AlarmAssigneeDto? Assignee { get; init; }
}

/// <summary>
/// Alarms in ThingsBoard's paths and shapes: create or update (<c>POST /api/alarm</c>), read (as <c>Alarm</c> or
/// <c>AlarmInfo</c>), acknowledge, clear, assign, delete, the lists per device and per tenant (v1 with
/// searchStatus/status, v2 with statusList, severityList, typeList, assigneeId), and the highest severity of a
/// device. Originators are devices. Changes go through <see cref="AlarmService"/>, which serializes them per device.
/// </summary>
public static class AlarmApi
{
    public static IEndpointRouteBuilder MapAlarmApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Alarms");
        api.MapPost("/alarm", async (JsonElement body, HttpContext context, AlarmService alarms, CancellationToken ct) =>
            Results.Ok((await alarms.SaveAsync(await context.CallerAsync(), ReadDraft(body), ct)).Alarm!.ToDto()))
            .WithName("SaveAlarm")
            .WithSummary("Creates an alarm, or updates the active alarm of that originator and type (or the alarm named by id): severity, details, times.");

        api.MapGet("/alarm/{alarmId:guid}", async (Guid alarmId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
            Results.Ok((await alarms.GetAsync(await context.CallerAsync(), alarmId, ct)).ToDto())).WithName("GetAlarmById");

        api.MapGet("/alarm/info/{alarmId:guid}", async (Guid alarmId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
            Results.Ok((await alarms.GetInfoAsync(await context.CallerAsync(), alarmId, ct)).ToDto()))
            .WithName("GetAlarmInfoById").WithSummary("The alarm with its originator's name and label and its assignee.");

        api.MapDelete("/alarm/{alarmId:guid}", async (Guid alarmId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
        {
            await alarms.DeleteAsync(await context.CallerAsync(), alarmId, ct);
            return Results.Ok(true);
        }).WithName("DeleteAlarm");

        api.MapPost("/alarm/{alarmId:guid}/ack", async (Guid alarmId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            await alarms.AckAsync(caller, alarmId, ct);
            return Results.Ok((await alarms.GetInfoAsync(caller, alarmId, ct)).ToDto());
        }).WithName("AckAlarm").WithSummary("Acknowledges an alarm; 400 when it was acknowledged already.");

        api.MapPost("/alarm/{alarmId:guid}/clear", async (Guid alarmId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            await alarms.ClearAsync(caller, alarmId, ct);
            return Results.Ok((await alarms.GetInfoAsync(caller, alarmId, ct)).ToDto());
        }).WithName("ClearAlarm").WithSummary("Clears an alarm; 400 when it was cleared already. The next raise of its type makes a new alarm.");

        api.MapPost("/alarm/{alarmId:guid}/assign/{assigneeId:guid}", async (Guid alarmId, Guid assigneeId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
            Results.Ok((await alarms.AssignAsync(await context.CallerAsync(), alarmId, assigneeId, ct)).ToDto()))
            .WithName("AssignAlarm").WithSummary("Assigns an alarm to a user of the tenant.");

        api.MapDelete("/alarm/{alarmId:guid}/assign", async (Guid alarmId, HttpContext context, AlarmService alarms, CancellationToken ct) =>
            Results.Ok((await alarms.UnassignAsync(await context.CallerAsync(), alarmId, ct)).ToDto()))
            .WithName("UnassignAlarm");

        api.MapGet("/alarm/{entityType}/{entityId:guid}", async (string entityType, Guid entityId, string? searchStatus, string? status, Guid? assigneeId,
            int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, long? startTime, long? endTime,
            HttpContext context, IDeviceService devices, AlarmService alarms, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            await RequireDeviceAsync(entityType, entityId, caller, devices, ct);
            var query = new AlarmQuery(Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), entityId, StatusV1(searchStatus, status),
                AssigneeId: assigneeId, StartTime: startTime, EndTime: endTime);
            return Results.Ok((await alarms.QueryAsync(caller, query, ct)).Map(a => a.ToDto()));
        }).WithName("GetAlarms").WithSummary("A device's alarms, a page at a time: searchStatus (ANY, ACTIVE, CLEARED, ACK, UNACK) or status, startTime/endTime on createdTime.");

        api.MapGet("/v2/alarm/{entityType}/{entityId:guid}", async (string entityType, Guid entityId, string? statusList, string? severityList, string? typeList,
            Guid? assigneeId, int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, long? startTime, long? endTime,
            HttpContext context, IDeviceService devices, AlarmService alarms, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            await RequireDeviceAsync(entityType, entityId, caller, devices, ct);
            var query = QueryV2(Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), entityId, statusList, severityList, typeList, assigneeId, startTime, endTime);
            return Results.Ok((await alarms.QueryAsync(caller, query, ct)).Map(a => a.ToDto()));
        }).WithName("GetAlarmsV2").WithSummary("A device's alarms, a page at a time: statusList, severityList, typeList (comma-separated), assigneeId.");

        api.MapGet("/alarms", async (string? searchStatus, string? status, Guid? assigneeId, int? pageSize, int? page, string? textSearch, string? sortProperty,
            string? sortOrder, long? startTime, long? endTime, HttpContext context, AlarmService alarms, CancellationToken ct) =>
        {
            var query = new AlarmQuery(Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), null, StatusV1(searchStatus, status),
                AssigneeId: assigneeId, StartTime: startTime, EndTime: endTime);
            return Results.Ok((await alarms.QueryAsync(await context.CallerAsync(), query, ct)).Map(a => a.ToDto()));
        }).WithName("GetAllAlarms").WithSummary("The tenant's alarms, a page at a time: searchStatus or status, assigneeId, startTime/endTime.");

        api.MapGet("/v2/alarms", async (string? statusList, string? severityList, string? typeList, Guid? assigneeId, int? pageSize, int? page, string? textSearch,
            string? sortProperty, string? sortOrder, long? startTime, long? endTime, HttpContext context, AlarmService alarms, CancellationToken ct) =>
        {
            var query = QueryV2(Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), null, statusList, severityList, typeList, assigneeId, startTime, endTime);
            return Results.Ok((await alarms.QueryAsync(await context.CallerAsync(), query, ct)).Map(a => a.ToDto()));
        }).WithName("GetAllAlarmsV2").WithSummary("The tenant's alarms, a page at a time: statusList, severityList, typeList (comma-separated), assigneeId.");

        api.MapGet("/alarm/highestSeverity/{entityType}/{entityId:guid}", async (string entityType, Guid entityId, string? searchStatus, string? status, Guid? assigneeId,
            HttpContext context, IDeviceService devices, AlarmService alarms, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            await RequireDeviceAsync(entityType, entityId, caller, devices, ct);
            var highest = await alarms.HighestSeverityAsync(caller, new AlarmQuery(new PageRequest(), entityId, StatusV1(searchStatus, status), AssigneeId: assigneeId), ct);
            // ThingsBoard answers the severity as a JSON string, and an empty body when the device has no such alarm.
            return highest is { } severity ? Results.Json(severity.Name()) : Results.Ok();
        }).WithName("GetHighestAlarmSeverity").WithSummary("The highest severity of a device's alarms (searchStatus or status); empty when none.");
        return app;
    }

    public static AlarmDto ToDto(this Alarm a) => new(
        new EntityIdDto("ALARM", a.Id), a.CreatedTime, new EntityIdDto("TENANT", a.TenantId), Shapes.NullCustomer, a.Type, a.Type,
        new EntityIdDto("DEVICE", a.OriginatorId), a.Severity.Name(), a.Acknowledged, a.Cleared, a.AssigneeId is { } u ? new EntityIdDto("USER", u) : null,
        a.StartTs, a.EndTs, a.AckTs, a.ClearTs, a.AssignTs, JsonNode.Parse(a.DetailsJson), a.Propagate, a.PropagateToOwner, a.PropagateToTenant,
        a.PropagateRelationTypes, a.StatusName);

    public static AlarmDto ToDto(this AlarmInfo info) => info.Alarm.ToDto() with
    {
        OriginatorName = info.OriginatorName,
        OriginatorLabel = info.OriginatorLabel,
        Assignee = info.Assignee is { } who ? new AlarmAssigneeDto(new EntityIdDto("USER", who.Id), who.FirstName, who.LastName, who.Email) : null,
    };

    private static async Task RequireDeviceAsync(string entityType, Guid entityId, Taihu.Platform.Tenants.Caller caller, IDeviceService devices, CancellationToken ct)
    {
        if (entityType != "DEVICE")
        {
            throw PlatformException.BadRequest($"entityType '{Shorten(entityType)}' is not supported: alarms here have DEVICE originators.");
        }

        await devices.GetAsync(caller, entityId, ct);
    }

    /// <summary>v1's status filter: searchStatus or status (not both).</summary>
    internal static AlarmStatusFilter StatusV1(string? searchStatus, string? status)
    {
        if (!string.IsNullOrEmpty(searchStatus) && !string.IsNullOrEmpty(status))
        {
            throw PlatformException.BadRequest("Give searchStatus or status, not both.");
        }

        if (!string.IsNullOrEmpty(searchStatus))
        {
            return AlarmStatusFilter.TryParseSearchStatus(searchStatus, out var filter)
                ? filter
                : throw PlatformException.BadRequest($"searchStatus '{Shorten(searchStatus)}' is not one of {AlarmStatusFilter.SearchStatusExpected}.");
        }

        if (!string.IsNullOrEmpty(status))
        {
            return AlarmStatusFilter.TryParseStatus(status, out var filter)
                ? filter
                : throw PlatformException.BadRequest($"status '{Shorten(status)}' is not one of {AlarmStatusFilter.StatusExpected}.");
        }

        return AlarmStatusFilter.Any;
    }

    private static AlarmQuery QueryV2(PageRequest paging, Guid? originatorId, string? statusList, string? severityList, string? typeList, Guid? assigneeId,
        long? startTime, long? endTime)
    {
        var status = AlarmStatusFilter.Any;
        if (Split(statusList) is { } statuses && !AlarmStatusFilter.TryParseList(statuses, out status, out var bad))
        {
            throw PlatformException.BadRequest($"statusList has '{Shorten(bad!)}', which is not one of {AlarmStatusFilter.SearchStatusExpected}.");
        }

        List<AlarmSeverity>? severities = null;
        if (Split(severityList) is { } names)
        {
            severities = [];
            foreach (var name in names)
            {
                severities.Add(AlarmNames.TryParseSeverity(name, out var severity)
                    ? severity
                    : throw PlatformException.BadRequest($"severityList has '{Shorten(name)}', which is not one of {AlarmNames.SeverityExpected}."));
            }
        }

        var types = Split(typeList);
        if (types is { Count: > AlarmQuery.MaxTypes })
        {
            throw PlatformException.BadRequest($"typeList names more than {AlarmQuery.MaxTypes} types.");
        }

        return new AlarmQuery(paging, originatorId, status, severities, types, assigneeId, startTime, endTime);
    }

    /// <summary>A comma-separated query list, trimmed, empty items dropped; null when nothing is left.</summary>
    private static List<string>? Split(string? list)
    {
        if (string.IsNullOrWhiteSpace(list))
        {
            return null;
        }

        var items = new List<string>();
        foreach (var item in list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            items.Add(item);
        }

        return items.Count == 0 ? null : items;
    }

    private static AlarmDraft ReadDraft(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            throw PlatformException.BadRequest("An alarm is a JSON object with originator, type and severity.");
        }

        if (!body.TryGetProperty("originator", out var originator) || originator.ValueKind != JsonValueKind.Object)
        {
            throw PlatformException.BadRequest("originator is required: {\"entityType\":\"DEVICE\",\"id\":\"<device id>\"}.");
        }

        var originatorType = CallerResolution.Text(originator, "entityType");
        if (originatorType != "DEVICE")
        {
            throw PlatformException.BadRequest(originatorType is null
                ? "originator.entityType is required: DEVICE."
                : $"originator.entityType '{Shorten(originatorType)}' is not supported: alarms here have DEVICE originators.");
        }

        var originatorId = CallerResolution.EntityId(body, "originator") ?? throw PlatformException.BadRequest("originator.id is required: the device's id.");
        var type = body.TryGetProperty("type", out var typeElement) && typeElement.ValueKind == JsonValueKind.String ? typeElement.GetString()! : null;
        if (type is null)
        {
            throw PlatformException.BadRequest("type is required: the alarm's name, a string.");
        }

        var severityText = CallerResolution.Text(body, "severity");
        if (!AlarmNames.TryParseSeverity(severityText, out var severity))
        {
            throw PlatformException.BadRequest(severityText is null
                ? $"severity is required: {AlarmNames.SeverityExpected}."
                : $"severity '{Shorten(severityText)}' is not one of {AlarmNames.SeverityExpected}.");
        }

        string? details = null;
        if (body.TryGetProperty("details", out var detailsElement) && detailsElement.ValueKind != JsonValueKind.Null)
        {
            details = detailsElement.GetRawText();
        }

        string[]? relations = null;
        if (body.TryGetProperty("propagateRelationTypes", out var relationsElement) && relationsElement.ValueKind != JsonValueKind.Null)
        {
            if (relationsElement.ValueKind != JsonValueKind.Array)
            {
                throw PlatformException.BadRequest("propagateRelationTypes is an array of strings.");
            }

            var list = new List<string>();
            foreach (var item in relationsElement.EnumerateArray())
            {
                list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw PlatformException.BadRequest("propagateRelationTypes is an array of strings."));
            }

            relations = [.. list];
        }

        return new AlarmDraft(CallerResolution.EntityId(body, "id"), originatorId, type, severity, details, Time(body, "startTs"), Time(body, "endTs"),
            Flag(body, "propagate"), Flag(body, "propagateToOwner"), Flag(body, "propagateToTenant"), relations);
    }

    private static long? Time(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        // ThingsBoard's clients send 0 for "not set".
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var ms) && ms >= 0
            ? ms == 0 ? null : ms
            : throw PlatformException.BadRequest($"{name} is a time in milliseconds since the epoch.");
    }

    private static bool Flag(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return false;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw PlatformException.BadRequest($"{name} is true or false."),
        };
    }

    /// <summary>A value from the client quoted back in an error, cut so that the error stays small.</summary>
    private static string Shorten(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "...");
}
