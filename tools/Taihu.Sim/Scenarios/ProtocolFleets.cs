using System.Text.Json.Nodes;

namespace Taihu.Sim.Scenarios;

/// <summary>
/// What a fleet on HJ 212 or JT/T 808 may report, and its route: checks the loader makes beyond the schema, so that
/// a key the protocol cannot carry is named at its line instead of being silently dropped on the wire.
/// </summary>
internal static class ProtocolFleets
{
    /// <summary>The keys a JT/T 808 location report carries, as the listener names them (docs/protocols.md).</summary>
    public static readonly IReadOnlySet<string> Jt808Keys = new HashSet<string>(StringComparer.Ordinal)
    {
        "latitude", "longitude", "altitude", "speed", "direction", "alarm", "status", "mileage", "fuel",
    };

    /// <summary>The fields of an HJ 212 data item the simulator writes: pollutant code, a dash, then one of these.</summary>
    private static readonly string[] Hj212Fields = ["Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax", "Flag"];

    public static void Check(DeviceProtocol protocol, IEnumerable<string> keys, RouteDefinition? route, string pointer, Func<string, string, ScenarioException> problem)
    {
        switch (protocol)
        {
            case DeviceProtocol.Jt808:
                foreach (var key in keys)
                {
                    if (!Jt808Keys.Contains(key))
                    {
                        throw problem(pointer + "/telemetry/" + key, $"a JT/T 808 location report has no '{key}'; its keys are {string.Join(", ", Jt808Keys)}.");
                    }
                }

                break;
            case DeviceProtocol.Hj212:
                var realTime = false;
                var averages = false;
                foreach (var key in keys)
                {
                    var dash = key.IndexOf('-', StringComparison.Ordinal);
                    if (dash <= 0 || Array.IndexOf(Hj212Fields, key[(dash + 1)..]) < 0)
                    {
                        throw problem(pointer + "/telemetry/" + key,
                            $"an HJ 212 key is a pollutant code and a field, such as w01018-Avg or a34004-Rtd (fields: {string.Join(", ", Hj212Fields)}); '{key}' is not.");
                    }

                    realTime |= key.EndsWith("Rtd", StringComparison.Ordinal);
                    averages |= key.EndsWith("Avg", StringComparison.Ordinal) || key.EndsWith("Min", StringComparison.Ordinal) || key.EndsWith("Max", StringComparison.Ordinal);
                }

                if (realTime && averages)
                {
                    throw problem(pointer + "/telemetry", "an HJ 212 fleet sends either real-time data (-Rtd keys, CN 2011) or minute, hour or day data (-Avg, -Min, -Max; CN 2051, 2061, 2031), not both: make two fleets.");
                }

                break;
        }

        if (route is not null && protocol is DeviceProtocol.Hj212)
        {
            throw problem(pointer + "/route", "HJ 212 stations stand still: a route is for vehicles (JT/T 808, MQTT, HTTP or CoAP).");
        }
    }

    /// <summary>Reads <c>route: { points: [[lat, lon], ...] }</c> or <c>route: { grid: { origin: [lat, lon], blocks, blockMeters } }</c>, with <c>speedLimit</c>.</summary>
    public static RouteDefinition Route(JsonObject route, string pointer, int line, Func<string, string, ScenarioException> problem)
    {
        var limit = route["speedLimit"] is { } l ? Number(l) : (double?)null;
        if (route["points"] is JsonArray points)
        {
            var list = new List<GeoPoint>(points.Count);
            for (var i = 0; i < points.Count; i++)
            {
                list.Add(Point(points[i]!, pointer + "/points/" + i, problem));
            }

            if (list.Count < 2)
            {
                throw problem(pointer + "/points", "a route has at least two points.");
            }

            return new RouteDefinition(list, default, 0, 0, limit, line);
        }

        if (route["grid"] is JsonObject grid)
        {
            return new RouteDefinition([], Point(grid["origin"]!, pointer + "/grid/origin", problem), (int)Number(grid["blocks"]!), Number(grid["blockMeters"]!), limit, line);
        }

        throw problem(pointer, "a route is either points: [[lat, lon], ...] or grid: { origin, blocks, blockMeters }.");
    }

    private static GeoPoint Point(JsonNode node, string pointer, Func<string, string, ScenarioException> problem)
    {
        if (node is not JsonArray { Count: 2 } pair)
        {
            throw problem(pointer, "a point is [latitude, longitude] in degrees.");
        }

        var latitude = Number(pair[0]!);
        var longitude = Number(pair[1]!);
        if (latitude is < -90 or > 90 || longitude is < -180 or > 180)
        {
            throw problem(pointer, "a point is [latitude, longitude] in degrees: latitude within ±90, longitude within ±180.");
        }

        return new GeoPoint(latitude, longitude);
    }

    private static double Number(JsonNode node) => node.AsValue().TryGetValue<long>(out var integer) ? integer : node.GetValue<double>();
}
