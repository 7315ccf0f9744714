namespace Taihu.Broker.Logging;

/// <summary>
/// Lets at most a fixed number of log lines of one kind through per second, and counts the rest, so that
/// anyone who can make the server refuse something (a CONNECT with bad credentials, a malformed frame, a bad
/// payload) cannot also make it write without limit. Whoever logs reports the count it is handed (the lines left
/// out since the last report) in one summary line; <see cref="TakeSuppressed"/> lets a timer report a burst
/// that ended with nothing after it. Not on the path of a message: only refusals pass through here.
/// </summary>
public sealed class LogRateLimiter(TimeProvider timeProvider, int linesPerSecond)
{
    private readonly Lock _gate = new();
    private long _windowStart = timeProvider.GetTimestamp();
    private int _inWindow;
    private long _suppressed;

    /// <summary>
    /// True when a line may be logged now; <paramref name="suppressedBefore"/> is then the number of lines left out
    /// since the last report, to be reported first (0 when none). False: this line is left out and counted.
    /// </summary>
    public bool TryAcquire(out long suppressedBefore)
    {
        var now = timeProvider.GetTimestamp();
        lock (_gate)
        {
            if (timeProvider.GetElapsedTime(_windowStart, now) >= TimeSpan.FromSeconds(1))
            {
                _windowStart = now;
                _inWindow = 0;
            }

            if (_inWindow < linesPerSecond)
            {
                _inWindow++;
                suppressedBefore = _suppressed;
                _suppressed = 0;
                return true;
            }

            _suppressed++;
            suppressedBefore = 0;
            return false;
        }
    }

    /// <summary>The lines left out since the last report, which the caller now reports; 0 when none.</summary>
    public long TakeSuppressed()
    {
        lock (_gate)
        {
            var suppressed = _suppressed;
            _suppressed = 0;
            return suppressed;
        }
    }
}
