using System.Text.Json.Nodes;
using Taihu.Sim.Values;

namespace Taihu.Sim.Scenarios;

/// <summary>How simulated devices reach the server.</summary>
public enum DeviceProtocol
{
    Mqtt,
    Http,
}

/// <summary>A scenario as loaded: every duration in scenario time, every count as written (see <see cref="ScenarioScaling"/>).</summary>
public sealed record Scenario(
    string Name, string? Description, TimeSpan Duration, int Seed, DateTimeOffset StartTime,
    IReadOnlyList<ProfileDefinition> Profiles, IReadOnlyList<FleetDefinition> Fleets, IReadOnlyList<Expectation> Expectations);

/// <summary>The kinds of expectation a scenario may state.</summary>
public enum ExpectationKind
{
    Stored,
    Acknowledged,
    Alarm,
    NoAlarm,
    LatencyP99,
}

/// <summary>
/// Something the run must show. <see cref="Share"/> is for stored/acknowledged (and an alarm's devices as a part
/// of the fleet); <see cref="Devices"/> an alarm's devices as a count; times are scenario time.
/// </summary>
public sealed record Expectation(
    ExpectationKind Kind, string? Fleet, double Share, string? AlarmType, int? Devices, TimeSpan? RaisedBy, TimeSpan? ClearedBy, TimeSpan? Latency, int Line)
{
    /// <summary>How the scenario file says it, for the report and for a failure's message.</summary>
    public string Describe()
    {
        var scope = Fleet is null ? "" : $" (fleet {Fleet})";
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        return Kind switch
        {
            ExpectationKind.Stored => string.Create(ci, $"stored: {Share:0.###%} of acknowledged points{scope}"),
            ExpectationKind.Acknowledged => string.Create(ci, $"acknowledged: {Share:0.###%} of points sent{scope}"),
            ExpectationKind.Alarm => $"alarm '{AlarmType}' raised by {DevicesText()}{(RaisedBy is { } r ? " by " + Durations.Format(r) : "")}{(ClearedBy is { } c ? " and cleared by " + Durations.Format(c) : "")}{scope}",
            ExpectationKind.NoAlarm => $"no alarm '{AlarmType}'{scope}",
            _ => $"latency p99 under {Durations.Format(Latency ?? TimeSpan.Zero)}{scope}",
        };
    }

    private string DevicesText() => Devices is { } n
        ? (n == 1 ? "at least 1 device" : $"at least {n} devices")
        : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"at least {Share:0.###%} of the devices");
}

/// <summary>A device profile the run provisions; <see cref="Alarms"/> is ThingsBoard's profileData.alarms as written.</summary>
public sealed record ProfileDefinition(string Name, string? Description, TimeSpan? InactivityTimeout, JsonArray? Alarms, int Line);

/// <summary>Devices alike: how many, how they connect, how often they report and what.</summary>
public sealed record FleetDefinition(
    string Name, int Count, string? Profile, DeviceProtocol Protocol, TimeSpan Interval, double Jitter,
    IReadOnlyDictionary<string, ValueModel> Telemetry, JsonObject? Attributes, IReadOnlyList<EventDefinition> Events, int Line)
{
    /// <summary>The name of device <paramref name="number"/> (1-based): <c>{n}</c> is the number, <c>{n:000}</c> padded.</summary>
    public string DeviceName(int number) => DeviceNames.Format(Name, number);
}

/// <summary>
/// From <see cref="At"/> for <see cref="For"/> (to the end when null), a <see cref="Share"/> of the fleet reports
/// these models instead of its own for the keys named: a pollution episode, a broken sensor.
/// </summary>
public sealed record EventDefinition(TimeSpan At, TimeSpan? For, double Share, IReadOnlyDictionary<string, ValueModel> Telemetry, int Line)
{
    public bool IsActive(TimeSpan t) => t >= At && (For is not { } length || t < At + length);
}
