using HdrHistogram;

namespace Taihu.Bench.Measurement;

/// <summary>
/// Counts what a run sends and receives and records end-to-end latency. Only messages sent inside the
/// measurement window count (warm-up excluded): publishers count what they send in the window, subscribers count
/// what arrives that was sent in the window, so after a drain the difference is exactly what was lost.
/// Thread-safe; recording allocates nothing.
/// </summary>
public sealed class RunRecorder
{
    private readonly LongConcurrentHistogram _latency;
    private readonly double _ticksPerMicrosecond;
    private long _windowStart = long.MaxValue;
    private long _windowEnd = long.MaxValue;
    private long _sentTotal;
    private long _sentInWindow;
    private long _receivedTotal;
    private long _receivedInWindow;

    public RunRecorder(long timestampFrequency, int expectedCopies)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(expectedCopies, 1);
        ExpectedCopies = expectedCopies;
        _ticksPerMicrosecond = timestampFrequency / 1_000_000.0;
        // 1 µs to 10 minutes at 3 significant digits.
        _latency = new LongConcurrentHistogram(1, 600_000_000, 3);
    }

    /// <summary>How many subscribers should get each message.</summary>
    public int ExpectedCopies { get; }

    public long SentTotal => Interlocked.Read(ref _sentTotal);
    public long SentInWindow => Interlocked.Read(ref _sentInWindow);
    public long ReceivedTotal => Interlocked.Read(ref _receivedTotal);
    public long ReceivedInWindow => Interlocked.Read(ref _receivedInWindow);

    /// <summary>Copies expected from what was sent in the window.</summary>
    public long Expected => SentInWindow * ExpectedCopies;

    /// <summary>Expected copies that did not arrive (0 if more arrived, e.g. duplicates).</summary>
    public long Lost => Math.Max(0, Expected - ReceivedInWindow);

    /// <summary>Copies beyond the expected (duplicates).</summary>
    public long Extra => Math.Max(0, ReceivedInWindow - Expected);

    public void StartWindow(long timestamp) => Interlocked.Exchange(ref _windowStart, timestamp);

    public void EndWindow(long timestamp) => Interlocked.Exchange(ref _windowEnd, timestamp);

    public bool InWindow(long timestamp) => timestamp >= Interlocked.Read(ref _windowStart) && timestamp < Interlocked.Read(ref _windowEnd);

    /// <summary>A publisher sent one message stamped <paramref name="sentTimestamp"/>.</summary>
    public void Sent(long sentTimestamp)
    {
        Interlocked.Increment(ref _sentTotal);
        if (InWindow(sentTimestamp))
        {
            Interlocked.Increment(ref _sentInWindow);
        }
    }

    /// <summary>A subscriber received a message stamped <paramref name="sentTimestamp"/> at <paramref name="receivedTimestamp"/>.</summary>
    public void Received(long sentTimestamp, long receivedTimestamp)
    {
        Interlocked.Increment(ref _receivedTotal);
        if (!InWindow(sentTimestamp))
        {
            return;
        }

        Interlocked.Increment(ref _receivedInWindow);
        var micros = (long)((receivedTimestamp - sentTimestamp) / _ticksPerMicrosecond);
        _latency.RecordValue(Math.Clamp(micros, 1, 600_000_000));
    }

    /// <summary>Latency percentile in milliseconds (e.g. 99.9).</summary>
    public double LatencyPercentileMs(double percentile) =>
        _latency.TotalCount == 0 ? 0 : _latency.GetValueAtPercentile(percentile) / 1000.0;

    /// <summary>
    /// A percentile read while subscribers are still recording (the live display). HdrHistogram's enumeration can
    /// trip over a concurrent write; the display then shows the last good value.
    /// </summary>
    public double LivePercentileMs(double percentile)
    {
        try
        {
            _lastLive = LatencyPercentileMs(percentile);
        }
        catch (InvalidOperationException)
        {
        }

        return _lastLive;
    }

    private double _lastLive;

    public double LatencyMaxMs => _latency.TotalCount == 0 ? 0 : _latency.GetMaxValue() / 1000.0;

    public long LatencySamples => _latency.TotalCount;
}
