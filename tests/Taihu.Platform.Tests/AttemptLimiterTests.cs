using Microsoft.Extensions.Time.Testing;
using Taihu.Platform.Security;

namespace Taihu.Platform.Tests;

/// <summary>The failure limiter behind login and device-authentication limits, on fake time.</summary>
public sealed class AttemptLimiterTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private AttemptLimiter<string> Bucket(int perMinute, int capacity = 1000) => new(new TokenBucketPolicy<string>(perMinute), capacity, _time);

    private AttemptLimiter<string> Backoff(int threshold, TimeSpan wait) => new(new DoublingBackoffPolicy<string>(threshold, wait), 1000, _time);

    [Fact]
    public async Task TokenBucket_AllowsItsBurst_ThenOneFailurePerRefill()
    {
        var limiter = Bucket(6);
        for (var i = 0; i < 6; i++)
        {
            Assert.True((await limiter.AcquireAsync("a")).Granted);
            limiter.Release("a", AttemptOutcome.Failed);
        }

        var refused = await limiter.AcquireAsync("a");
        Assert.False(refused.Granted);
        Assert.Equal(TimeSpan.FromSeconds(10), refused.RetryAfter);
        Assert.True((await limiter.AcquireAsync("b")).Granted); // another key is not affected

        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.False((await limiter.AcquireAsync("a")).Granted);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True((await limiter.AcquireAsync("a")).Granted);
        limiter.Release("a", AttemptOutcome.Failed);
        Assert.False((await limiter.AcquireAsync("a")).Granted);
    }

    [Fact]
    public async Task Successes_AndUncheckedAttempts_CostNothing()
    {
        var limiter = Bucket(3);
        for (var i = 0; i < 100; i++)
        {
            Assert.True((await limiter.AcquireAsync("a")).Granted);
            limiter.Release("a", i % 2 == 0 ? AttemptOutcome.Succeeded : AttemptOutcome.NotChecked);
        }

        for (var i = 0; i < 3; i++)
        {
            Assert.True((await limiter.AcquireAsync("a")).Granted);
            limiter.Release("a", AttemptOutcome.Failed);
        }

        Assert.False((await limiter.AcquireAsync("a")).Granted);
    }

    [Fact]
    public async Task AttemptsInParallel_BeyondTheAllowance_WaitForTheChecksInFlight_AndAreRefusedOnceFailuresUseItUp()
    {
        var limiter = Bucket(2);
        var first = await limiter.AcquireAsync("a");
        var second = await limiter.AcquireAsync("a");
        Assert.True(first.Granted && second.Granted);
        var third = limiter.AcquireAsync("a").AsTask();
        var fourth = limiter.AcquireAsync("a").AsTask();
        Assert.False(third.IsCompleted);
        Assert.False(fourth.IsCompleted);

        // A success gives its place to the next in line.
        limiter.Release("a", AttemptOutcome.Succeeded);
        Assert.True((await third).Granted);
        Assert.False(fourth.IsCompleted);

        // Two failures use the allowance up: whoever still waits is refused.
        limiter.Release("a", AttemptOutcome.Failed);
        Assert.False(fourth.IsCompleted);
        limiter.Release("a", AttemptOutcome.Failed);
        var refused = await fourth;
        Assert.False(refused.Granted);
        Assert.Equal(TimeSpan.FromSeconds(30), refused.RetryAfter);
    }

    [Fact]
    public async Task AWaiterThatGivesUp_LeavesNoReservationBehind()
    {
        var limiter = Bucket(1);
        Assert.True((await limiter.AcquireAsync("a")).Granted);
        using var cancel = new CancellationTokenSource();
        var waiting = limiter.AcquireAsync("a", cancel.Token).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        limiter.Release("a", AttemptOutcome.Succeeded);
        Assert.True((await limiter.AcquireAsync("a")).Granted);
        limiter.Release("a", AttemptOutcome.Succeeded);
        Assert.True((await limiter.AcquireAsync("a")).Granted);
    }

    [Fact]
    public async Task DoublingBackoff_WaitsAfterTheThreshold_DoublingEachFailure_AndASuccessStartsOver()
    {
        var limiter = Backoff(3, TimeSpan.FromSeconds(1));
        for (var i = 0; i < 3; i++)
        {
            Assert.True((await limiter.AcquireAsync("x")).Granted);
            limiter.Release("x", AttemptOutcome.Failed);
        }

        Assert.Equal(TimeSpan.FromSeconds(1), (await limiter.AcquireAsync("x")).RetryAfter);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True((await limiter.AcquireAsync("x")).Granted);
        limiter.Release("x", AttemptOutcome.Failed);
        var refused = await limiter.AcquireAsync("x");
        Assert.False(refused.Granted);
        Assert.Equal(TimeSpan.FromSeconds(2), refused.RetryAfter);

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.True((await limiter.AcquireAsync("x")).Granted);
        limiter.Release("x", AttemptOutcome.Succeeded);
        for (var i = 0; i < 3; i++)
        {
            Assert.True((await limiter.AcquireAsync("x")).Granted);
            limiter.Release("x", AttemptOutcome.Failed);
        }

        Assert.Equal(TimeSpan.FromSeconds(1), (await limiter.AcquireAsync("x")).RetryAfter);
    }

    [Fact]
    public async Task DoublingBackoff_InParallel_ChecksOnlyTheThreshold()
    {
        var limiter = Backoff(5, TimeSpan.FromMinutes(1));
        var attempts = new List<Task<AttemptPermit>>();
        for (var i = 0; i < 200; i++)
        {
            attempts.Add(limiter.AcquireAsync("victim").AsTask());
        }

        var granted = attempts.Where(a => a.IsCompletedSuccessfully && a.Result.Granted).ToList();
        Assert.Equal(5, granted.Count);
        foreach (var _ in granted)
        {
            limiter.Release("victim", AttemptOutcome.Failed);
        }

        var all = await Task.WhenAll(attempts);
        Assert.Equal(5, all.Count(p => p.Granted));
    }

    [Fact]
    public async Task TheTable_IsBounded_AndForgetsEntriesAtRestFirst()
    {
        var limiter = Bucket(2, capacity: 100);
        Assert.True((await limiter.AcquireAsync("guesser")).Granted);
        limiter.Release("guesser", AttemptOutcome.Failed);
        Assert.True((await limiter.AcquireAsync("guesser")).Granted);
        limiter.Release("guesser", AttemptOutcome.Failed);
        for (var i = 0; i < 1000; i++)
        {
            Assert.True((await limiter.AcquireAsync("passer-by-" + i)).Granted);
            limiter.Release("passer-by-" + i, AttemptOutcome.Succeeded);
        }

        Assert.True(limiter.Count <= 100);
        Assert.False((await limiter.AcquireAsync("guesser")).Granted);
    }

    [Fact]
    public void SourceAddress_GroupsIPv6By64_AndMapsIPv4MappedAddresses()
    {
        Assert.Equal(System.Net.IPAddress.Parse("2001:db8:1:2::"), SourceAddress.Key(System.Net.IPAddress.Parse("2001:db8:1:2:aaaa:bbbb:cccc:dddd")));
        Assert.Equal(System.Net.IPAddress.Parse("192.0.2.7"), SourceAddress.Key(System.Net.IPAddress.Parse("::ffff:192.0.2.7")));
        Assert.Equal(System.Net.IPAddress.Loopback, SourceAddress.Key(System.Net.IPAddress.Loopback));
    }
}
