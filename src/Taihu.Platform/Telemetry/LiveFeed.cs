using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// A subscriber to one device's committed changes (a live WebSocket subscription). Called on the thread that
/// committed the change (the ingest writer for telemetry): take what is wanted and return at once, never block,
/// never throw.
/// </summary>
public interface ILiveSubscriber
{
    /// <summary>The device's row number whose changes this subscriber receives.</summary>
    long DeviceSeq { get; }

    /// <summary>
    /// Points of this device that a batch committed: <c>points[start..start+count]</c>. The list is the writer's
    /// and is reused after the call returns: copy what is kept.
    /// </summary>
    void OnTelemetry(List<DevicePoint> points, int start, int count);

    /// <summary>Attributes of this device that a write committed, all of one scope.</summary>
    void OnAttributes(AttributeScope scope, IReadOnlyList<AttributeEntry> entries);
}

/// <summary>
/// Fans committed changes out to live subscribers. The ingest writer calls <see cref="TelemetryCommitted"/> once
/// per batch after its transaction has committed, and the attribute store calls <see cref="AttributesCommitted"/>
/// after each write: nothing is pushed that a reader of the store could not see.
/// </summary>
/// <remarks>
/// Design: subscribers are kept per device in copy-on-write arrays, so the writer reads them without a lock and
/// without allocating; with no subscriber at all a batch costs one read of a counter. A batch's points are grouped
/// by device already (one message's points are adjacent), so each subscriber is called once per run of its device
/// in the batch, not once per point. What a subscriber does with the points (filter by key, queue a frame for its
/// socket) is its own business and must not block the writer: a socket that cannot keep up is the socket's problem.
/// </remarks>
public sealed partial class LiveFeed(ILogger<LiveFeed> logger)
{
    private readonly ConcurrentDictionary<long, ILiveSubscriber[]> _byDevice = new();
    private readonly Lock _gate = new();
    private int _count;

    /// <summary>How many subscribers are registered.</summary>
    public int Count => Volatile.Read(ref _count);

    public void Add(ILiveSubscriber subscriber)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        lock (_gate)
        {
            var seq = subscriber.DeviceSeq;
            _byDevice.TryGetValue(seq, out var existing);
            existing ??= [];
            var grown = new ILiveSubscriber[existing.Length + 1];
            existing.CopyTo(grown, 0);
            grown[^1] = subscriber;
            _byDevice[seq] = grown;
            _count++;
        }
    }

    public void Remove(ILiveSubscriber subscriber)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        lock (_gate)
        {
            var seq = subscriber.DeviceSeq;
            if (!_byDevice.TryGetValue(seq, out var existing))
            {
                return;
            }

            var index = Array.IndexOf(existing, subscriber);
            if (index < 0)
            {
                return;
            }

            if (existing.Length == 1)
            {
                _byDevice.TryRemove(seq, out _);
            }
            else
            {
                var shrunk = new ILiveSubscriber[existing.Length - 1];
                Array.Copy(existing, 0, shrunk, 0, index);
                Array.Copy(existing, index + 1, shrunk, index, existing.Length - index - 1);
                _byDevice[seq] = shrunk;
            }

            _count--;
        }
    }

    /// <summary>
    /// True on a cluster node: every change, this node's own included, comes from the event log that all nodes
    /// share (<see cref="TelemetryFromLog"/>, <see cref="AttributesFromLog"/>), and the writers' calls are ignored,
    /// so that each change reaches a subscriber once, whichever node committed it. Set before the server starts.
    /// </summary>
    public bool FollowsEventLog { get; set; }

    /// <summary>A batch of points has committed; called by the ingest writer, once per batch.</summary>
    public void TelemetryCommitted(List<DevicePoint> points)
    {
        if (!FollowsEventLog)
        {
            PushTelemetry(points);
        }
    }

    /// <summary>Attribute writes have committed; called by the attribute store after each write.</summary>
    public void AttributesCommitted(IReadOnlyList<AttributeChange> changes)
    {
        if (!FollowsEventLog)
        {
            PushAttributes(changes);
        }
    }

    /// <summary>The points of a committed batch, as the event log has them (on a cluster node, any node's batch).</summary>
    public void TelemetryFromLog(List<DevicePoint> points) => PushTelemetry(points);

    /// <summary>Attribute writes that committed, as the event log has them (on a cluster node, any node's).</summary>
    public void AttributesFromLog(IReadOnlyList<AttributeChange> changes) => PushAttributes(changes);

    private void PushTelemetry(List<DevicePoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (Volatile.Read(ref _count) == 0)
        {
            return;
        }

        var i = 0;
        while (i < points.Count)
        {
            var seq = points[i].DeviceSeq;
            var start = i;
            while (i < points.Count && points[i].DeviceSeq == seq)
            {
                i++;
            }

            if (_byDevice.TryGetValue(seq, out var subscribers))
            {
                foreach (var subscriber in subscribers)
                {
                    try
                    {
                        subscriber.OnTelemetry(points, start, i - start);
                    }
                    catch (Exception e)
                    {
                        LogSubscriberFailed(logger, e, seq);
                    }
                }
            }
        }
    }

    private void PushAttributes(IReadOnlyList<AttributeChange> changes)
    {
        ArgumentNullException.ThrowIfNull(changes);
        if (Volatile.Read(ref _count) == 0)
        {
            return;
        }

        foreach (var change in changes)
        {
            if (change.Entries.Count > 0 && _byDevice.TryGetValue(change.DeviceSeq, out var subscribers))
            {
                foreach (var subscriber in subscribers)
                {
                    try
                    {
                        subscriber.OnAttributes(change.Scope, change.Entries);
                    }
                    catch (Exception e)
                    {
                        LogSubscriberFailed(logger, e, change.DeviceSeq);
                    }
                }
            }
        }
    }

    [LoggerMessage(EventId = 2601, Level = LogLevel.Error, Message = "A live subscriber of device {Seq} failed on a committed change; the change is stored, the subscriber missed it")]
    private static partial void LogSubscriberFailed(ILogger logger, Exception exception, long seq);
}
