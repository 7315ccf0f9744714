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
    public void Devices_take_their_turns_spread_over_one_period()
    {
        // Four devices at one message a second each: their first messages are due at 0, 250, 500 and 750 ms.
        for (var index = 0; index < 4; index++)
        {
            var pacer = RateController.ForDevice(1, startTimestamp: 0, Frequency, index, count: 4, maxBurst: 4);
            var first = index * 250_000L;
            if (first > 0)
            {
                Assert.Equal(0, pacer.Due(first - 1_000, sent: 0));
            }

            Assert.Equal(1, pacer.Due(first, sent: 0));
            Assert.Equal(0, pacer.Due(first + 999_000, sent: 1));
            Assert.Equal(1, pacer.Due(first + 1_000_000, sent: 1));
            Assert.Equal(TimeSpan.FromSeconds(1), pacer.UntilNext(first, sent: 1));
        }
    }

    [Fact]
    public void A_device_pacer_keeps_the_rate_over_a_long_run()
    {
        // 10,000 devices at one message each 10 s, over 60 s: 60,000 messages, 1,000 in each second (not 10,000 at
        // once every 10 s).
        long total = 0;
        long inSecond30 = 0;
        for (var index = 0; index < 10_000; index++)
        {
            RateController Pacer() => RateController.ForDevice(0.1, startTimestamp: 0, Frequency, index, count: 10_000, maxBurst: 1000);
            total += Pacer().Due((60 * Frequency) - 1_000, sent: 0);
            inSecond30 += Pacer().Due((31 * Frequency) - 1_000, sent: 0) - Pacer().Due((30 * Frequency) - 1_000, sent: 0);
        }

        Assert.Equal(60_000, total);
        Assert.Equal(1_000, inSecond30);
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
