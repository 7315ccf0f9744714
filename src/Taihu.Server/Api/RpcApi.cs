using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Rpc;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

public sealed record RpcBodyDto(string Method, string Params);

public sealed record RpcRequestDto(Guid Id, int RequestId, bool Oneway, long ExpirationTime, long Timeout, RpcBodyDto Body, bool Persisted, int Retries);

/// <summary>A persistent call in ThingsBoard's shape (its <c>Rpc</c> entity), with Taihu's <c>attempts</c>.</summary>
public sealed record RpcDto(EntityIdDto Id, long CreatedTime, EntityIdDto TenantId, EntityIdDto DeviceId, long ExpirationTime, RpcRequestDto Request,
    JsonNode? Response, string Status, int Attempts, JsonNode? AdditionalInfo);

public sealed record RpcIdDto(Guid RpcId);

/// <summary>
/// Server-side RPC in ThingsBoard's paths: <c>/api/rpc/{oneway|twoway}/{deviceId}</c> (504 when the device is
/// not reached or does not answer in time), the older <c>/api/plugins/rpc/{oneway|twoway}/{deviceId}</c> (408
/// on timeout, 409 when the device is not connected), and the persistent calls under <c>/api/rpc/persistent</c>.
/// </summary>
public static class RpcApi
{
    public static IEndpointRouteBuilder MapRpcApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("RPC");
        foreach (var (prefix, plugins) in new[] { ("/rpc", false), ("/plugins/rpc", true) })
        {
            foreach (var (kind, oneWay) in new[] { ("oneway", true), ("twoway", false) })
            {
                api.MapPost($"{prefix}/{kind}/{{deviceId:guid}}", (Guid deviceId, HttpContext context, DeviceDirectory devices, RpcService rpc,
                    IOptions<IngestOptions> options, TimeProvider time, CancellationToken ct) => CallAsync(deviceId, oneWay, plugins, context, devices, rpc, options.Value, time, ct))
                    .WithBodyLimit(BodyLimit.DevicePayload)
                    .WithName((plugins ? "Plugins" : "") + (oneWay ? "OneWayRpc" : "TwoWayRpc"))
                    .WithSummary(oneWay
                        ? "Sends a command to a device: 200 once the device received it. With \"persistent\": true, {\"rpcId\"} at once."
                        : "Sends a command to a device and answers with the device's reply. With \"persistent\": true, {\"rpcId\"} at once.");
            }
        }

        api.MapGet("/rpc/persistent/{rpcId:guid}", async (Guid rpcId, HttpContext context, RpcService rpc, CancellationToken ct) =>
            Results.Ok((await rpc.GetAsync(await context.CallerAsync(), rpcId, ct)).ToDto()))
            .WithName("GetPersistedRpc").WithSummary("A persistent call with its status and the device's response.");

        api.MapGet("/rpc/persistent/device/{deviceId:guid}", async (Guid deviceId, int? pageSize, int? page, string? rpcStatus, string? textSearch, string? sortProperty,
            string? sortOrder, HttpContext context, IDeviceService devices, RpcService rpc, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            RpcStatus? status = null;
            if (!string.IsNullOrEmpty(rpcStatus))
            {
                status = RpcStatusNames.TryParse(rpcStatus, out var parsed)
                    ? parsed
                    : throw PlatformException.BadRequest("rpcStatus is one of QUEUED, SENT, DELIVERED, SUCCESSFUL, TIMEOUT, EXPIRED, FAILED.");
            }

            await devices.GetAsync(caller, deviceId, ct);
            var list = await rpc.ListAsync(caller, deviceId, status, Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct);
            return Results.Ok(list.Map(c => c.ToDto()));
        }).WithName("GetPersistedRpcByDevice").WithSummary("A device's persistent calls, a page at a time; filter by rpcStatus; sort by createdTime, expirationTime, status or method.");

        api.MapDelete("/rpc/persistent/{rpcId:guid}", async (Guid rpcId, HttpContext context, RpcService rpc, CancellationToken ct) =>
        {
            await rpc.DeleteAsync(await context.CallerAsync(), rpcId, ct);
            return Results.Ok();
        }).WithName("DeletePersistedRpc").WithSummary("Deletes a persistent call; if not yet sent, it never is.");
        return app;
    }

    private static async Task<IResult> CallAsync(Guid deviceId, bool oneWay, bool plugins, HttpContext context, DeviceDirectory devices, RpcService rpc,
        IngestOptions options, TimeProvider time, CancellationToken ct)
    {
        var caller = await context.CallerAsync();
        caller.RequireWrite();
        // From the directory's cache: a thousand calls a second would otherwise each read the device's row.
        var device = await devices.GetAsync(caller.RequireTenant(), deviceId, ct) ?? throw PlatformException.NotFound("The device");
        var body = await DeviceHttpApi.ReadBodyAsync(context, options.MaxPayloadBytes, ct);
        var request = RpcRequest.Parse(body.Span, oneWay, time.GetUtcNow().ToUnixTimeMilliseconds());
        if (request.Persistent)
        {
            var call = await rpc.SubmitAsync(caller, device, request);
            return Results.Ok(new RpcIdDto(call.Id));
        }

        var outcome = await rpc.CallAsync(caller, device, request, ct);
        return outcome.Kind switch
        {
            RpcOutcomeKind.Replied => Results.Text(outcome.ReplyJson ?? "{}", "application/json"),
            RpcOutcomeKind.Delivered => Results.Ok(),
            RpcOutcomeKind.NotConnected => plugins
                ? ApiErrors.Problem(409, 2, "The device is not connected: no MQTT connection subscribed to RPC, no HTTP long poll and no gateway reaches it.")
                : ApiErrors.Problem(504, 2, "The device is not connected: no MQTT connection subscribed to RPC, no HTTP long poll and no gateway reaches it."),
            _ => ApiErrors.Problem(plugins ? 408 : 504, 2, oneWay
                ? $"The device did not receive the command within {request.TimeoutMs} ms."
                : $"The device did not answer within {request.TimeoutMs} ms."),
        };
    }

    public static RpcDto ToDto(this PersistentRpc c) => new(
        new EntityIdDto("RPC", c.Id), c.CreatedTime, new EntityIdDto("TENANT", c.TenantId), new EntityIdDto("DEVICE", c.DeviceId), c.ExpirationTime,
        new RpcRequestDto(c.Id, c.RequestId, c.OneWay, c.ExpirationTime, c.TimeoutMs, new RpcBodyDto(c.Method, c.ParamsJson), true, c.Retries),
        c.ResponseJson is null ? null : JsonNode.Parse(c.ResponseJson), c.Status.Name(), c.Attempts,
        c.AdditionalInfoJson is null ? null : JsonNode.Parse(c.AdditionalInfoJson));
}
