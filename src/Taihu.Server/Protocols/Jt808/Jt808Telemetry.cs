using Taihu.Platform.Telemetry;
using Taihu.Protocols.Jt808;

namespace Taihu.Server.Protocols.Jt808;

/// <summary>
/// A location report as telemetry: one point per field at the report's time, keys named plainly (the table is in
/// docs/protocols.md). The keys are constants and the values numbers, so a report costs the points kept and nothing else.
/// </summary>
internal static class Jt808Telemetry
{
    /// <summary>Adds the points of <paramref name="location"/>; a report without a time (all zeros) is stamped <paramref name="receivedMs"/>.</summary>
    public static void Add(in Jt808Location location, long receivedMs, List<TelemetryPoint> points)
    {
        var ts = location.TimeMs != 0 ? location.TimeMs : receivedMs;
        points.Add(new TelemetryPoint("latitude", ts, KvValue.Of(location.Latitude)));
        points.Add(new TelemetryPoint("longitude", ts, KvValue.Of(location.Longitude)));
        points.Add(new TelemetryPoint("altitude", ts, KvValue.Of((long)location.Altitude)));
        points.Add(new TelemetryPoint("speed", ts, KvValue.Of(location.Speed / 10.0)));
        points.Add(new TelemetryPoint("direction", ts, KvValue.Of((long)location.Direction)));
        points.Add(new TelemetryPoint("alarm", ts, KvValue.Of((long)location.Alarm)));
        points.Add(new TelemetryPoint("status", ts, KvValue.Of((long)location.Status)));
        Tenths("mileage", location.Mileage, ts, points);
        Tenths("fuel", location.Fuel, ts, points);
        Tenths("recordedSpeed", location.RecordedSpeed, ts, points);
        Whole("alarmEventId", location.AlarmEventId, ts, points);
        if (location.CarriageTemperature is { } temperature)
        {
            points.Add(new TelemetryPoint("carriageTemperature", ts, KvValue.Of((long)temperature)));
        }

        Whole("overspeedLocationType", location.OverspeedLocationType, ts, points);
        Whole("overspeedAreaId", location.OverspeedAreaId, ts, points);
        Whole("areaLocationType", location.AreaLocationType, ts, points);
        Whole("areaId", location.AreaId, ts, points);
        Whole("areaDirection", location.AreaDirection, ts, points);
        Whole("routeId", location.RouteId, ts, points);
        Whole("routeDriveTime", location.RouteDriveTime, ts, points);
        Whole("routeResult", location.RouteResult, ts, points);
        Whole("vehicleSignal", location.VehicleSignal, ts, points);
        Whole("ioStatus", location.IoStatus, ts, points);
        Whole("analog0", location.Analog0, ts, points);
        Whole("analog1", location.Analog1, ts, points);
        Whole("signalStrength", location.SignalStrength, ts, points);
        Whole("satellites", location.Satellites, ts, points);
    }

    private static void Tenths(string key, uint? value, long ts, List<TelemetryPoint> points)
    {
        if (value is { } v)
        {
            points.Add(new TelemetryPoint(key, ts, KvValue.Of(v / 10.0)));
        }
    }

    private static void Whole(string key, uint? value, long ts, List<TelemetryPoint> points)
    {
        if (value is { } v)
        {
            points.Add(new TelemetryPoint(key, ts, KvValue.Of((long)v)));
        }
    }
}
