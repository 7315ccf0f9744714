namespace Taihu.Bench.Scenarios;

/// <summary>
/// When each of N idle clients sends its PINGREQ: once per keep-alive period, client i at i/N of the period, so
/// the broker sees an even trickle (N / period pings per second) as from devices that connected at random times,
/// not N pings at once every period.
/// </summary>
public static class IdlePingSchedule
{
    /// <summary>How many of the <paramref name="clients"/> have a ping due by <paramref name="elapsed"/> since the hold began.</summary>
    public static long DueBy(TimeSpan elapsed, int clients, TimeSpan period)
    {
        if (clients <= 0 || period <= TimeSpan.Zero || elapsed < TimeSpan.Zero)
        {
            return 0;
        }

        // Ping k (0-based, counted over all clients and periods) is client k % N in period k / N, at
        // (k / N) * period + (k % N) * period / N = k * period / N; so the count due is floor(elapsed * N / period) + 1.
        return (long)Math.Floor(elapsed.Ticks * (double)clients / period.Ticks) + 1;
    }

    /// <summary>The client that sends ping number <paramref name="ping"/> (0-based).</summary>
    public static int ClientOf(long ping, int clients) => (int)(ping % clients);
}
