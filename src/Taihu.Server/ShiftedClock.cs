namespace Taihu.Server;

/// <summary>
/// The system clock moved by a fixed offset: <c>Testing:ClockOffset</c> (a duration, negative for behind) makes the
/// whole server run on it, so that tests can start a node whose clock is wrong (a cluster node must refuse to
/// start then). For tests only; a real deployment synchronises its clocks instead.
/// </summary>
public sealed class ShiftedClock(TimeSpan offset) : TimeProvider
{
    public const string Setting = "Testing:ClockOffset";

    public TimeSpan Offset { get; } = offset;

    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;

    public override TimeZoneInfo LocalTimeZone => System.LocalTimeZone;

    public override long GetTimestamp() => System.GetTimestamp();

    public override long TimestampFrequency => System.TimestampFrequency;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => System.CreateTimer(callback, state, dueTime, period);
}
