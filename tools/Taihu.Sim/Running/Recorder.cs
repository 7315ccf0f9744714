using HdrHistogram;

namespace Taihu.Sim.Running;

/// <summary>
/// What happened in each second of a run: points sent, acknowledged and failed, and the latency from sending a
/// point to its acknowledgement. Devices record from many threads; each second has its own cell.
/// </summary>
public sealed class Recorder
{
    private readonly long _startTimestamp;
    private readonly Lock _gate = new();
    private readonly List<Second> _seconds = [];
    private readonly LongHistogram _total = new(TimeSpan.FromMinutes(5).Ticks, 3);

    public Recorder(long startTimestamp) => _startTimestamp = startTimestamp;

    private sealed class Second
    {
        public long Sent;
        public long Acknowledged;
        public long Failed;
        public readonly LongHistogram Latency = new(TimeSpan.FromMinutes(5).Ticks, 2);
    }

    public long Sent { get; private set; }

    public long Acknowledged { get; private set; }

    public long Failed { get; private set; }

    private Second At(long timestamp)
    {
        var index = (int)(System.Diagnostics.Stopwatch.GetElapsedTime(_startTimestamp, timestamp).TotalSeconds);
        while (_seconds.Count <= Math.Max(0, index))
        {
            _seconds.Add(new Second());
        }

        return _seconds[Math.Max(0, index)];
    }

    public void RecordSent(long timestamp)
    {
        lock (_gate)
        {
            At(timestamp).Sent++;
            Sent++;
        }
    }

    public void RecordAcknowledged(long sentTimestamp, long ackTimestamp)
    {
        var ticks = Math.Max(1, System.Diagnostics.Stopwatch.GetElapsedTime(sentTimestamp, ackTimestamp).Ticks);
        lock (_gate)
        {
            var second = At(ackTimestamp);
            second.Acknowledged++;
            second.Latency.RecordValue(Math.Min(ticks, second.Latency.HighestTrackableValue));
            _total.RecordValue(Math.Min(ticks, _total.HighestTrackableValue));
            Acknowledged++;
        }
    }

    public void RecordFailed(long timestamp)
    {
        lock (_gate)
        {
            At(timestamp).Failed++;
            Failed++;
        }
    }

    /// <summary>The latency at <paramref name="percentile"/> over the whole run.</summary>
    public TimeSpan Percentile(double percentile)
    {
        lock (_gate)
        {
            return _total.TotalCount == 0 ? TimeSpan.Zero : TimeSpan.FromTicks(_total.GetValueAtPercentile(percentile));
        }
    }

    /// <summary>Per second: sent, acknowledged, failed, p50 and p99 in milliseconds (null when nothing was acknowledged).</summary>
    public IReadOnlyList<(long Sent, long Acknowledged, long Failed, double? P50, double? P99)> Timeline()
    {
        lock (_gate)
        {
            var rows = new List<(long, long, long, double?, double?)>(_seconds.Count);
            foreach (var s in _seconds)
            {
                rows.Add((s.Sent, s.Acknowledged, s.Failed,
                    s.Latency.TotalCount == 0 ? null : TimeSpan.FromTicks(s.Latency.GetValueAtPercentile(50)).TotalMilliseconds,
                    s.Latency.TotalCount == 0 ? null : TimeSpan.FromTicks(s.Latency.GetValueAtPercentile(99)).TotalMilliseconds));
            }

            return rows;
        }
    }
}
