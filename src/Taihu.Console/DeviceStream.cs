using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.WebConsole;

/// <summary>
/// The device page's live values as server-sent events (<c>GET /console/devices/{id}/stream</c>): the device's
/// latest values first, then every batch of its points as the ingest commits it (<see cref="LiveFeed"/>), so a value
/// shows on the page as soon as it is stored rather than at the next poll. Each event's data is a JSON array of
/// <c>{key, ts, value}</c>. Nothing goes through a Blazor circuit.
/// </summary>
/// <remarks>
/// The feed calls <see cref="OnTelemetry"/> on the ingest writer's thread: the points are copied into a bounded
/// queue and the call returns. A page that cannot keep up loses its oldest batches, never the writer's time; the
/// latest value of a key still arrives with the next batch that carries it. A comment line every 15 seconds keeps
/// proxies from closing an idle stream and finds a browser that has gone; the session is checked again as often.
/// </remarks>
internal sealed class DeviceStream : ILiveSubscriber
{
    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);
    private static readonly byte[] KeepAliveLine = ": keep-alive\n\n"u8.ToArray();

    private readonly Channel<TelemetryPoint[]> _batches = Channel.CreateBounded<TelemetryPoint[]>(
        new BoundedChannelOptions(64) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true, SingleWriter = false });

    private DeviceStream(long deviceSeq) => DeviceSeq = deviceSeq;

    public long DeviceSeq { get; }

    public void OnTelemetry(List<DevicePoint> points, int start, int count)
    {
        var copy = new TelemetryPoint[count];
        for (var i = 0; i < count; i++)
        {
            copy[i] = points[start + i].Point;
        }

        _batches.Writer.TryWrite(copy);
    }

    public void OnAttributes(AttributeScope scope, IReadOnlyList<AttributeEntry> entries)
    {
    }

    public static async Task RunAsync(Guid id, HttpContext context, IDeviceStore devices, ITelemetryStore telemetry, LiveFeed feed, ITenantStore users, CancellationToken stopping)
    {
        if (ConsoleSession.CallerOf(context.User) is not { } caller)
        {
            await Results.Problem(statusCode: 401, detail: "Your session has ended; sign in again.").ExecuteAsync(context);
            return;
        }

        // The stream ends when the browser leaves or the server stops (an open stream must not hold up shutdown).
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        var ct = ended.Token;
        Device? device;
        try
        {
            device = await devices.GetDeviceAsync(caller.RequireTenant(), id, ct);
        }
        catch (PlatformException e)
        {
            await Results.Problem(statusCode: e.Status, detail: e.Message).ExecuteAsync(context);
            return;
        }

        if (device is null)
        {
            await Results.Problem(statusCode: 404, detail: "The device was not found.").ExecuteAsync(context);
            return;
        }

        var stream = new DeviceStream(device.Seq);
        // Registered before the latest values are read, so that nothing committed in between is missed.
        feed.Add(stream);
        try
        {
            var response = context.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no";
            var latest = await telemetry.GetLatestAsync(device.Seq, null, ct);
            await WriteAsync(response, latest, ct);
            var reader = stream._batches.Reader;
            var checkedAt = System.Diagnostics.Stopwatch.GetTimestamp();
            while (!ct.IsCancellationRequested)
            {
                // The session is checked again every 15 seconds: signing out elsewhere, the user's deletion or a new
                // password ends the stream (the browser's reconnection is then refused, with the reason shown).
                if (System.Diagnostics.Stopwatch.GetElapsedTime(checkedAt) >= KeepAlive)
                {
                    if (!await ConsoleSession.IsCurrentAsync(context.User, users, ct))
                    {
                        break;
                    }

                    checkedAt = System.Diagnostics.Stopwatch.GetTimestamp();
                }

                using var quiet = CancellationTokenSource.CreateLinkedTokenSource(ct);
                quiet.CancelAfter(KeepAlive);
                bool more;
                try
                {
                    more = await reader.WaitToReadAsync(quiet.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    await response.Body.WriteAsync(KeepAliveLine, ct);
                    await response.Body.FlushAsync(ct);
                    continue;
                }

                if (!more)
                {
                    break;
                }

                while (reader.TryRead(out var batch))
                {
                    await WriteAsync(response, batch, ct);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The browser left the page.
        }
        finally
        {
            feed.Remove(stream);
        }
    }

    private static async Task WriteAsync(HttpResponse response, IReadOnlyList<TelemetryPoint> points, CancellationToken ct)
    {
        var shown = new object[points.Count];
        for (var i = 0; i < points.Count; i++)
        {
            shown[i] = new { key = points[i].Key, ts = points[i].Ts, value = points[i].Value.ToString() };
        }

        await response.WriteAsync("data: " + JsonSerializer.Serialize(shown) + "\n\n", ct);
        await response.Body.FlushAsync(ct);
    }
}
