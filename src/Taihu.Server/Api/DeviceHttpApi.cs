using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Options;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;
using Taihu.Platform.Security;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

/// <summary>
/// ThingsBoard's HTTP device API, unchanged: <c>/api/v1/{token}/telemetry</c>, <c>/attributes</c>,
/// <c>/attributes/updates</c> (long poll) and <c>/api/v1/provision</c>. With AckAfterCommit the 200 for telemetry
/// goes out only after the point is committed.
/// </summary>
public static class DeviceHttpApi
{
    public static IEndpointRouteBuilder MapDeviceHttpApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1").WithTags("Device HTTP API");
        api.MapPost("/{token}/telemetry", (string token, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices, DeviceDataService data,
            ConnectivityTracker connectivity, IOptions<IngestOptions> options, CancellationToken ct) =>
            ReceiveAsync(token, context, limiter, devices, connectivity, options.Value, (device, body) => data.SubmitTelemetryAsync(device, body.Span, ct), ct))
            .WithBodyLimit(BodyLimit.DevicePayload).WithName("DevicePostTelemetry").WithSummary("A device posts telemetry: {\"k\":v}, {\"ts\":..,\"values\":{..}} or an array of those.");

        api.MapPost("/{token}/attributes", (string token, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices, DeviceDataService data,
            ConnectivityTracker connectivity, IOptions<IngestOptions> options, CancellationToken ct) =>
            ReceiveAsync(token, context, limiter, devices, connectivity, options.Value, (device, body) => new ValueTask(data.SaveClientAttributesAsync(device.Seq, body, ct)), ct))
            .WithBodyLimit(BodyLimit.DevicePayload).WithName("DevicePostAttributes").WithSummary("A device posts its client attributes: {\"k\":v}.");

        api.MapGet("/{token}/attributes", async (string token, string? clientKeys, string? sharedKeys, HttpContext context, DeviceAuthenticationLimiter limiter,
            IDeviceStore devices, DeviceDataService data, CancellationToken ct) =>
        {
            var device = await DeviceAsync(context, limiter, devices, token, ct);
            return Results.Bytes(await data.AttributeResponseAsync(device.Seq, clientKeys, sharedKeys, ct), "application/json");
        }).WithName("DeviceGetAttributes").WithSummary("A device reads its client and shared attributes: {\"client\":{..},\"shared\":{..}}.");

        api.MapGet("/{token}/attributes/updates", async (string token, long? timeout, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices,
            DeviceMessaging messaging, TimeProvider time, CancellationToken ct) =>
        {
            var device = await DeviceAsync(context, limiter, devices, token, ct);
            var wait = TimeSpan.FromMilliseconds(Math.Clamp(timeout ?? 0, 0, 3_600_000) is > 0 and var ms ? ms : 60_000);
            var update = await messaging.WaitForUpdateAsync(device.Id, wait, time, ct);
            return update is null ? Results.StatusCode(StatusCodes.Status408RequestTimeout) : Results.Bytes(update, "application/json");
        }).WithName("DeviceAttributeUpdates").WithSummary("Long poll: answers with the next shared-attribute update, or 408 when timeout (ms) passes.");

        api.MapGet("/{token}/rpc", async (string token, long? timeout, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices,
            RpcDeviceLink link, RpcService rpc, ConnectivityTracker connectivity, TimeProvider time, CancellationToken ct) =>
        {
            var device = await DeviceAsync(context, limiter, devices, token, ct);
            connectivity.Activity(device);
            var wait = TimeSpan.FromMilliseconds(Math.Clamp(timeout ?? 0, 0, 3_600_000) is > 0 and var ms ? ms : 60_000);
            // Once the poll is registered, persistent calls that wait for the device are sent to it.
            var command = await link.WaitForCommandAsync(device.Id, wait, time, () => rpc.Reachable(device), ct);
            if (command is null)
            {
                return Results.StatusCode(StatusCodes.Status408RequestTimeout);
            }

            // Delivered once written: the body is sent and flushed before the call is told.
            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync(command.Payload, ct);
            await context.Response.CompleteAsync();
            command.Listener.OnDelivered(Taihu.Mqtt.QoS.AtMostOnce);
            return Results.Empty;
        }).WithName("DeviceRpcPoll").WithSummary("Long poll: the next server-side RPC command {\"id\",\"method\",\"params\"}, or 408 when timeout (ms) passes.");

        api.MapPost("/{token}/rpc/{requestId}", async (string token, string requestId, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices,
            RpcService rpc, ConnectivityTracker connectivity, IOptions<IngestOptions> options, CancellationToken ct) =>
        {
            var device = await DeviceAsync(context, limiter, devices, token, ct);
            var body = await ReadBodyAsync(context, options.Value.MaxPayloadBytes, ct);
            connectivity.Activity(device);
            if (!int.TryParse(requestId, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) || id <= 0)
            {
                throw PlatformException.BadRequest($"The RPC request id is a positive whole number, as in the command received; got '{requestId}'.");
            }

            return await rpc.ReplyAsync(device, id, body.Span) switch
            {
                RpcReplyResult.Accepted => Results.Ok(),
                RpcReplyResult.Finished => throw PlatformException.Conflict($"RPC call {id} of this device has already ended (answered, timed out, expired or failed); the reply was not kept."),
                _ => throw PlatformException.NotFound($"RPC call {id} of this device"),
            };
        }).WithBodyLimit(BodyLimit.DevicePayload).WithName("DeviceRpcReply").WithSummary("A device replies to server-side RPC command {requestId}.");

        api.MapPost("/{token}/rpc", async (string token, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices,
            ConnectivityTracker connectivity, IOptions<IngestOptions> options, ClientRpcRequests clientRpc, CancellationToken ct) =>
        {
            var device = await DeviceAsync(context, limiter, devices, token, ct);
            var body = await ReadBodyAsync(context, options.Value.MaxPayloadBytes, ct);
            connectivity.Activity(device);
            var answer = await clientRpc.RequestAsync(device, null, body, ct);
            return Results.Bytes(await answer.WaitAsync(ct), "application/json");
        }).WithBodyLimit(BodyLimit.DevicePayload).WithName("DeviceClientRpc")
            .WithSummary("Client-side RPC: {\"method\":\"getCurrentTime\"} answers {\"time\":ms}; another method is answered by a webhook integration with answerRpc, or else with an error.");

        api.MapPost("/provision", async (HttpContext context, ProvisioningService provisioning, IOptions<SecurityOptions> security, CancellationToken ct) =>
        {
            var body = await ReadBodyAsync(context, security.Value.MaxUnauthenticatedRequestBytes, ct);
            try
            {
                return Results.Bytes(await provisioning.ProvisionAsync(body, SourceAddress.Key(context.Connection.RemoteIpAddress), ct), "application/json");
            }
            catch (PayloadException e)
            {
                throw PlatformException.BadRequest(e.Message);
            }
        }).WithBodyLimit(BodyLimit.Unauthenticated).WithName("DeviceProvision").WithSummary("A device asks for credentials with its profile's provision key and secret.");
        return app;
    }

    /// <summary>What a device posts: its token checked, the body read within the limit, stored; a bad payload is a 400.</summary>
    private static async Task<IResult> ReceiveAsync(string token, HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices,
        ConnectivityTracker connectivity, IngestOptions options, Func<Device, ReadOnlyMemory<byte>, ValueTask> store, CancellationToken ct)
    {
        var device = await DeviceAsync(context, limiter, devices, token, ct);
        var body = await ReadBodyAsync(context, options.MaxPayloadBytes, ct);
        connectivity.Activity(device);
        try
        {
            await store(device, body);
        }
        catch (PayloadException e)
        {
            throw PlatformException.BadRequest(e.Message);
        }

        return Results.Ok();
    }

    /// <summary>The device of the token, checked within the source address's allowance of failures (429 beyond it).</summary>
    private static async Task<Device> DeviceAsync(HttpContext context, DeviceAuthenticationLimiter limiter, IDeviceStore devices, string token, CancellationToken ct)
    {
        var address = await limiter.AcquireOrThrowAsync(context.Connection.RemoteIpAddress, ct);
        var outcome = AttemptOutcome.NotChecked;
        try
        {
            var found = await devices.FindByLookupAsync(DeviceService.TokenLookup(token), ct);
            outcome = found is { Type: CredentialsType.AccessToken } ? AttemptOutcome.Succeeded : AttemptOutcome.Failed;
            return outcome == AttemptOutcome.Succeeded ? found!.Device : throw PlatformException.Unauthorized("Unknown device access token.");
        }
        finally
        {
            limiter.Release(address, outcome);
        }
    }

    /// <summary>Reads the whole request body, refusing one over <paramref name="limit"/> bytes with 413.</summary>
    public static async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpContext context, int limit, CancellationToken ct)
    {
        if (context.Request.ContentLength > limit)
        {
            throw new PlatformException(413, 30, $"The payload is larger than {limit} bytes.");
        }

        var reader = context.Request.BodyReader;
        while (true)
        {
            var result = await reader.ReadAsync(ct);
            if (result.Buffer.Length > limit)
            {
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                throw new PlatformException(413, 30, $"The payload is larger than {limit} bytes.");
            }

            if (result.IsCompleted)
            {
                var bytes = result.Buffer.ToArray();
                reader.AdvanceTo(result.Buffer.End);
                return bytes;
            }

            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }
}
