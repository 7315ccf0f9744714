using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Logging;

namespace Taihu.Broker.Tests;

/// <summary>Client-supplied strings in logs: truncated and escaped; refusal lines rate-limited with a count of the rest.</summary>
public class LogTextTests
{
    [Fact]
    public void Short_clean_text_is_returned_as_is()
    {
        const string id = "sensor-42";
        Assert.Same(id, LogText.Clean(id));
        Assert.Equal("(none)", LogText.Clean(null));
    }

    [Fact]
    public void Control_characters_and_backslashes_are_escaped()
    {
        Assert.Equal("a\\nfail: x\\r\\tb\\u0000\\u001B\\u2028\\\\n", LogText.Clean("a\nfail: x\r\tb\0\u001b\u2028\\n"));
    }

    [Fact]
    public void Long_text_is_cut_with_a_marker()
    {
        var cleaned = LogText.Clean(new string('A', 60_000));
        Assert.Equal(new string('A', LogText.MaximumLength) + "...(59872 more characters)", cleaned);
    }

    [Fact]
    public void Rate_limiter_lets_a_fixed_number_through_per_second_and_counts_the_rest()
    {
        var time = new FakeTimeProvider();
        var limiter = new LogRateLimiter(time, 3);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(limiter.TryAcquire(out var none));
            Assert.Equal(0, none);
        }

        Assert.False(limiter.TryAcquire(out _));
        Assert.False(limiter.TryAcquire(out _));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(limiter.TryAcquire(out var suppressed));
        Assert.Equal(2, suppressed);
        Assert.True(limiter.TryAcquire(out _));
        Assert.True(limiter.TryAcquire(out _));
        Assert.False(limiter.TryAcquire(out _));
        Assert.Equal(1, limiter.TakeSuppressed());
        Assert.Equal(0, limiter.TakeSuppressed());
    }
}
