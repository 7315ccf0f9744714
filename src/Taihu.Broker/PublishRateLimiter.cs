namespace Taihu.Broker;

/// <summary>
/// Per-connection publish rate limits: a token bucket for messages and one for payload bytes, on the broker's
/// <see cref="TimeProvider"/> (so tests drive it with a fake clock). Each bucket holds one second's worth (the
/// burst a client may send at once) and refills continuously at its rate. A message whose payload is larger than
/// a whole second's bytes passes when the bucket is full and leaves it in debt, so such a message is not refused
/// for ever but the average still holds. Created once at CONNECT, only for a connection that has a limit, and
/// used only by the connection's receive loop; <see cref="TryTake"/> allocates nothing. Public for the listeners of
/// other protocols (JT/T 808), which hold their devices to the same limits.
/// </summary>
public sealed class PublishRateLimiter
{
    private readonly TimeProvider _time;
    private readonly double _ticksPerSecond;
    private Bucket _messages;
    private Bucket _bytes;

    public PublishRateLimiter(TimeProvider time, int messagesPerSecond, long bytesPerSecond)
    {
        _time = time;
        _ticksPerSecond = time.TimestampFrequency;
        MessagesPerSecond = messagesPerSecond;
        BytesPerSecond = bytesPerSecond;
        var now = time.GetTimestamp();
        _messages = new Bucket(messagesPerSecond, now);
        _bytes = new Bucket(bytesPerSecond, now);
    }

    /// <summary>The message limit; 0 is none.</summary>
    public int MessagesPerSecond { get; }

    /// <summary>The payload byte limit; 0 is none.</summary>
    public long BytesPerSecond { get; }

    /// <summary>Creates a limiter, or null when neither limit is set.</summary>
    public static PublishRateLimiter? Create(TimeProvider time, int messagesPerSecond, long bytesPerSecond) =>
        messagesPerSecond > 0 || bytesPerSecond > 0 ? new PublishRateLimiter(time, messagesPerSecond, bytesPerSecond) : null;

    /// <summary>Takes one message of <paramref name="payloadBytes"/>; false (and nothing taken) when a limit is exceeded.</summary>
    public RateLimitResult TryTake(int payloadBytes)
    {
        var now = _time.GetTimestamp();
        if (MessagesPerSecond > 0 && !_messages.CanTake(1, now, _ticksPerSecond))
        {
            return RateLimitResult.Messages;
        }

        if (BytesPerSecond > 0 && !_bytes.CanTake(payloadBytes, now, _ticksPerSecond))
        {
            return RateLimitResult.Bytes;
        }

        if (MessagesPerSecond > 0)
        {
            _messages.Take(1);
        }

        if (BytesPerSecond > 0)
        {
            _bytes.Take(payloadBytes);
        }

        return RateLimitResult.Allowed;
    }

    private struct Bucket(double rate, long now)
    {
        private readonly double _rate = rate;
        private double _tokens = rate;
        private long _refilledAt = now;

        public bool CanTake(double amount, long now, double ticksPerSecond)
        {
            if (now > _refilledAt)
            {
                _tokens = Math.Min(_rate, _tokens + ((now - _refilledAt) / ticksPerSecond * _rate));
                _refilledAt = now;
            }

            return _tokens >= amount || _tokens >= _rate;
        }

        public void Take(double amount) => _tokens -= amount;
    }
}

/// <summary>What <see cref="PublishRateLimiter.TryTake"/> found.</summary>
public enum RateLimitResult
{
    Allowed,
    Messages,
    Bytes,
}
