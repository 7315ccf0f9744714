using Taihu.Bench.Measurement;

namespace Taihu.Bench.Tests;

public class RateControllerTests
{
    private const long Frequency = 1_000_000; // one tick per microsecond

    [Fact]
    public void Nothing_is_due_at_the_start()
    {
        var pacer = new RateController(1000, startTimestamp: 0, Frequency);
        Assert.Equal(0, pacer.Due(0, sent: 0));
    }

    [Fact]
    public void Due_follows_elapsed_time_times_rate()
    {
        var pacer = new RateController(1000, startTimestamp: 0, Frequency);
        Assert.Equal(10, pacer.Due(10_000, sent: 0));      // 10 ms at 1000/s
        Assert.Equal(0, pacer.Due(10_000, sent: 10));      // already sent
        Assert.Equal(990, pacer.Due(1_000_000, sent: 10)); // one second in
    }

    [Fact]
    public void A_stall_is_capped_at_the_burst_and_counted_as_skipped()
    {
        var pacer = new RateController(10_000, startTimestamp: 0, Frequency, maxBurst: 100);
        Assert.Equal(100, pacer.Due(1_000_000, sent: 0)); // 10,000 due, burst 100
        Assert.Equal(9_900, pacer.Skipped);
        // The skipped ones are not owed again.
        Assert.Equal(0, pacer.Due(1_000_000, sent: 100));
        Assert.Equal(10, pacer.Due(1_001_000, sent: 100));
    }

    [Fact]
    public void Unlimited_rate_always_allows_a_burst()
    {
        var pacer = new RateController(0, startTimestamp: 0, Frequency, maxBurst: 64);
        Assert.True(pacer.Unlimited);
        Assert.Equal(64, pacer.Due(0, sent: 1_000_000));
        Assert.Equal(TimeSpan.Zero, pacer.UntilNext(0, 0));
    }

    [Fact]
    public void UntilNext_is_the_gap_to_the_next_message()
    {
        var pacer = new RateController(100, startTimestamp: 0, Frequency);
        // After 5 messages at 100/s the sixth is due at 60 ms.
        Assert.Equal(TimeSpan.FromMilliseconds(60), pacer.UntilNext(0, sent: 5));
        Assert.Equal(TimeSpan.FromMilliseconds(10), pacer.UntilNext(50_000, sent: 5));
        Assert.Equal(TimeSpan.Zero, pacer.UntilNext(70_000, sent: 5));
    }

    [Fact]
    public void Negative_rates_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RateController(-1, 0, Frequency));
    }
}
