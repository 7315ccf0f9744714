using System.Net;
using System.Net.Sockets;

namespace Taihu.Platform.Security;

/// <summary>How an attempt ended, for <see cref="AttemptLimiter{TKey}.Release"/>.</summary>
public enum AttemptOutcome
{
    /// <summary>The secret was right: the attempt costs nothing (a success is never slowed by failures it did not make).</summary>
    Succeeded,

    /// <summary>The secret was wrong: the attempt is counted.</summary>
    Failed,

    /// <summary>The secret was not checked (another limit refused first): nothing is counted.</summary>
    NotChecked,
}

/// <summary>The answer of <see cref="AttemptLimiter{TKey}.AcquireAsync"/>: go ahead, or wait this long first.</summary>
public readonly record struct AttemptPermit(bool Granted, TimeSpan RetryAfter)
{
    /// <summary>Whole seconds to tell the client (at least 1), for Retry-After and messages.</summary>
    public int RetryAfterSeconds => Math.Max(1, (int)Math.Ceiling(RetryAfter.TotalSeconds));
}

/// <summary>
/// Limits how many secrets a key (a source address, an account) may have checked, so that guessing costs time.
/// </summary>
/// <remarks>
/// <para>
/// Design: the limit is checked and the attempt reserved in one step under one lock, before the secret is checked;
/// the reservation is settled when the check ends (a failure is counted, a success costs nothing). So 200 attempts
/// in parallel cannot all pass a check that reads "no failures yet": only as many as the allowance holds are
/// checked, the rest are refused at once. Attempts beyond the allowance while others are still being checked wait
/// for those to end instead of being refused (a reconnect storm of valid devices behind one address is delayed by
/// milliseconds, never refused); once the failures have used the allowance up, every attempt is refused, the right
/// secret too, so that a refusal tells nothing.
/// </para>
/// <para>
/// One lock for all keys: each step is a few dictionary operations, far cheaper than the check it guards. The table
/// is bounded: when full, entries at rest (nothing counted that a fresh entry would not also say) go first; if
/// none are, a tenth of the idle entries are dropped, which forgives their failures (the lesser harm than refusing
/// every new key). Time comes from <see cref="TimeProvider"/>.
/// </para>
/// </remarks>
public sealed class AttemptLimiter<TKey>
    where TKey : notnull
{
    private readonly Dictionary<TKey, Entry> _entries = [];
    private readonly Lock _gate = new();
    private readonly AttemptPolicy _policy;
    private readonly TimeProvider _time;
    private readonly int _capacity;

    public AttemptLimiter(AttemptPolicy policy, int capacity, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _policy = policy;
        _capacity = capacity;
        _time = time;
    }

    /// <summary>Entries held (for tests and metrics).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>
    /// Reserves an attempt for <paramref name="key"/>, waiting only while other attempts of the key are being
    /// checked; a granted permit must be settled with <see cref="Release"/>.
    /// </summary>
    public ValueTask<AttemptPermit> AcquireAsync(TKey key, CancellationToken cancellationToken = default)
    {
        TaskCompletionSource<AttemptPermit> waiter;
        lock (_gate)
        {
            var now = _time.GetUtcNow().UtcTicks;
            if (!_entries.TryGetValue(key, out var entry))
            {
                MakeRoom(now);
                entry = new Entry();
                _policy.Initialize(entry, now);
                _entries[key] = entry;
            }

            var allowance = _policy.Allowance(entry, now);
            if (allowance - entry.InFlight >= 1)
            {
                entry.InFlight++;
                return ValueTask.FromResult(new AttemptPermit(true, TimeSpan.Zero));
            }

            if (allowance < 1 || entry.InFlight == 0)
            {
                return ValueTask.FromResult(new AttemptPermit(false, _policy.RetryAfter(entry, now)));
            }

            waiter = new TaskCompletionSource<AttemptPermit>(TaskCreationOptions.RunContinuationsAsynchronously);
            (entry.Waiters ??= new Queue<TaskCompletionSource<AttemptPermit>>()).Enqueue(waiter);
        }

        return WaitAsync(key, waiter, cancellationToken);
    }

    /// <summary>Settles a granted permit.</summary>
    public void Release(TKey key, AttemptOutcome outcome)
    {
        lock (_gate)
        {
            if (!_entries.TryGetValue(key, out var entry))
            {
                return;
            }

            var now = _time.GetUtcNow().UtcTicks;
            entry.InFlight = Math.Max(0, entry.InFlight - 1);
            entry.LastUsed = now;
            if (outcome == AttemptOutcome.Failed)
            {
                _policy.OnFailure(entry, now);
            }
            else if (outcome == AttemptOutcome.Succeeded)
            {
                _policy.OnSuccess(entry, now);
            }

            // Waiters go ahead while the allowance holds, and are refused once failures have used it up.
            // (Completed under the lock, so that a waiter's cancellation and its grant cannot cross; continuations
            // run asynchronously, never inside the lock.)
            while (entry.Waiters is { Count: > 0 } waiters)
            {
                if (waiters.Peek().Task.IsCompleted)
                {
                    waiters.Dequeue(); // cancelled while waiting
                    continue;
                }

                var allowance = _policy.Allowance(entry, now);
                if (allowance - entry.InFlight >= 1)
                {
                    entry.InFlight++;
                    waiters.Dequeue().TrySetResult(new AttemptPermit(true, TimeSpan.Zero));
                }
                else if (allowance < 1 || entry.InFlight == 0)
                {
                    waiters.Dequeue().TrySetResult(new AttemptPermit(false, _policy.RetryAfter(entry, now)));
                }
                else
                {
                    break;
                }
            }
        }
    }

    private async ValueTask<AttemptPermit> WaitAsync(TKey key, TaskCompletionSource<AttemptPermit> waiter, CancellationToken cancellationToken)
    {
        try
        {
            return await waiter.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            bool granted;
            lock (_gate)
            {
                granted = !waiter.TrySetCanceled(cancellationToken) && waiter.Task.IsCompletedSuccessfully && waiter.Task.Result.Granted;
            }

            // Granted meanwhile: give the reservation back.
            if (granted)
            {
                Release(key, AttemptOutcome.NotChecked);
            }

            throw;
        }
    }

    private void MakeRoom(long now)
    {
        if (_entries.Count < _capacity)
        {
            return;
        }

        List<TKey> remove = [];
        foreach (var (key, entry) in _entries)
        {
            if (entry.InFlight == 0 && entry.Waiters is not { Count: > 0 } && _policy.IsAtRest(entry, now))
            {
                remove.Add(key);
            }
        }

        if (remove.Count == 0)
        {
            foreach (var (key, entry) in _entries)
            {
                if (entry.InFlight == 0 && entry.Waiters is not { Count: > 0 })
                {
                    remove.Add(key);
                    if (remove.Count >= Math.Max(1, _capacity / 10))
                    {
                        break;
                    }
                }
            }
        }

        foreach (var key in remove)
        {
            _entries.Remove(key);
        }
    }

    /// <summary>The state a policy keeps per key (only touched under the limiter's lock).</summary>
    public sealed class Entry
    {
        public double Tokens { get; set; }

        public int Failures { get; set; }

        public long Stamp { get; set; }

        public long LockedUntil { get; set; }

        public long LastUsed { get; set; }

        internal int InFlight { get; set; }

        internal Queue<TaskCompletionSource<AttemptPermit>>? Waiters { get; set; }
    }

    /// <summary>How many attempts a key is allowed, and how failures change that.</summary>
    public abstract class AttemptPolicy
    {
        /// <summary>Sets up a new key's state.</summary>
        public abstract void Initialize(Entry entry, long now);

        /// <summary>Attempts the key may have checked now (in-flight ones included).</summary>
        public abstract double Allowance(Entry entry, long now);

        public abstract void OnFailure(Entry entry, long now);

        public abstract void OnSuccess(Entry entry, long now);

        /// <summary>How long until one more attempt is allowed.</summary>
        public abstract TimeSpan RetryAfter(Entry entry, long now);

        /// <summary>Whether the entry says no more than a fresh one would (it may be dropped).</summary>
        public abstract bool IsAtRest(Entry entry, long now);
    }
}

/// <summary>
/// A token bucket: <c>perMinute</c> failures at once, refilled at <c>perMinute</c> a minute. Successes take nothing.
/// </summary>
public sealed class TokenBucketPolicy<TKey>(int perMinute) : AttemptLimiter<TKey>.AttemptPolicy
    where TKey : notnull
{
    private readonly double _perTick = perMinute / (double)TimeSpan.TicksPerMinute;

    public override void Initialize(AttemptLimiter<TKey>.Entry entry, long now)
    {
        entry.Tokens = perMinute;
        entry.Stamp = now;
    }

    public override double Allowance(AttemptLimiter<TKey>.Entry entry, long now)
    {
        if (now > entry.Stamp)
        {
            entry.Tokens = Math.Min(perMinute, entry.Tokens + ((now - entry.Stamp) * _perTick));
            entry.Stamp = now;
        }

        return entry.Tokens;
    }

    public override void OnFailure(AttemptLimiter<TKey>.Entry entry, long now)
    {
        Allowance(entry, now);
        entry.Tokens -= 1;
    }

    public override void OnSuccess(AttemptLimiter<TKey>.Entry entry, long now)
    {
    }

    public override TimeSpan RetryAfter(AttemptLimiter<TKey>.Entry entry, long now) =>
        TimeSpan.FromTicks((long)Math.Ceiling(Math.Max(0, 1 - Allowance(entry, now)) / _perTick));

    public override bool IsAtRest(AttemptLimiter<TKey>.Entry entry, long now) => Allowance(entry, now) >= perMinute;
}

/// <summary>
/// <c>threshold</c> failures in a row are allowed; then the key waits <c>backoff</c>, doubling with each further
/// failure (capped at 2^16 times); a success starts over. The shape of the account back-off.
/// </summary>
public sealed class DoublingBackoffPolicy<TKey>(int threshold, TimeSpan backoff) : AttemptLimiter<TKey>.AttemptPolicy
    where TKey : notnull
{
    public override void Initialize(AttemptLimiter<TKey>.Entry entry, long now)
    {
    }

    public override double Allowance(AttemptLimiter<TKey>.Entry entry, long now) =>
        entry.LockedUntil > now ? 0 : entry.Failures < threshold ? threshold - entry.Failures : 1;

    public override void OnFailure(AttemptLimiter<TKey>.Entry entry, long now)
    {
        entry.Failures++;
        if (entry.Failures >= threshold)
        {
            entry.LockedUntil = now + (backoff.Ticks << Math.Min(entry.Failures - threshold, 16));
        }
    }

    public override void OnSuccess(AttemptLimiter<TKey>.Entry entry, long now)
    {
        entry.Failures = 0;
        entry.LockedUntil = 0;
    }

    public override TimeSpan RetryAfter(AttemptLimiter<TKey>.Entry entry, long now) => TimeSpan.FromTicks(Math.Max(0, entry.LockedUntil - now));

    public override bool IsAtRest(AttemptLimiter<TKey>.Entry entry, long now) => entry.Failures == 0;
}

/// <summary>The key a source address is limited by.</summary>
public static class SourceAddress
{
    /// <summary>
    /// IPv4 as is (an IPv4-mapped IPv6 address as its IPv4); IPv6 by its /64, since one subscriber is given a whole
    /// /64 and could otherwise rotate through 2^64 addresses. Unknown (a Unix socket): one shared key.
    /// </summary>
    public static IPAddress Key(IPAddress? address)
    {
        if (address is null)
        {
            return IPAddress.None;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            Span<byte> bytes = stackalloc byte[16];
            address.TryWriteBytes(bytes, out _);
            bytes[8..].Clear();
            return new IPAddress(bytes);
        }

        return address;
    }

    /// <summary>The key of an endpoint's address (<see cref="Key(IPAddress?)"/>).</summary>
    public static IPAddress Key(EndPoint? endPoint) => Key((endPoint as IPEndPoint)?.Address);
}
