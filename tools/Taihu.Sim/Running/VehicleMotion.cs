using System.Text.Json;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// A vehicle of a fleet with a route: between two reports it drives at the speed it reports (the fleet's
/// <c>speed</c> key, else 30 km/h) for the scenario time that passed, and its report gets the keys the fleet does not
/// set itself: <c>latitude</c>, <c>longitude</c>, <c>direction</c>, <c>mileage</c> and, with a speed limit,
/// <c>alarm</c> (bit 1, overspeed, as JT/T 808 has it).
/// </summary>
public sealed class VehicleMotion
{
    /// <summary>What a vehicle drives when its fleet does not report a speed.</summary>
    public const double DefaultSpeedKmh = 30;

    /// <summary>JT/T 808's alarm bit 1: overspeed.</summary>
    public const int OverspeedBit = 0x2;

    private readonly RouteCursor _cursor;
    private readonly RouteDefinition _route;
    private readonly bool _ownDirection;
    private readonly bool _ownMileage;
    private readonly bool _ownAlarm;
    private readonly bool _ownPosition;
    private TimeSpan _last;

    public VehicleMotion(RouteDefinition route, FleetDefinition fleet, int number, int fleetSize, Random random)
    {
        _route = route;
        // On a line, the vehicles are spread evenly along it (buses of one line); on a grid, each starts anywhere on its loop.
        var start = route.IsGrid ? random.NextDouble() : (number - 1) / (double)Math.Max(1, fleetSize);
        _cursor = new RouteCursor(route.LoopFor(number), start, Math.Round(5_000 + (random.NextDouble() * 200_000)));
        _ownDirection = fleet.Telemetry.ContainsKey("direction");
        _ownMileage = fleet.Telemetry.ContainsKey("mileage");
        _ownAlarm = fleet.Telemetry.ContainsKey("alarm");
        _ownPosition = fleet.Telemetry.ContainsKey("latitude") || fleet.Telemetry.ContainsKey("longitude");
    }

    /// <summary>Metres driven since the start of the run.</summary>
    public double Travelled => _cursor.Travelled;

    /// <summary>Drives to scenario time <paramref name="t"/> and writes the route's keys into the report's values.</summary>
    public void Write(Utf8JsonWriter writer, TimeSpan t, double? speed)
    {
        var kmh = speed ?? DefaultSpeedKmh;
        GeoPoint position;
        int heading;
        double mileage;
        lock (_cursor)
        {
            var elapsed = t > _last ? t - _last : TimeSpan.Zero;
            _last = t > _last ? t : _last;
            (position, heading) = _cursor.Advance(elapsed, kmh);
            mileage = _cursor.OdometerKm;
        }

        if (!_ownPosition)
        {
            writer.WriteNumber("latitude", Math.Round(position.Latitude, 6));
            writer.WriteNumber("longitude", Math.Round(position.Longitude, 6));
        }

        if (!_ownDirection)
        {
            writer.WriteNumber("direction", heading);
        }

        if (!_ownMileage)
        {
            writer.WriteNumber("mileage", Math.Round(mileage, 1));
        }

        if (!_ownAlarm && _route.SpeedLimitKmh is { } limit)
        {
            writer.WriteNumber("alarm", kmh > limit ? OverspeedBit : 0);
        }
    }
}
