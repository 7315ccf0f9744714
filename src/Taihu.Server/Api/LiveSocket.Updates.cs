using System.Diagnostics;
using System.Text.Json;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

/// <summary>The frames a live socket sends, and its subscriptions, which the live feed calls.</summary>
internal sealed partial class LiveSocket
{
    /// <summary>
    /// ThingsBoard's update: <c>{"subscriptionId","errorCode","errorMsg","data":{"key":[[ts,"value"]]},"latestValues":{"key":ts}}</c>,
    /// values as strings as ThingsBoard sends them, each key's points in ascending time (points of one key and time
    /// in the order they were committed). Sorts <paramref name="points"/> in place.
    /// </summary>
    private static void Write(Utf8JsonWriter writer, int cmdId, int errorCode, string? errorMsg, Span<PendingPoint> points)
    {
        writer.WriteStartObject();
        writer.WriteNumber(SubscriptionIdName, cmdId);
        writer.WriteNumber(ErrorCodeName, errorCode);
        if (errorMsg is null)
        {
            writer.WriteNull(ErrorMsgName);
        }
        else
        {
            writer.WriteString(ErrorMsgName, errorMsg);
        }

        if (points.Length > 1)
        {
            points.Sort(static (a, b) => PendingPoint.Compare(a, b));
        }

        writer.WriteStartObject(DataName);
        for (var i = 0; i < points.Length;)
        {
            var key = points[i].Point.Key;
            writer.WriteStartArray(key);
            for (; i < points.Length && points[i].Point.Key == key; i++)
            {
                writer.WriteStartArray();
                writer.WriteNumberValue(points[i].Point.Ts);
                WriteValueAsString(writer, points[i].Point.Value);
                writer.WriteEndArray();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndObject();
        writer.WriteStartObject(LatestValuesName);
        for (var i = 0; i < points.Length; i++)
        {
            // Sorted by key then time: the last point of each key is its latest.
            if (i + 1 == points.Length || points[i + 1].Point.Key != points[i].Point.Key)
            {
                writer.WriteNumber(points[i].Point.Key, points[i].Point.Ts);
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

    /// <summary>A point of a frame, with its place in the order the points were committed.</summary>
    private readonly record struct PendingPoint(TelemetryPoint Point, int Order)
    {
        /// <summary>By key, then time, then the order of commit: a stable sort, so a key's points stay in order.</summary>
        public static int Compare(in PendingPoint a, in PendingPoint b)
        {
            var byKey = string.CompareOrdinal(a.Point.Key, b.Point.Key);
            if (byKey != 0)
            {
                return byKey;
            }

            var byTs = a.Point.Ts.CompareTo(b.Point.Ts);
            return byTs != 0 ? byTs : a.Order.CompareTo(b.Order);
        }
    }

    /// <summary>A frame to send: an update of a subscription (or a one-off answer), or an error.</summary>
    /// <remarks>
    /// An alarm frame has an UpdateType (its cmdUpdateType); with Alarms and no Changed it is a refresh that the send
    /// loop reads. <paramref name="Merged"/> marks a subscription's changes waiting to be sent: the send loop takes
    /// them all from the subscription when it gets to it (<see cref="Subscription.TakePending"/>), as one frame.
    /// </remarks>
    private sealed record Outbound(Subscription? Subscription, int CmdId, int ErrorCode, string? ErrorMsg, TelemetryPoint[]? Points,
        AlarmSubscription? Alarms = null, Taihu.Platform.Alarms.AlarmInfo? Changed = null, string? UpdateType = null, bool Merged = false);

    /// <summary>One subscription of this socket to one device; called by the feed on the committing thread.</summary>
    /// <remarks>
    /// Design: committed changes are not queued one by one. The subscription adds the points it wants to its
    /// pending list and queues one marker for the socket when the list was empty; the send loop takes the whole
    /// list when it reaches the marker and sends it as one frame. So a socket that keeps up sends a frame per
    /// commit of its device, and one that falls behind sends fewer, larger frames with every point, in order,
    /// instead of a queue of frames (each a wake-up and a message). Nothing is allocated per change: the list is
    /// reused. Until the snapshot is released nothing is queued, so it always goes first.
    /// </remarks>
    private sealed class Subscription(LiveSocket socket, LiveCommand command, long deviceSeq) : ILiveSubscriber
    {
        private const int KeptCapacity = 4096;
        private readonly Lock _gate = new();
        private Outbound? _marker;
        private List<PendingPoint> _pending = [];
        private int _pendingUpdates;
        private long _waitingSince;
        private bool _queued;
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
            var end = start + count;
            while (start < end && keys is not null && !keys.Contains(points[start].Point.Key))
            {
                start++;
            }

            if (start == end)
            {
                return;
            }

            bool queue;
            lock (_gate)
            {
                if (!Counted())
                {
                    return;
                }

                Waiting();
                for (var i = start; i < end; i++)
                {
                    if (keys is null || keys.Contains(points[i].Point.Key))
                    {
                        _pending.Add(new PendingPoint(points[i].Point, _pending.Count));
                    }
                }

                queue = MarkerDue();
            }

            if (queue)
            {
                socket.EnqueueMarker(_marker!);
            }
        }

        public void OnAttributes(AttributeScope scope, IReadOnlyList<AttributeEntry> entries)
        {
            if (command.Kind != LiveCommandKind.Attributes || Removed || (command.Scope is { } only && only != scope))
            {
                return;
            }

            var keys = command.Keys;
            var wanted = false;
            foreach (var entry in entries)
            {
                wanted |= keys is null || keys.Contains(entry.Key);
            }

            if (!wanted)
            {
                return;
            }

            bool queue;
            lock (_gate)
            {
                if (!Counted())
                {
                    return;
                }

                Waiting();
                foreach (var entry in entries)
                {
                    if (keys is null || keys.Contains(entry.Key))
                    {
                        _pending.Add(new PendingPoint(new TelemetryPoint(entry.Key, entry.LastUpdateTs, entry.Value), _pending.Count));
                    }
                }

                queue = MarkerDue();
            }

            if (queue)
            {
                socket.EnqueueMarker(_marker!);
            }
        }

        /// <summary>Queues the snapshot, then what was committed while it was read, and from now on each change.</summary>
        public void Release(Outbound snapshot)
        {
            lock (_gate)
            {
                socket.Enqueue(snapshot);
                _ready = true;
                if (_pending.Count > 0 && MarkerDue())
                {
                    socket.EnqueueMarker(_marker!);
                }
            }
        }

        /// <summary>
        /// The send loop's: moves every point waiting, in the order committed, into <paramref name="into"/>; gives how
        /// many changes they came in, and when the oldest of them was handed over (a <see cref="Stopwatch"/> timestamp).
        /// </summary>
        public int TakePending(List<PendingPoint> into, out long waitingSince)
        {
            lock (_gate)
            {
                waitingSince = _waitingSince;
                _waitingSince = 0;
                into.AddRange(_pending);
                _pending.Clear();
                if (_pending.Capacity > KeptCapacity)
                {
                    _pending = []; // a burst's list is let go rather than kept for the subscription's life
                }

                var updates = _pendingUpdates;
                _pendingUpdates = 0;
                _queued = false;
                return updates;
            }
        }

        /// <summary>
        /// Under the lock, before a change's points are added: counts it against the socket's limit (every change
        /// counts, merged or not, so a client that reads too slowly is closed as before and what waits for it stays
        /// bounded); false when it is not to be kept (too slow: dropped and counted; or closing).
        /// </summary>
        private bool Counted()
        {
            if (!socket.CountWaiting(1))
            {
                return false;
            }

            _pendingUpdates++;
            return true;
        }

        /// <summary>
        /// Under the lock, before a change's points are added: the feed calls right after the commit (on a cluster
        /// node, once the node has read the row from the shared log), so the first waiting point's time is when its
        /// commit was handed over, and the frame that takes it records how long it waited.
        /// </summary>
        private void Waiting()
        {
            if (_pending.Count == 0)
            {
                _waitingSince = Stopwatch.GetTimestamp();
            }
        }

        /// <summary>Under the lock, after points were added: true when the marker is to be queued (once, after the snapshot).</summary>
        private bool MarkerDue()
        {
            if (!_ready || _queued)
            {
                return false;
            }

            _queued = true;
            _marker ??= new Outbound(this, command.CmdId, LiveErrorCode.None, null, null, Merged: true);
            return true;
        }
    }
}
