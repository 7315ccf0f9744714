using System.Globalization;
using Taihu.Platform;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

/// <summary>Telemetry and attributes of devices, at ThingsBoard's /api/plugins/telemetry paths and in its shapes.</summary>
public static class TelemetryApi
{
    public sealed record TsValue(long Ts, object? Value);

    public sealed record AttributeDto(string Key, object? Value, long LastUpdateTs);

    public sealed record HistoryPage(IReadOnlyList<TsValue> Data, string? NextCursor, bool HasNext);

    public static IEndpointRouteBuilder MapTelemetryApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/plugins/telemetry/DEVICE/{id:guid}").WithTags("Telemetry and attributes");
        api.MapGet("/values/timeseries", async (Guid id, string? keys, long? startTs, long? endTs, long? interval, string? agg, int? limit, string? orderBy,
            bool? useStrictDataTypes, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            var strict = useStrictDataTypes ?? false;
            var result = new Dictionary<string, List<TsValue>>(StringComparer.Ordinal);
            if (startTs is null && endTs is null)
            {
                foreach (var point in await data.GetLatestAsync(caller, id, keys, ct))
                {
                    result[point.Key] = [new TsValue(point.Ts, Shapes.Value(point.Value, strict))];
                }

                return Results.Ok(result);
            }

            if (startTs is null || endTs is null)
            {
                throw PlatformException.BadRequest("startTs and endTs go together (milliseconds since 1970-01-01 UTC).");
            }

            var aggregation = ParseAggregation(agg);
            var order = string.Equals(orderBy, "ASC", StringComparison.OrdinalIgnoreCase) ? SortOrder.Ascending : SortOrder.Descending;
            var series = await data.GetTimeseriesAsync(caller, id, keys ?? "", startTs.Value, endTs.Value, interval ?? 0, aggregation, limit ?? 100, order, ct);
            foreach (var (key, points) in series)
            {
                var list = new List<TsValue>(points.Count);
                foreach (var point in points)
                {
                    list.Add(new TsValue(point.Ts, Shapes.Value(point.Value, strict)));
                }

                result[key] = list;
            }

            return Results.Ok(result);
        }).WithName("GetTimeseries").WithSummary("Latest values (no time range), raw history (agg=NONE) or aggregates over intervals, by key.");

        api.MapGet("/values/timeseries/page", async (Guid id, string key, long startTs, long endTs, int? limit, string? cursor, bool? useStrictDataTypes,
            HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            // Raw history a page at a time: the cursor is where the next page starts, so pages never skip or
            // repeat a point even while new points arrive (ThingsBoard has only a limit).
            var caller = await context.CallerAsync();
            var from = startTs;
            if (cursor is not null && !long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out from))
            {
                throw PlatformException.BadRequest("cursor is the nextCursor of the previous page.");
            }

            var size = Math.Clamp(limit ?? 100, 1, DeviceDataService.MaxHistoryLimit);
            var points = await data.GetHistoryPageAsync(caller, id, key, Math.Max(from, startTs), endTs, size, ct);
            var page = new List<TsValue>(Math.Min(points.Count, size));
            for (var i = 0; i < points.Count && i < size; i++)
            {
                page.Add(new TsValue(points[i].Ts, Shapes.Value(points[i].Value, useStrictDataTypes ?? true)));
            }

            var hasNext = points.Count > size;
            return Results.Ok(new HistoryPage(page, hasNext ? points[size].Ts.ToString(CultureInfo.InvariantCulture) : null, hasNext));
        }).WithName("GetTimeseriesPage").WithSummary("Raw history of one key in ascending time, paged with a cursor.");

        api.MapGet("/keys/timeseries", async (Guid id, HttpContext context, DeviceDataService data, CancellationToken ct) =>
            Results.Ok(await data.GetKeysAsync(await context.CallerAsync(), id, ct))).WithName("GetTimeseriesKeys");

        api.MapDelete("/timeseries/delete", async (Guid id, string keys, long? startTs, long? endTs, bool? deleteAllDataForKeys, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            var all = deleteAllDataForKeys ?? false;
            if (!all && (startTs is null || endTs is null))
            {
                throw PlatformException.BadRequest("Give startTs and endTs, or deleteAllDataForKeys=true.");
            }

            await data.DeleteTimeseriesAsync(await context.CallerAsync(), id, keys, all ? 0 : startTs!.Value, all ? long.MaxValue : endTs!.Value, ct);
            return Results.Ok();
        }).WithName("DeleteTimeseries").WithSummary("Deletes the points of the keys in a time range.");

        api.MapGet("/values/attributes", async (Guid id, string? keys, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            var result = new List<AttributeDto>();
            foreach (var scope in new[] { AttributeScope.Client, AttributeScope.Shared, AttributeScope.Server })
            {
                AddAttributes(result, await data.GetAttributesAsync(caller, id, scope, keys, ct));
            }

            return Results.Ok(result);
        }).WithName("GetAttributes").WithSummary("Attributes of every scope.");

        api.MapGet("/values/attributes/{scope}", async (Guid id, string scope, string? keys, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            var result = new List<AttributeDto>();
            AddAttributes(result, await data.GetAttributesAsync(await context.CallerAsync(), id, ParseScope(scope), keys, ct));
            return Results.Ok(result);
        }).WithName("GetAttributesByScope").WithSummary("Attributes of one scope: CLIENT_SCOPE, SHARED_SCOPE or SERVER_SCOPE.");

        api.MapGet("/keys/attributes/{scope}", async (Guid id, string scope, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            var keys = new List<string>();
            foreach (var entry in await data.GetAttributesAsync(await context.CallerAsync(), id, ParseScope(scope), null, ct))
            {
                keys.Add(entry.Key);
            }

            return Results.Ok(keys);
        }).WithName("GetAttributeKeysByScope");

        async Task<IResult> SaveAttributes(Guid id, string scope, HttpContext context, DeviceDataService data, CancellationToken ct)
        {
            var caller = await context.CallerAsync();
            var body = await DeviceHttpApi.ReadBodyAsync(context, 64 * 1024, ct);
            await data.SaveAttributesAsync(caller, id, ParseScope(scope), body, ct);
            return Results.Ok();
        }

        api.MapPost("/attributes/{scope}", SaveAttributes).WithName("SaveAttributes").WithSummary("Writes SERVER_SCOPE or SHARED_SCOPE attributes; shared ones reach the device at once.");
        api.MapPost("/{scope:regex(^(SERVER|SHARED|CLIENT)_SCOPE$)}", SaveAttributes).WithName("SaveAttributesV2");
        api.MapDelete("/{scope:regex(^(SERVER|SHARED|CLIENT)_SCOPE$)}", async (Guid id, string scope, string keys, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            await data.DeleteAttributesAsync(await context.CallerAsync(), id, ParseScope(scope), keys, ct);
            return Results.Ok();
        }).WithName("DeleteAttributes");
        return app;
    }

    private static void AddAttributes(List<AttributeDto> result, IReadOnlyList<AttributeEntry> entries)
    {
        foreach (var entry in entries)
        {
            result.Add(new AttributeDto(entry.Key, Shapes.Value(entry.Value, strict: true), entry.LastUpdateTs));
        }
    }

    private static AttributeScope ParseScope(string scope) => SqlAttributeStore.TryParseScope(scope, out var parsed)
        ? parsed
        : throw PlatformException.BadRequest("scope is CLIENT_SCOPE, SHARED_SCOPE or SERVER_SCOPE.");

    private static Aggregation ParseAggregation(string? agg) => AggregationNames.TryParse(agg, out var aggregation)
        ? aggregation
        : throw PlatformException.BadRequest(AggregationNames.Expected);
}
