using System.Text.Json.Nodes;
using Taihu.Sim.Values;

namespace Taihu.Sim.Scenarios;

/// <summary>How simulated devices reach the server.</summary>
public enum DeviceProtocol
{
    Mqtt,
    Http,

    /// <summary>HJ 212 environmental monitoring stations over TCP (minute, hour or real-time data, answered with 9014).</summary>
    Hj212,

    /// <summary>JT/T 808 vehicle terminals over TCP (location reports, answered with 0x8001).</summary>
    Jt808,

    /// <summary>ThingsBoard's CoAP device API over UDP (confirmable POSTs, answered with 2.xx).</summary>
    Coap,
}

/// <summary>A scenario as loaded: every duration in scenario time, every count as written (see <see cref="ScenarioScaling"/>).</summary>
public sealed record Scenario(
    string Name, string? Description, TimeSpan Duration, int Seed, DateTimeOffset StartTime,
    IReadOnlyList<ProfileDefinition> Profiles, IReadOnlyList<FleetDefinition> Fleets, IReadOnlyList<Expectation> Expectations)
{
    public IReadOnlyList<FaultDefinition> Faults { get; init; } = [];

    public IReadOnlyList<RpcCallDefinition> RpcCalls { get; init; } = [];

    /// <summary>
    /// The scenario's first <paramref name="window"/> only (<c>--for</c>: measuring a long scenario at its real rates):
    /// the faults that start in it, and no expectations, which are written for the whole run.
    /// </summary>
    public Scenario FirstPart(TimeSpan window) => window >= Duration
        ? this
        : this with { Duration = window, Expectations = [], Faults = [.. Faults.Where(f => f.At < window)] };
}

/// <summary>How devices behave beyond reporting: reconnecting, answering RPC, applying shared attributes.</summary>
public sealed record Behaviour(TimeSpan ReconnectInitial, TimeSpan ReconnectMax, TimeSpan RpcDelay, double RpcErrors, bool SharedAttributes)
{
    public static Behaviour Default { get; } = new(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(1), TimeSpan.Zero, 0, false);
}

/// <summary>The faults a scenario can inject.</summary>
public enum FaultKind
{
    /// <summary>Devices drop their connection; they come back by their reconnect behaviour.</summary>
    Disconnect,

    /// <summary>Devices drop their connection and all connect again at once.</summary>
    ReconnectStorm,

    /// <summary>Devices stop reporting (for a while, or to the end): what inactivity alarms are for.</summary>
    Silence,

    /// <summary>Devices send payloads that are not JSON.</summary>
    Malformed,

    /// <summary>Devices send payloads over the server's limit.</summary>
    Oversized,

    /// <summary>Devices send the same point twice (same timestamp and values).</summary>
    Duplicate,

    /// <summary>Devices send many points at once.</summary>
    Burst,

    /// <summary>Devices' clocks are off: their points carry timestamps ahead or behind.</summary>
    ClockSkew,

    /// <summary>The network holds every byte of the devices' connections for a while (the sockets stay open).</summary>
    Pause,

    /// <summary>The network drops the devices' connections without a word: nothing passes, nothing is closed.</summary>
    HalfOpen,

    /// <summary>Devices send far faster than they should (a firmware loop gone wrong), for a while.</summary>
    Flood,
}

/// <summary>A fault: what, to which devices (a share of a fleet, its first devices by number), when and for how long (scenario time).</summary>
public sealed record FaultDefinition(FaultKind Kind, string Fleet, double Share, TimeSpan At, TimeSpan? For, int Count, TimeSpan Skew, int Line)
{
    /// <summary>A flood's messages per second per device (scenario time: multiplied by <c>--speed</c>).</summary>
    public double Rate { get; init; }

    public bool IsActive(TimeSpan t) => t >= At && (For is not { } length || t < At + length);
}

/// <summary>Server-side RPC the run makes to every device of a fleet once per <see cref="Every"/> (scenario time).</summary>
public sealed record RpcCallDefinition(string Fleet, string Method, string ParamsJson, TimeSpan Every, TimeSpan Timeout, int Line);

/// <summary>The kinds of expectation a scenario may state.</summary>
public enum ExpectationKind
{
    Stored,
    Acknowledged,
    Alarm,
    NoAlarm,
    LatencyP99,
    RpcAnswered,
    FaultsHandled,

    /// <summary>A real device did what a device should: connected, stayed within its limits, took its shared attributes, came back with back-off.</summary>
    Behaves,
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
            ExpectationKind.RpcAnswered => string.Create(ci, $"RPC answered: {Share:0.###%} of calls{scope}"),
            ExpectationKind.FaultsHandled => "every fault injected got the server's clear answer",
            ExpectationKind.Behaves => $"real device {Fleet} behaves",
            _ => $"latency p99 under {Durations.Format(Latency ?? TimeSpan.Zero)}{scope}",
        };
    }

    private string DevicesText() => Devices is { } n
        ? (n == 1 ? "at least 1 device" : $"at least {n} devices")
        : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"at least {Share:0.###%} of the devices");
}

/// <summary>A device profile the run provisions; <see cref="Alarms"/> is ThingsBoard's profileData.alarms as written.</summary>
public sealed record ProfileDefinition(string Name, string? Description, TimeSpan? InactivityTimeout, JsonArray? Alarms, int Line)
{
    /// <summary>
    /// The profile's publish limit per device connection, messages per second of scenario time (provisioned as
    /// <c>profileData.rateLimits.maxPublishRate</c>, multiplied by <c>--speed</c>); null for the server's default.
    /// </summary>
    public double? MaxPublishRate { get; init; }
}

/// <summary>Devices alike: how many, how they connect, how often they report and what.</summary>
public sealed record FleetDefinition(
    string Name, int Count, string? Profile, DeviceProtocol Protocol, TimeSpan Interval, double Jitter,
    IReadOnlyDictionary<string, ValueModel> Telemetry, JsonObject? Attributes, IReadOnlyList<EventDefinition> Events, int Line)
{
    /// <summary>MQTT 5 instead of 3.1.1 (5 shows a refusal's reason code on the PUBACK).</summary>
    public bool Mqtt5 { get; init; }

    /// <summary>MQTT keep alive, scenario time.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(60);

    public Behaviour Behaviour { get; init; } = Behaviour.Default;

    /// <summary>When set, the devices report through gateways: <see cref="GatewayName"/> with {n}, each for <see cref="DevicesPerGateway"/> devices.</summary>
    public string? GatewayName { get; init; }

    public int DevicesPerGateway { get; init; }

    /// <summary>Set for a real device the scenario declares (a fleet of one that the simulator does not drive).</summary>
    public RealDeviceDefinition? Real { get; init; }

    /// <summary>When set, each device drives this route: its reports carry latitude, longitude, direction and mileage.</summary>
    public RouteDefinition? Route { get; init; }

    /// <summary>The name of device <paramref name="number"/> (1-based): <c>{n}</c> is the number, <c>{n:000}</c> padded.</summary>
    public string DeviceName(int number) => DeviceNames.Format(Name, number);
}

/// <summary>
/// A real device (bring your own): provisioned with its own access token, it connects through a fault-injecting
/// proxy on loopback at <see cref="Port"/> (0: any free port, printed) instead of the server, and the run checks
/// its behaviour. It runs in real time, whatever <c>--speed</c> says.
/// </summary>
/// <param name="ConnectWithin">Real time the run waits for it to connect at the start.</param>
/// <param name="SharedAttributes">Shared attributes the run sets at <see cref="SharedAttributesAt"/> (scenario time); the device must receive them.</param>
/// <param name="MaxMessagesPerMinute">Its limit: PUBLISH packets it may send in any minute (real time); null for none.</param>
/// <param name="MaxPayloadBytes">Its limit: the largest payload it may send; null for none.</param>
public sealed record RealDeviceDefinition(
    string Token, int Port, TimeSpan ConnectWithin, JsonObject? SharedAttributes, TimeSpan SharedAttributesAt, int? MaxMessagesPerMinute, int? MaxPayloadBytes);

/// <summary>
/// From <see cref="At"/> for <see cref="For"/> (to the end when null), a <see cref="Share"/> of the fleet reports
/// these models instead of its own for the keys named: a pollution episode, a broken sensor.
/// </summary>
public sealed record EventDefinition(TimeSpan At, TimeSpan? For, double Share, IReadOnlyDictionary<string, ValueModel> Telemetry, int Line)
{
    public bool IsActive(TimeSpan t) => t >= At && (For is not { } length || t < At + length);
}
