using System.Text.Json;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

/// <summary>The frames a live socket sends, and its subscriptions, which the live feed calls.</summary>
internal sealed partial class LiveSocket
{
    /// <summary>
    /// ThingsBoard's update: <c>{"subscriptionId","errorCode","errorMsg","data":{"key":[[ts,"value"]]},"latestValues":{"key":ts}}</c>,
    /// values as strings as ThingsBoard sends them, each key's points in ascending time.
    /// </summary>
    private static void Write(Utf8JsonWriter writer, Outbound item)
    {
        writer.WriteStartObject();
        writer.WriteNumber(SubscriptionIdName, item.CmdId);
        writer.WriteNumber(ErrorCodeName, item.ErrorCode);
        if (item.ErrorMsg is null)
        {
            writer.WriteNull(ErrorMsgName);
        }
        else
        {
            writer.WriteString(ErrorMsgName, item.ErrorMsg);
        }

        var points = item.Points ?? [];
        if (points.Length > 1)
        {
            Array.Sort(points, static (a, b) => a.Key == b.Key ? a.Ts.CompareTo(b.Ts) : string.CompareOrdinal(a.Key, b.Key));
        }

        writer.WriteStartObject(DataName);
        for (var i = 0; i < points.Length;)
        {
            var key = points[i].Key;
            writer.WriteStartArray(key);
            for (; i < points.Length && points[i].Key == key; i++)
            {
                writer.WriteStartArray();
                writer.WriteNumberValue(points[i].Ts);
                WriteValueAsString(writer, points[i].Value);
                writer.WriteEndArray();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndObject();
        writer.WriteStartObject(LatestValuesName);
        for (var i = 0; i < points.Length; i++)
        {
            // Sorted by key then time: the last point of each key is its latest.
            if (i + 1 == points.Length || points[i + 1].Key != points[i].Key)
            {
                writer.WriteNumber(points[i].Key, points[i].Ts);
            }
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    /// <summary>A value as ThingsBoard's updates carry it, a string, formatted on the stack rather than into a new string.</summary>
    private static void WriteValueAsString(Utf8JsonWriter writer, KvValue value)
    {
        Span<char> text = stackalloc char[32];
        switch (value.Type)
        {
            case DataType.Boolean:
                writer.WriteStringValue(value.Boolean ? "true" : "false");
                break;
            case DataType.Long when value.Long.TryFormat(text, out var written, default, System.Globalization.CultureInfo.InvariantCulture):
                writer.WriteStringValue(text[..written]);
                break;
            case DataType.Double when value.Double.TryFormat(text, out var written, "R", System.Globalization.CultureInfo.InvariantCulture):
                writer.WriteStringValue(text[..written]);
                break;
            case DataType.String or DataType.Json:
                writer.WriteStringValue(value.Text);
                break;
            default:
                writer.WriteStringValue(value.ToString());
                break;
        }
    }

    /// <summary>A frame to send: an update of a subscription (or a one-off answer), or an error.</summary>
    /// <remarks>An alarm frame has an UpdateType (its cmdUpdateType); with Alarms and no Changed it is a refresh that the send loop reads.</remarks>
    private sealed record Outbound(Subscription? Subscription, int CmdId, int ErrorCode, string? ErrorMsg, TelemetryPoint[]? Points,
        AlarmSubscription? Alarms = null, Taihu.Platform.Alarms.AlarmInfo? Changed = null, string? UpdateType = null);

    /// <summary>One subscription of this socket to one device; called by the feed on the committing thread.</summary>
    private sealed class Subscription(LiveSocket socket, LiveCommand command, long deviceSeq) : ILiveSubscriber
    {
        private readonly Lock _gate = new();
        private List<Outbound>? _held;
        private bool _ready;

        public long DeviceSeq => deviceSeq;

        public int CmdId => command.CmdId;

        public volatile bool Removed;

        public void OnTelemetry(List<DevicePoint> points, int start, int count)
        {
            if (command.Kind != LiveCommandKind.Timeseries || Removed)
            {
                return;
            }

            var keys = command.Keys;
            var wanted = 0;
            for (var i = start; i < start + count; i++)
            {
                if (keys is null || keys.Contains(points[i].Point.Key))
                {
                    wanted++;
                }
            }

            if (wanted == 0)
            {
                return;
            }

            var copy = new TelemetryPoint[wanted];
            var n = 0;
            for (var i = start; i < start + count; i++)
            {
                if (keys is null || keys.Contains(points[i].Point.Key))
                {
                    copy[n++] = points[i].Point;
                }
            }

            Deliver(new Outbound(this, command.CmdId, LiveErrorCode.None, null, copy));
        }

        public void OnAttributes(AttributeScope scope, IReadOnlyList<AttributeEntry> entries)
        {
            if (command.Kind != LiveCommandKind.Attributes || Removed || (command.Scope is { } only && only != scope))
            {
                return;
            }

            var keys = command.Keys;
            List<TelemetryPoint>? wanted = null;
            foreach (var entry in entries)
            {
                if (keys is null || keys.Contains(entry.Key))
                {
                    (wanted ??= new List<TelemetryPoint>(entries.Count)).Add(new TelemetryPoint(entry.Key, entry.LastUpdateTs, entry.Value));
                }
            }

            if (wanted is not null)
            {
                Deliver(new Outbound(this, command.CmdId, LiveErrorCode.None, null, [.. wanted]));
            }
        }

        /// <summary>Queues the snapshot, then what was committed while it was read, and from now on each change.</summary>
        public void Release(Outbound snapshot)
        {
            lock (_gate)
            {
                socket.Enqueue(snapshot);
                if (_held is not null)
                {
                    foreach (var held in _held)
                    {
                        socket.Enqueue(held);
                    }
                }

                _held = null;
                _ready = true;
            }
        }

        private void Deliver(Outbound update)
        {
            lock (_gate)
            {
                if (!_ready)
                {
                    if ((_held ??= []).Count >= socket._options.OutboundQueueLimit)
                    {
                        socket.CloseSlow();
                        return;
                    }

                    _held.Add(update);
                    return;
                }
            }

            socket.Enqueue(update);
        }
    }
}
