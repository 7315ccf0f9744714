namespace Taihu.Sim.Scenarios;

/// <summary>
/// <c>--speed</c> and <c>--scale</c>: a scenario written for hours runs in CI in seconds with the same
/// expectations. Scenario time runs <see cref="Speed"/> times faster than real time: every interval, deadline
/// and provisioned threshold (an alarm rule's duration, a profile's inactivity timeout) is divided by it, while
/// value models are read at scenario time, so a day's cycle still has its shape. Devices stamp points with the
/// real clock (the server checks timestamps against its own). Fleets are multiplied by <see cref="Scale"/>, each
/// keeping at least one device.
/// </summary>
public sealed record ScenarioScaling
{
    public ScenarioScaling(double speed, double scale)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(speed);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(scale);
        if (!double.IsFinite(speed) || !double.IsFinite(scale))
        {
            throw new ArgumentOutOfRangeException(nameof(speed), "--speed and --scale are finite numbers above zero.");
        }

        Speed = speed;
        Scale = scale;
    }

    public double Speed { get; }

    public double Scale { get; }

    public static ScenarioScaling None { get; } = new(1, 1);

    /// <summary>The real time a span of scenario time takes.</summary>
    public TimeSpan Real(TimeSpan scenarioTime) => scenarioTime / Speed;

    /// <summary>The scenario time a span of real time stands for.</summary>
    public TimeSpan ScenarioTime(TimeSpan realTime) => realTime * Speed;

    /// <summary>The devices a fleet of <paramref name="count"/> runs with.</summary>
    public int Count(int count) => Math.Max(1, (int)Math.Round(count * Scale, MidpointRounding.AwayFromZero));
}
