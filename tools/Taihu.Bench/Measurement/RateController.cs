namespace Taihu.Bench.Measurement;

/// <summary>
/// Paces a publisher at a target rate without a timer per message: at each turn it says how many messages are
/// due by now (elapsed time times rate, minus what was already sent), and the publisher sends that many in one
/// batch. A rate of 0 means as fast as possible. Catching up is capped so that a stall does not turn into a burst
/// larger than <see cref="MaxBurst"/>.
/// </summary>
public sealed class RateController
{
    private readonly double _ratePerSecond;
    private readonly long _start;
    private readonly double _ticksPerSecond;
    private long _skipped;

    public RateController(double ratePerSecond, long startTimestamp, long timestampFrequency, int maxBurst = 1000)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ratePerSecond);
        _ratePerSecond = ratePerSecond;
        _start = startTimestamp;
        _ticksPerSecond = timestampFrequency;
        MaxBurst = maxBurst;
    }

    /// <summary>
    /// The pacer of device <paramref name="index"/> of <paramref name="count"/>, each sending at
    /// <paramref name="perDevice"/> messages a second: the devices' turns are spread evenly over one period (device i's
    /// first message is due i/count of a period after <paramref name="startTimestamp"/>), as a city's devices, started
    /// at different moments, send; not all in the same instant once a period, which would offer the server bursts of
    /// every device at once instead of the rate.
    /// </summary>
    public static RateController ForDevice(double perDevice, long startTimestamp, long timestampFrequency, int index, int count, int maxBurst)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(perDevice);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, count);
        if (perDevice == 0 || count == 1)
        {
            return new RateController(perDevice, startTimestamp, timestampFrequency, maxBurst);
        }

        var period = 1 / perDevice;
        var phase = period * index / count;
        // Started one period before the device's first turn: its first message is due at its phase.
        var shifted = startTimestamp + (long)Math.Round((phase - period) * timestampFrequency);
        return new RateController(perDevice, shifted, timestampFrequency, maxBurst);
    }

    public int MaxBurst { get; }

    public bool Unlimited => _ratePerSecond == 0;

    /// <summary>Messages the publisher fell so far behind on that they were given up (the generator could not keep up).</summary>
    public long Skipped => _skipped;

    /// <summary>How many messages to send now, given <paramref name="sent"/> so far.</summary>
    public int Due(long nowTimestamp, long sent)
    {
        if (Unlimited)
        {
            return MaxBurst;
        }

        var elapsed = (nowTimestamp - _start) / _ticksPerSecond;
        // The epsilon keeps 1.001 s x 10,000/s from landing on 10,009.999... and losing a message to rounding.
        var target = (long)Math.Floor((elapsed * _ratePerSecond) + 1e-6) - _skipped;
        var due = target - sent;
        if (due <= 0)
        {
            return 0;
        }

        if (due > MaxBurst)
        {
            _skipped += due - MaxBurst;
            return MaxBurst;
        }

        return (int)due;
    }

    /// <summary>Time until the next message is due, for the publisher to wait.</summary>
    public TimeSpan UntilNext(long nowTimestamp, long sent)
    {
        if (Unlimited)
        {
            return TimeSpan.Zero;
        }

        var nextAt = (sent + _skipped + 1) / _ratePerSecond;
        var elapsed = (nowTimestamp - _start) / _ticksPerSecond;
        var wait = nextAt - elapsed;
        return wait <= 1e-9 ? TimeSpan.Zero : TimeSpan.FromTicks((long)Math.Round(wait * TimeSpan.TicksPerSecond));
    }

    /// <summary>
    /// Waits until the next message is due after <paramref name="sent"/> (on the Stopwatch clock this controller
    /// was started on), at least a millisecond, so that a publisher with nothing due does not spin.
    /// </summary>
    public Task WaitForNextAsync(long sent, CancellationToken cancellationToken)
    {
        var wait = UntilNext(System.Diagnostics.Stopwatch.GetTimestamp(), sent);
        return Task.Delay(wait < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : wait, cancellationToken);
    }
}
