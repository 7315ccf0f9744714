namespace Taihu.Sim.Scenarios;

/// <summary>A point on the map, in degrees (WGS 84, as GNSS receivers give it).</summary>
public readonly record struct GeoPoint(double Latitude, double Longitude);

/// <summary>
/// Where a fleet's vehicles drive. Either a line given as <see cref="Points"/> (every vehicle drives it, spread
/// along it by number; a line that does not end where it starts is driven there and back), or a generated grid of
/// streets (<see cref="GridOrigin"/>, <see cref="GridBlocks"/> by <see cref="GridBlocks"/> blocks of
/// <see cref="BlockMeters"/>): each vehicle drives its own loop around blocks of it, as taxis cover a district.
/// Above <see cref="SpeedLimitKmh"/> a report carries the overspeed alarm bit (JT/T 808's alarm bit 1).
/// </summary>
public sealed record RouteDefinition(IReadOnlyList<GeoPoint> Points, GeoPoint GridOrigin, int GridBlocks, double BlockMeters, double? SpeedLimitKmh, int Line)
{
    public bool IsGrid => Points.Count == 0;

    /// <summary>The loop device <paramref name="number"/> (1-based) drives: the line there and back, or its block of the grid.</summary>
    public IReadOnlyList<GeoPoint> LoopFor(int number)
    {
        if (!IsGrid)
        {
            var closed = Points[0] == Points[^1];
            if (closed)
            {
                return Points;
            }

            var there = new List<GeoPoint>(Points);
            for (var i = Points.Count - 2; i >= 0; i--)
            {
                there.Add(Points[i]);
            }

            return there;
        }

        // Vehicle n goes round a rectangle of the grid: its corner cell by number, one to three blocks on a side.
        var cell = (number - 1) % (GridBlocks * GridBlocks);
        var row = cell / GridBlocks;
        var column = cell % GridBlocks;
        var wide = 1 + ((number - 1) % 3);
        var high = 1 + ((number - 1) / 3 % 2);
        GeoPoint At(int r, int c) => Offset(GridOrigin, Math.Min(r, GridBlocks) * BlockMeters, Math.Min(c, GridBlocks) * BlockMeters);
        return [At(row, column), At(row, column + wide), At(row + high, column + wide), At(row + high, column), At(row, column)];
    }

    /// <summary>The point <paramref name="northMeters"/> north and <paramref name="eastMeters"/> east of <paramref name="from"/> (flat earth: fine for a city).</summary>
    public static GeoPoint Offset(GeoPoint from, double northMeters, double eastMeters) =>
        new(from.Latitude + (northMeters / MetersPerDegree), from.Longitude + (eastMeters / (MetersPerDegree * Math.Cos(from.Latitude * Math.PI / 180))));

    internal const double MetersPerDegree = 111_320;
}

/// <summary>
/// A vehicle on its loop: advanced by its speed over scenario time, it gives its position, heading and odometer.
/// One per device, used by one caller at a time.
/// </summary>
public sealed class RouteCursor
{
    private readonly GeoPoint[] _points;
    private readonly double[] _cumulative;
    private double _along;
    private double _travelled;

    /// <param name="loop">The points, the last equal to the first.</param>
    /// <param name="startFraction">Where on the loop the vehicle starts, 0 to 1.</param>
    /// <param name="odometerKm">The odometer at the start.</param>
    public RouteCursor(IReadOnlyList<GeoPoint> loop, double startFraction, double odometerKm)
    {
        _points = [.. loop];
        _cumulative = new double[_points.Length];
        for (var i = 1; i < _points.Length; i++)
        {
            _cumulative[i] = _cumulative[i - 1] + Distance(_points[i - 1], _points[i]);
        }

        _along = Length * Math.Clamp(startFraction, 0, 1);
        OdometerKm = odometerKm;
    }

    /// <summary>The loop's length in metres.</summary>
    public double Length => _cumulative[^1];

    public double OdometerKm { get; private set; }

    /// <summary>The metres driven since the start.</summary>
    public double Travelled => _travelled;

    /// <summary>Drives <paramref name="speedKmh"/> for <paramref name="elapsed"/>; returns where the vehicle is and which way it heads (degrees from north).</summary>
    public (GeoPoint Position, int Heading) Advance(TimeSpan elapsed, double speedKmh)
    {
        var meters = Math.Max(0, speedKmh) / 3.6 * Math.Max(0, elapsed.TotalSeconds);
        _travelled += meters;
        OdometerKm += meters / 1000;
        if (Length > 0)
        {
            _along = (_along + meters) % Length;
        }

        return Where();
    }

    private (GeoPoint, int) Where()
    {
        if (Length <= 0)
        {
            return (_points[0], 0);
        }

        var segment = Array.BinarySearch(_cumulative, _along);
        segment = segment >= 0 ? Math.Min(segment, _points.Length - 2) : Math.Max(0, ~segment - 1);
        var from = _points[segment];
        var to = _points[segment + 1];
        var length = _cumulative[segment + 1] - _cumulative[segment];
        var f = length <= 0 ? 0 : (_along - _cumulative[segment]) / length;
        var position = new GeoPoint(from.Latitude + ((to.Latitude - from.Latitude) * f), from.Longitude + ((to.Longitude - from.Longitude) * f));
        return (position, Bearing(from, to));
    }

    /// <summary>Metres between two points (equirectangular: within a city its error is far below a GNSS fix's).</summary>
    public static double Distance(GeoPoint a, GeoPoint b)
    {
        var north = (b.Latitude - a.Latitude) * RouteDefinition.MetersPerDegree;
        var east = (b.Longitude - a.Longitude) * RouteDefinition.MetersPerDegree * Math.Cos((a.Latitude + b.Latitude) / 2 * Math.PI / 180);
        return Math.Sqrt((north * north) + (east * east));
    }

    /// <summary>Degrees from north, 0 to 359, from <paramref name="a"/> towards <paramref name="b"/>.</summary>
    public static int Bearing(GeoPoint a, GeoPoint b)
    {
        var north = b.Latitude - a.Latitude;
        var east = (b.Longitude - a.Longitude) * Math.Cos((a.Latitude + b.Latitude) / 2 * Math.PI / 180);
        var degrees = Math.Atan2(east, north) * 180 / Math.PI;
        return ((int)Math.Round(degrees) + 360) % 360;
    }
}
