using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// Telemetry and attributes of devices: what devices send (over MQTT or HTTP) and what operators read and write
/// through the management API. Management calls take the caller and stay inside the caller's tenant.
/// </summary>
public sealed class DeviceDataService(
    IDeviceStore devices, ITelemetryStore telemetry, IAttributeStore attributes, TelemetryIngest ingest, DeviceMessaging messaging,
    IAuditLog audit, TimeProvider time, IOptions<IngestOptions> ingestOptions)
{
    private readonly long _earliestTs = ingestOptions.Value.EarliestTimestamp.ToUnixTimeMilliseconds();
    private readonly long _maxFutureSkewMs = (long)ingestOptions.Value.MaxFutureSkew.TotalMilliseconds;

    /// <summary>Largest raw history page.</summary>
    public const int MaxHistoryLimit = 10_000;

    /// <summary>
    /// Parses and queues a telemetry payload of a device; completes when stored (AckAfterCommit) or queued.
    /// A bad payload throws <see cref="PayloadException"/> and nothing of it is kept.
    /// </summary>
    public ValueTask SubmitTelemetryAsync(Device device, ReadOnlySpan<byte> payload, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var request = ingest.Rent();
        try
        {
            request.DeviceSeq = device.Seq;
            request.TenantId = device.TenantId;
            ParseTelemetry(payload, time.GetUtcNow().ToUnixTimeMilliseconds(), request.Points);
        }
        catch
        {
            ingest.Return(request);
            throw;
        }

        return ingest.SubmitAsync(request, cancellationToken);
    }

    /// <summary>
    /// Parses a telemetry payload (<see cref="TelemetryParser.ParseTelemetry"/>) and refuses it whole when a point's
    /// timestamp lies outside the accepted window (<see cref="IngestOptions.EarliestTimestamp"/> to
    /// <see cref="IngestOptions.MaxFutureSkew"/> past <paramref name="now"/>).
    /// </summary>
    public void ParseTelemetry(ReadOnlySpan<byte> payload, long now, List<TelemetryPoint> points)
    {
        var start = points.Count;
        TelemetryParser.ParseTelemetry(payload, now, points);
        var latest = now + _maxFutureSkewMs;
        for (var i = start; i < points.Count; i++)
        {
            var ts = points[i].Ts;
            if (ts < _earliestTs || ts > latest)
            {
                points.RemoveRange(start, points.Count - start);
                ThrowOutsideWindow(ts, now);
            }
        }
    }

    [DoesNotReturn]
    private void ThrowOutsideWindow(long ts, long now) =>
        throw new PayloadException(ts < _earliestTs
            ? $"\"ts\" {ts} is before {DateTimeOffset.FromUnixTimeMilliseconds(_earliestTs):yyyy-MM-dd}, the earliest timestamp accepted (milliseconds since 1970-01-01 UTC)."
            : $"\"ts\" {ts} is more than {_maxFutureSkewMs / 1000} s ahead of the server's clock ({now}).");

    /// <summary>Queues points already parsed (a gateway's devices); completes as <see cref="SubmitTelemetryAsync"/> does.</summary>
    public ValueTask SubmitPointsAsync(Device device, List<TelemetryPoint> points, int start, int count, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var request = ingest.Rent();
        request.DeviceSeq = device.Seq;
        request.TenantId = device.TenantId;
        request.Points.AddRange(points.GetRange(start, count));
        return ingest.SubmitAsync(request, cancellationToken);
    }

    /// <summary>Stores client attributes a device published (<c>{"k":v}</c>).</summary>
    public async Task SaveClientAttributesAsync(long deviceSeq, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        var entries = new List<AttributeEntry>();
        TelemetryParser.ParseAttributes(payload.Span, time.GetUtcNow().ToUnixTimeMilliseconds(), entries);
        await attributes.SaveAsync(deviceSeq, AttributeScope.Client, entries, cancellationToken);
    }

    /// <summary>ThingsBoard's answer to an attribute request: <c>{"client":{..},"shared":{..}}</c>.</summary>
    public async Task<byte[]> AttributeResponseAsync(long deviceSeq, string? clientKeys, string? sharedKeys, CancellationToken cancellationToken = default)
    {
        // No keys at all asks for everything; naming only one scope asks for that scope only.
        var all = clientKeys is null && sharedKeys is null;
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            if (all || clientKeys is not null)
            {
                writer.WritePropertyName("client");
                DeviceMessaging.WriteEntries(writer, await attributes.GetAsync(deviceSeq, AttributeScope.Client, SplitKeys(clientKeys), cancellationToken));
            }

            if (all || sharedKeys is not null)
            {
                writer.WritePropertyName("shared");
                DeviceMessaging.WriteEntries(writer, await attributes.GetAsync(deviceSeq, AttributeScope.Shared, SplitKeys(sharedKeys), cancellationToken));
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Keys from ThingsBoard's comma-separated list; null or empty means all.</summary>
    public static HashSet<string>? SplitKeys(string? keys)
    {
        if (string.IsNullOrWhiteSpace(keys))
        {
            return null;
        }

        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var key in keys.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            set.Add(key);
        }

        return set;
    }

    public async Task<IReadOnlyList<TelemetryPoint>> GetLatestAsync(Caller caller, Guid deviceId, string? keys, CancellationToken cancellationToken = default)
    {
        var device = await DeviceOf(caller, deviceId, cancellationToken);
        return await telemetry.GetLatestAsync(device.Seq, SplitKeys(keys), cancellationToken);
    }

    public async Task<IReadOnlyList<string>> GetKeysAsync(Caller caller, Guid deviceId, CancellationToken cancellationToken = default) =>
        await telemetry.GetKeysAsync((await DeviceOf(caller, deviceId, cancellationToken)).Seq, cancellationToken);

    /// <summary>
    /// One page of a key's raw history in ascending time: at most <paramref name="size"/> points from
    /// <paramref name="fromTs"/>, plus the first point of the next page when there is one (the caller's cursor).
    /// </summary>
    public async Task<IReadOnlyList<TelemetryPoint>> GetHistoryPageAsync(
        Caller caller, Guid deviceId, string key, long fromTs, long endTs, int size, CancellationToken cancellationToken = default)
    {
        var device = await DeviceOf(caller, deviceId, cancellationToken);
        if (endTs < fromTs)
        {
            throw PlatformException.BadRequest("endTs must not be before startTs.");
        }

        return await telemetry.GetHistoryAsync(device.Seq, key, fromTs, endTs, Math.Clamp(size, 1, MaxHistoryLimit) + 1, SortOrder.Ascending, cancellationToken);
    }

    /// <summary>Raw history or aggregates of several keys, as ThingsBoard's timeseries call returns them.</summary>
    public async Task<Dictionary<string, IReadOnlyList<TelemetryPoint>>> GetTimeseriesAsync(
        Caller caller, Guid deviceId, string keys, long startTs, long endTs, long interval, Aggregation aggregation, int limit, SortOrder order,
        CancellationToken cancellationToken = default)
    {
        var device = await DeviceOf(caller, deviceId, cancellationToken);
        if (endTs < startTs)
        {
            throw PlatformException.BadRequest("endTs must not be before startTs.");
        }

        var result = new Dictionary<string, IReadOnlyList<TelemetryPoint>>(StringComparer.Ordinal);
        foreach (var key in SplitKeys(keys) ?? throw PlatformException.BadRequest("keys is required: a comma-separated list of telemetry keys."))
        {
            var points = aggregation == Aggregation.None
                ? await telemetry.GetHistoryAsync(device.Seq, key, startTs, endTs, Math.Clamp(limit, 1, MaxHistoryLimit), order, cancellationToken)
                : await telemetry.GetAggregatesAsync(device.Seq, key, startTs, endTs, interval > 0 ? interval : endTs - startTs, aggregation, cancellationToken);
            if (points.Count > 0)
            {
                result[key] = points;
            }
        }

        return result;
    }

    public async Task<long> DeleteTimeseriesAsync(Caller caller, Guid deviceId, string keys, long startTs, long endTs, CancellationToken cancellationToken = default)
    {
        caller.RequireWrite();
        var device = await DeviceOf(caller, deviceId, cancellationToken);
        var deleted = await telemetry.DeleteAsync(device.Seq, SplitKeys(keys) ?? throw PlatformException.BadRequest("keys is required."), startTs, endTs, cancellationToken);
        await audit.WriteAsync(caller, "TIMESERIES_DELETED", "DEVICE", deviceId.ToString(), device.Name, cancellationToken: cancellationToken);
        return deleted;
    }

    public async Task<IReadOnlyList<AttributeEntry>> GetAttributesAsync(Caller caller, Guid deviceId, AttributeScope scope, string? keys, CancellationToken cancellationToken = default)
    {
        var device = await DeviceOf(caller, deviceId, cancellationToken);
        return await attributes.GetAsync(device.Seq, scope, SplitKeys(keys), cancellationToken);
    }

    /// <summary>Writes server or shared attributes; shared ones are pushed to the device at once.</summary>
    public async Task SaveAttributesAsync(Caller caller, Guid deviceId, AttributeScope scope, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        caller.RequireWrite();
        if (scope == AttributeScope.Client)
        {
            throw PlatformException.BadRequest("Client attributes are written by the device; write SERVER_SCOPE or SHARED_SCOPE.");
        }

        var device = await DeviceOf(caller, deviceId, cancellationToken);
        var entries = new List<AttributeEntry>();
        try
        {
            TelemetryParser.ParseAttributes(payload.Span, time.GetUtcNow().ToUnixTimeMilliseconds(), entries);
        }
        catch (PayloadException e)
        {
            throw PlatformException.BadRequest(e.Message);
        }

        await attributes.SaveAsync(device.Seq, scope, entries, cancellationToken);
        await audit.WriteAsync(caller, "ATTRIBUTES_UPDATED", "DEVICE", deviceId.ToString(), device.Name, cancellationToken: cancellationToken);
        if (scope == AttributeScope.Shared)
        {
            await PushSharedAsync(device, entries, cancellationToken);
        }
    }

    public async Task DeleteAttributesAsync(Caller caller, Guid deviceId, AttributeScope scope, string keys, CancellationToken cancellationToken = default)
    {
        caller.RequireWrite();
        var device = await DeviceOf(caller, deviceId, cancellationToken);
        await attributes.DeleteAsync(device.Seq, scope, SplitKeys(keys) ?? throw PlatformException.BadRequest("keys is required."), cancellationToken);
        await audit.WriteAsync(caller, "ATTRIBUTES_DELETED", "DEVICE", deviceId.ToString(), device.Name, cancellationToken: cancellationToken);
    }

    private async Task PushSharedAsync(Device device, List<AttributeEntry> entries, CancellationToken cancellationToken)
    {
        string? nameForGateway = null;
        if (device.GatewayId is { } gatewayId && await devices.GetDeviceAsync(device.TenantId, gatewayId, cancellationToken) is not null)
        {
            nameForGateway = device.Name;
        }

        messaging.SharedAttributesChanged(device, nameForGateway, entries);
    }

    /// <summary>
    /// One scope's attributes of several devices the caller has listed (a page of the device list) in one query, by
    /// device id. Devices of another tenant are refused, as a single read would refuse them.
    /// </summary>
    public async Task<Dictionary<Guid, List<AttributeEntry>>> GetAttributesOfAsync(Caller caller, IReadOnlyList<Device> listed, AttributeScope scope, string? keys,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(listed);
        var tenant = caller.RequireTenant();
        var bySeq = new Dictionary<long, Guid>(listed.Count);
        foreach (var device in listed)
        {
            if (device.TenantId != tenant)
            {
                throw PlatformException.NotFound("The device");
            }

            bySeq[device.Seq] = device.Id;
        }

        var found = await attributes.GetManyAsync(bySeq.Keys, scope, SplitKeys(keys), cancellationToken);
        var result = new Dictionary<Guid, List<AttributeEntry>>(found.Count);
        foreach (var (seq, entries) in found)
        {
            result[bySeq[seq]] = entries;
        }

        return result;
    }

    /// <summary>How many of the caller's tenant's devices are active (online) now.</summary>
    public Task<long> CountActiveDevicesAsync(Caller caller, CancellationToken cancellationToken = default) =>
        attributes.CountActiveDevicesAsync(caller.RequireTenant(), cancellationToken);

    private async Task<Device> DeviceOf(Caller caller, Guid deviceId, CancellationToken cancellationToken) =>
        await devices.GetDeviceAsync(caller.RequireTenant(), deviceId, cancellationToken) ?? throw PlatformException.NotFound("The device");
}
