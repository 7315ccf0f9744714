using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Taihu.Sim.Values;

namespace Taihu.Sim.Scenarios;

/// <summary>
/// Reads a scenario file: YAML, checked against the JSON Schema shipped with the simulator
/// (<c>scenario.schema.json</c>) and then for meaning (a fleet naming a profile the file does not define, a CSV
/// file that is not there). Every problem is a <see cref="ScenarioException"/> that names the file and line.
/// </summary>
public static class ScenarioLoader
{
    private static readonly Lazy<JsonSchema> Schema = new(LoadSchema);

    /// <summary>China Standard Time: where the demonstration zones are, and the default for a scenario's start.</summary>
    public static readonly TimeSpan ChinaStandardTime = TimeSpan.FromHours(8);

    /// <summary>The schema's text, for editors and for <c>taihu-sim schema</c>.</summary>
    public static string SchemaText()
    {
        using var stream = typeof(ScenarioLoader).Assembly.GetManifestResourceStream("scenario.schema.json")
            ?? throw new InvalidOperationException("The scenario schema is not embedded in the simulator.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static JsonSchema LoadSchema() => JsonSchema.FromText(SchemaText());

    public static Scenario Load(string path) =>
        Parse(File.ReadAllText(path), Path.GetFileName(path), Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".");

    /// <summary>Reads scenario <paramref name="text"/>; <paramref name="source"/> names it in errors, CSV files are found under <paramref name="directory"/>.</summary>
    public static Scenario Parse(string text, string source, string directory)
    {
        var document = YamlDocument.Parse(text, source);
        if (document.Root is not JsonObject root)
        {
            throw new ScenarioException(source, 1, "a scenario is a mapping with at least name, duration and fleets.");
        }

        Validate(document, root, source);
        return new Reader(document, source, directory).Read(root);
    }

    private static void Validate(YamlDocument document, JsonObject root, string source)
    {
        using var json = JsonDocument.Parse(root.ToJsonString());
        var results = Schema.Value.Evaluate(json.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.Hierarchical });
        if (results.IsValid)
        {
            return;
        }

        // Only failures on a path that failed all the way up count (a branch of an anyOf that failed while another
        // passed is no problem), and of those the innermost: the places a person edits. The first in the file is
        // reported; where several are on its line, the specific ones (a missing field, a bad value) go before the
        // consequences (a type another branch wanted, fields left unevaluated by a failed branch).
        var failures = new List<(string Pointer, int Line, string Message, int Rank)>();
        Collect(results, document, failures);
        if (failures.Count == 0)
        {
            throw new ScenarioException(source, 1, "the scenario does not match its schema.");
        }

        var line = failures.Min(f => f.Line);
        var onLine = failures.Where(f => f.Line == line).ToList();
        var best = onLine.Min(f => f.Rank);
        var chosen = onLine.Where(f => f.Rank == best).OrderByDescending(f => Depth(f.Pointer)).ToList();
        var messages = chosen.Select(f => $"{Where(f.Pointer)}: {f.Message}").Distinct().Take(3).ToList();

        // A required field missing where an unknown one stands is most often a misspelling: say both.
        foreach (var unknown in failures)
        {
            if (unknown.Rank == 2 && chosen.Any(c => c.Message.StartsWith("Required", StringComparison.Ordinal) && unknown.Pointer.StartsWith(c.Pointer + "/", StringComparison.Ordinal)
                && unknown.Pointer.LastIndexOf('/') == c.Pointer.Length))
            {
                messages.Add($"{unknown.Message} (line {unknown.Line}; misspelled?)");
            }
        }

        throw new ScenarioException(source, line, string.Join("; ", messages));
    }

    private static string Where(string pointer) => pointer.Length == 0 ? "the scenario" : pointer.TrimStart('/').Replace('/', '.');

    /// <summary>Adds the failures of <paramref name="node"/> that no failing child explains; returns whether it failed with any.</summary>
    private static bool Collect(EvaluationResults node, YamlDocument document, List<(string Pointer, int Line, string Message, int Rank)> failures)
    {
        if (node.IsValid)
        {
            return false;
        }

        var childFailed = false;
        foreach (var child in node.Details ?? [])
        {
            childFailed |= Collect(child, document, failures);
        }

        var any = childFailed;
        foreach (var (keyword, message) in node.Errors ?? new Dictionary<string, string>())
        {
            if (childFailed && keyword is "anyOf" or "allOf" or "oneOf" or "then" or "$ref" or "properties" or "additionalProperties" or "items")
            {
                continue;
            }

            var pointer = node.InstanceLocation.ToString();
            var (text, rank) = message.Contains("false schema", StringComparison.Ordinal)
                ? ($"'{pointer[(pointer.LastIndexOf('/') + 1)..]}' is not a field here", 2)
                : message.StartsWith("Value is \"", StringComparison.Ordinal) ? (message, 1)
                : message.Contains("regular expression", StringComparison.Ordinal) ? ("not in the expected form (a duration is written 250ms, 10s, 5m, 1h, 2d or 1h30m; a share 0.25 or 25%)", 0)
                : (message, 0);
            failures.Add((pointer, document.LineOf(pointer), text, rank));
            any = true;
        }

        return any;
    }

    private static int Depth(string pointer) => pointer.Count(c => c == '/');

    /// <summary>Reads the checked JSON into the model, checking what a schema cannot say.</summary>
    private sealed class Reader(YamlDocument document, string source, string directory)
    {
        private readonly Dictionary<string, FleetDefinition> _fleets = new(StringComparer.Ordinal);

        private ScenarioException Problem(string pointer, string problem) => new(source, document.LineOf(pointer), problem);

        public Scenario Read(JsonObject root)
        {
            var startTime = root["startTime"] is JsonNode start
                ? DateTimeOffset.Parse(start.GetValue<string>(), CultureInfo.InvariantCulture)
                : new DateTimeOffset(2026, 1, 1, 0, 0, 0, ChinaStandardTime);
            var profiles = new List<ProfileDefinition>();
            var profileNames = new HashSet<string>(StringComparer.Ordinal);
            var fleets = new List<FleetDefinition>();
            var fleetNames = new HashSet<string>(StringComparer.Ordinal);
            var included = ScenarioIncludes.Load(root["include"] as JsonArray, directory, document.LineOf, Problem);
            foreach (var part in included)
            {
                ScenarioIncludes.Merge(part, profiles, profileNames, fleets, fleetNames, Problem);
            }

            foreach (var fleet in fleets)
            {
                _fleets[fleet.Name] = fleet;
            }

            var profileArray = root["profiles"]?.AsArray() ?? [];
            for (var i = 0; i < profileArray.Count; i++)
            {
                var p = profileArray[i]!.AsObject();
                var pointer = $"/profiles/{i}";
                var name = p["name"]!.GetValue<string>();
                if (!profileNames.Add(name))
                {
                    throw Problem(pointer + "/name", $"the profile '{name}' is defined twice.");
                }

                profiles.Add(new ProfileDefinition(name, p["description"]?.GetValue<string>(),
                    p["inactivityTimeout"] is { } timeout ? Duration(timeout, pointer + "/inactivityTimeout") : null,
                    p["alarms"]?.DeepClone().AsArray(), document.LineOf(pointer))
                {
                    MaxPublishRate = p["rateLimits"]?["maxPublishRate"] is { } rate ? AsDouble(rate) : null,
                });
            }

            var fleetArray = root["fleets"]?.AsArray() ?? [];
            for (var i = 0; i < fleetArray.Count; i++)
            {
                fleets.Add(ReadFleet(fleetArray[i]!.AsObject(), $"/fleets/{i}", profileNames, fleetNames, startTime));
                _fleets[fleets[^1].Name] = fleets[^1];
            }

            var realArray = root["realDevices"]?.AsArray() ?? [];
            var ports = new HashSet<int>();
            for (var i = 0; i < realArray.Count; i++)
            {
                fleets.Add(ReadRealDevice(realArray[i]!.AsObject(), $"/realDevices/{i}", profileNames, fleetNames, ports));
                _fleets[fleets[^1].Name] = fleets[^1];
            }

            if (fleets.Count == 0)
            {
                throw Problem("", "a scenario has fleets of simulated devices, real devices (realDevices), or both.");
            }

            var duration = Duration(root["duration"]!, "/duration");
            if (duration <= TimeSpan.Zero)
            {
                throw Problem("/duration", "a scenario runs for more than zero time.");
            }

            var expectations = new List<Expectation>(included.SelectMany(i => i.Expectations));
            var expectArray = root["expect"]?.AsArray() ?? [];
            for (var i = 0; i < expectArray.Count; i++)
            {
                expectations.Add(ReadExpectation(expectArray[i]!.AsObject(), $"/expect/{i}", fleetNames));
            }

            var faults = new List<FaultDefinition>(included.SelectMany(i => i.Scenario.Faults));
            var faultArray = root["faults"]?.AsArray() ?? [];
            for (var i = 0; i < faultArray.Count; i++)
            {
                faults.Add(ReadFault(faultArray[i]!.AsObject(), $"/faults/{i}", fleetNames));
            }

            var calls = new List<RpcCallDefinition>(included.SelectMany(i => i.Scenario.RpcCalls));
            var callArray = root["rpc"]?.AsArray() ?? [];
            for (var i = 0; i < callArray.Count; i++)
            {
                var c = callArray[i]!.AsObject();
                var at = $"/rpc/{i}";
                var fleet = c["fleet"]!.GetValue<string>();
                if (!fleetNames.Contains(fleet))
                {
                    throw Problem(at + "/fleet", $"no fleet is named '{fleet}'.");
                }

                var every = Duration(c["every"]!, at + "/every");
                if (every <= TimeSpan.Zero)
                {
                    throw Problem(at + "/every", "RPC calls are made at an interval of more than zero.");
                }

                calls.Add(new RpcCallDefinition(fleet, c["method"]!.GetValue<string>(), c["params"]?.ToJsonString() ?? "{}", every,
                    c["timeout"] is { } timeout ? Duration(timeout, at + "/timeout") : TimeSpan.FromSeconds(10), document.LineOf(at)));
            }

            return new Scenario(root["name"]!.GetValue<string>(), root["description"]?.GetValue<string>(), duration,
                root["seed"] is { } seed ? (int)seed.GetValue<long>() : 1, startTime, profiles, fleets, expectations)
            {
                Faults = faults,
                RpcCalls = calls,
            };
        }

        /// <summary>A real device: a fleet of one, named as written, that reports by itself.</summary>
        private FleetDefinition ReadRealDevice(JsonObject d, string pointer, HashSet<string> profileNames, HashSet<string> fleetNames, HashSet<int> ports)
        {
            var name = d["name"]!.GetValue<string>();
            if (!fleetNames.Add(name))
            {
                throw Problem(pointer + "/name", $"'{name}' is the name of another fleet or device.");
            }

            var profile = d["profile"]?.GetValue<string>();
            if (profile is not null && !profileNames.Contains(profile))
            {
                throw Problem(pointer + "/profile", $"the profile '{profile}' is not defined under profiles.");
            }

            var port = d["port"] is { } p ? (int)p.GetValue<long>() : 0;
            if (port != 0 && !ports.Add(port))
            {
                throw Problem(pointer + "/port", $"port {port} is another real device's.");
            }

            var limits = d["limits"] as JsonObject;
            var real = new RealDeviceDefinition(d["token"]!.GetValue<string>(), port,
                d["connectWithin"] is { } within ? Duration(within, pointer + "/connectWithin") : TimeSpan.FromMinutes(1),
                d["sharedAttributes"]?["values"]?.DeepClone().AsObject(),
                d["sharedAttributes"]?["at"] is { } at ? Duration(at, pointer + "/sharedAttributes/at") : TimeSpan.Zero,
                limits?["messagesPerMinute"] is { } rate ? (int)rate.GetValue<long>() : null,
                limits?["payloadBytes"] is { } bytes ? (int)bytes.GetValue<long>() : null);
            return new FleetDefinition(name, 1, profile, DeviceProtocol.Mqtt, TimeSpan.FromDays(3650), 0,
                new Dictionary<string, ValueModel>(), null, [], document.LineOf(pointer))
            {
                Real = real,
            };
        }

        private FaultDefinition ReadFault(JsonObject f, string pointer, HashSet<string> fleetNames)
        {
            var fleet = f["fleet"]!.GetValue<string>();
            if (!fleetNames.Contains(fleet))
            {
                throw Problem(pointer + "/fleet", $"no fleet is named '{fleet}'.");
            }

            var kind = f["kind"]!.GetValue<string>() switch
            {
                "disconnect" => FaultKind.Disconnect,
                "reconnectStorm" => FaultKind.ReconnectStorm,
                "silence" => FaultKind.Silence,
                "malformed" => FaultKind.Malformed,
                "oversized" => FaultKind.Oversized,
                "duplicate" => FaultKind.Duplicate,
                "burst" => FaultKind.Burst,
                "pause" => FaultKind.Pause,
                "halfOpen" => FaultKind.HalfOpen,
                "flood" => FaultKind.Flood,
                _ => FaultKind.ClockSkew,
            };
            if (kind is FaultKind.Pause && f["for"] is null)
            {
                throw Problem(pointer, "a pause fault says how long the network holds: for: 30s.");
            }

            if (_fleets[fleet].Real is not null && kind is not (FaultKind.Disconnect or FaultKind.Pause or FaultKind.HalfOpen))
            {
                throw Problem(pointer + "/kind", $"'{fleet}' is a real device: the run can break its network (disconnect, pause, halfOpen), not make it send.");
            }

            if (kind is FaultKind.Flood && (f["for"] is null || f["rate"] is null))
            {
                throw Problem(pointer, "a flood fault says how fast and how long each device sends: rate: 20 (messages per second) and for: 1m.");
            }

            if (kind is FaultKind.Disconnect or FaultKind.ReconnectStorm or FaultKind.Pause or FaultKind.HalfOpen && _fleets[fleet].GatewayName is not null)
            {
                throw Problem(pointer + "/kind", $"the devices of '{fleet}' report through gateways and hold no connection of their own; a {f["kind"]!.GetValue<string>()} fault is for a fleet of MQTT devices.");
            }

            // HJ 212 stations and JT/T 808 terminals hold connections too, and reconnect by their back-off; the storm,
            // the proxy's faults and floods are MQTT's (the proxy tells connections apart by their CONNECT).
            if ((kind is FaultKind.ReconnectStorm or FaultKind.Pause or FaultKind.HalfOpen or FaultKind.Flood && _fleets[fleet].Protocol != DeviceProtocol.Mqtt)
                || (kind is FaultKind.Disconnect && _fleets[fleet].Protocol is DeviceProtocol.Http or DeviceProtocol.Coap))
            {
                throw Problem(pointer + "/kind", $"a {f["kind"]!.GetValue<string>()} fault needs a fleet that holds connections ({(kind is FaultKind.Disconnect ? "MQTT, HJ 212 or JT/T 808" : "MQTT")}); '{fleet}' is on {_fleets[fleet].Protocol.ToString().ToUpperInvariant()}.");
            }

            if (kind is FaultKind.Oversized && _fleets[fleet].Protocol is DeviceProtocol.Hj212 or DeviceProtocol.Jt808)
            {
                throw Problem(pointer + "/kind", $"an oversized fault sends a JSON payload over the limit, which '{fleet}' on {_fleets[fleet].Protocol.ToString().ToUpperInvariant()} cannot carry.");
            }

            var skew = TimeSpan.Zero;
            if (kind == FaultKind.ClockSkew)
            {
                if (f["skew"] is not { } skewNode)
                {
                    throw Problem(pointer, "a clockSkew fault says how far the clocks are off: skew: +10m or skew: -2h.");
                }

                var text = skewNode.GetValue<string>().Trim();
                var negative = text.StartsWith('-');
                skew = Duration(JsonValue.Create(text.TrimStart('-', '+'))!, pointer + "/skew");
                skew = negative ? -skew : skew;
            }

            return new FaultDefinition(kind, fleet, f["share"] is { } share ? Share(share) : 1.0, Duration(f["at"]!, pointer + "/at"),
                f["for"] is { } length ? Duration(length, pointer + "/for") : null, f["count"] is { } count ? (int)count.GetValue<long>() : 1, skew, document.LineOf(pointer))
            {
                Rate = f["rate"] is { } rate ? AsDouble(rate) : 0,
            };
        }

        private Expectation ReadExpectation(JsonObject e, string pointer, HashSet<string> fleetNames)
        {
            var fleet = e["fleet"]?.GetValue<string>();
            if (fleet is not null && !fleetNames.Contains(fleet))
            {
                throw Problem(pointer + "/fleet", $"no fleet is named '{fleet}'.");
            }

            var line = document.LineOf(pointer);
            if (e["stored"] is { } stored)
            {
                return new Expectation(ExpectationKind.Stored, fleet, Share(stored), null, null, null, null, null, line);
            }

            if (e["acknowledged"] is { } acknowledged)
            {
                return new Expectation(ExpectationKind.Acknowledged, fleet, Share(acknowledged), null, null, null, null, null, line);
            }

            if (e["latencyP99"] is { } latency)
            {
                return new Expectation(ExpectationKind.LatencyP99, fleet, 0, null, null, null, null, Duration(latency, pointer + "/latencyP99"), line);
            }

            if (e["rpcAnswered"] is { } answered)
            {
                return new Expectation(ExpectationKind.RpcAnswered, fleet, Share(answered), null, null, null, null, null, line);
            }

            if (e["faultsHandled"] is { } handled)
            {
                if (!handled.GetValue<bool>())
                {
                    throw Problem(pointer + "/faultsHandled", "faultsHandled is only ever expected to be true.");
                }

                return new Expectation(ExpectationKind.FaultsHandled, fleet, 1, null, null, null, null, null, line);
            }

            if (e["behaves"] is { } behaves)
            {
                var device = behaves.GetValue<string>();
                if (!_fleets.TryGetValue(device, out var real) || real.Real is null)
                {
                    throw Problem(pointer + "/behaves", $"no real device is named '{device}' (they are declared under realDevices).");
                }

                return new Expectation(ExpectationKind.Behaves, device, 1, null, null, null, null, null, line);
            }

            if (e["noAlarm"] is { } none)
            {
                return new Expectation(ExpectationKind.NoAlarm, fleet, 0, none.GetValue<string>(), null, null, null, null, line);
            }

            int? count = null;
            var share = 0.0;
            if (e["devices"] is { } devices)
            {
                if (devices.GetValueKind() == JsonValueKind.Number && devices.AsValue().TryGetValue<long>(out var n))
                {
                    count = (int)n;
                }
                else
                {
                    share = Share(devices);
                }
            }
            else
            {
                count = 1;
            }

            var raisedBy = e["raisedBy"] is { } raised ? Duration(raised, pointer + "/raisedBy") : (TimeSpan?)null;
            var clearedBy = e["clearedBy"] is { } cleared ? Duration(cleared, pointer + "/clearedBy") : (TimeSpan?)null;
            if (raisedBy is { } r && clearedBy is { } c && c < r)
            {
                throw Problem(pointer + "/clearedBy", "clearedBy is earlier than raisedBy.");
            }

            return new Expectation(ExpectationKind.Alarm, fleet, share, e["alarm"]!.GetValue<string>(), count, raisedBy, clearedBy, null, line);
        }

        private FleetDefinition ReadFleet(JsonObject f, string pointer, HashSet<string> profileNames, HashSet<string> fleetNames, DateTimeOffset startTime)
        {
            var name = f["name"]!.GetValue<string>();
            if (!fleetNames.Add(name))
            {
                throw Problem(pointer + "/name", $"two fleets are named '{name}'; device names would repeat.");
            }

            var count = (int)f["count"]!.GetValue<long>();
            if (count > 1 && !DeviceNames.HasNumber(name))
            {
                throw Problem(pointer + "/name", $"a fleet of {count} devices needs {{n}} in its name (such as '{name}-{{n}}'), or every device would have the same name.");
            }

            var profile = f["profile"]?.GetValue<string>();
            if (profile is not null && !profileNames.Contains(profile))
            {
                throw Problem(pointer + "/profile", $"the profile '{profile}' is not defined under profiles.");
            }

            var interval = Duration(f["interval"]!, pointer + "/interval");
            if (interval <= TimeSpan.Zero)
            {
                throw Problem(pointer + "/interval", "a fleet reports at an interval of more than zero.");
            }

            var protocol = f["protocol"]?.GetValue<string>() switch
            {
                null or "mqtt" => DeviceProtocol.Mqtt,
                "hj212" => DeviceProtocol.Hj212,
                "jt808" => DeviceProtocol.Jt808,
                "coap" => DeviceProtocol.Coap,
                _ => DeviceProtocol.Http,
            };
            var telemetry = Models(f["telemetry"] as JsonObject, pointer + "/telemetry", startTime);
            var events = new List<EventDefinition>();
            var eventArray = f["events"]?.AsArray() ?? [];
            for (var i = 0; i < eventArray.Count; i++)
            {
                var e = eventArray[i]!.AsObject();
                var at = pointer + $"/events/{i}";
                var models = Models(e["telemetry"] as JsonObject, at + "/telemetry", startTime);
                foreach (var key in models.Keys)
                {
                    if (!telemetry.ContainsKey(key))
                    {
                        throw Problem(at + "/telemetry/" + key, $"the event changes '{key}', which the fleet does not report; add it under the fleet's telemetry.");
                    }
                }

                events.Add(new EventDefinition(Duration(e["at"]!, at + "/at"), e["for"] is { } length ? Duration(length, at + "/for") : null,
                    e["share"] is { } share ? Share(share) : 1.0, models, document.LineOf(at)));
            }

            var behaviour = Behaviour.Default;
            if (f["behaviour"] is JsonObject b)
            {
                var reconnect = b["reconnect"] as JsonObject;
                var rpc = b["rpc"] as JsonObject;
                behaviour = new Behaviour(
                    reconnect?["initial"] is { } initial ? Duration(initial, pointer + "/behaviour/reconnect/initial") : behaviour.ReconnectInitial,
                    reconnect?["max"] is { } max ? Duration(max, pointer + "/behaviour/reconnect/max") : behaviour.ReconnectMax,
                    rpc?["delay"] is { } delay ? Duration(delay, pointer + "/behaviour/rpc/delay") : TimeSpan.Zero,
                    rpc?["errors"] is { } errors ? Share(errors) : 0,
                    b["sharedAttributes"]?.GetValue<bool>() ?? false);
                if (behaviour.ReconnectMax < behaviour.ReconnectInitial)
                {
                    throw Problem(pointer + "/behaviour/reconnect/max", "the longest wait before reconnecting is shorter than the first.");
                }
            }

            string? gatewayName = null;
            var perGateway = 0;
            if (f["gateway"] is JsonObject gateway)
            {
                if (protocol != DeviceProtocol.Mqtt)
                {
                    throw Problem(pointer + "/gateway", "devices behind a gateway report over MQTT (ThingsBoard's gateway API); drop protocol: http or the gateway.");
                }

                gatewayName = gateway["name"]!.GetValue<string>();
                perGateway = (int)gateway["devices"]!.GetValue<long>();
                if (count > perGateway && !DeviceNames.HasNumber(gatewayName))
                {
                    throw Problem(pointer + "/gateway/name", $"{count} devices at {perGateway} per gateway need more than one gateway: put {{n}} in the gateways' name.");
                }
            }

            var route = f["route"] is JsonObject r ? ProtocolFleets.Route(r, pointer + "/route", document.LineOf(pointer + "/route"), Problem) : null;
            ProtocolFleets.Check(protocol, telemetry.Keys, route, pointer, Problem);
            if (f["attributes"] is not null && protocol is DeviceProtocol.Hj212 or DeviceProtocol.Jt808)
            {
                throw Problem(pointer + "/attributes", $"{(protocol == DeviceProtocol.Hj212 ? "an HJ 212 station" : "a JT/T 808 terminal")} has no client attributes to send; set them on the profile or the devices instead.");
            }

            return new FleetDefinition(name, count, profile, protocol, interval, f["jitter"] is { } jitter ? Share(jitter) : 0,
                telemetry, f["attributes"]?.DeepClone().AsObject(), events, document.LineOf(pointer))
            {
                GatewayName = gatewayName,
                DevicesPerGateway = perGateway,
                Mqtt5 = f["mqttVersion"]?.GetValue<string>() == "5",
                KeepAlive = f["keepAlive"] is { } keepAlive ? Duration(keepAlive, pointer + "/keepAlive") : TimeSpan.FromSeconds(60),
                Behaviour = behaviour,
                Route = route,
            };
        }

        private Dictionary<string, ValueModel> Models(JsonObject? models, string pointer, DateTimeOffset startTime)
        {
            var result = new Dictionary<string, ValueModel>(StringComparer.Ordinal);
            foreach (var (key, node) in models ?? [])
            {
                result[key] = Model(node!, pointer + "/" + key, startTime);
            }

            return result;
        }

        private ValueModel Model(JsonNode node, string pointer, DateTimeOffset startTime)
        {
            if (node is JsonValue value)
            {
                return new ConstantModel(Constant(value));
            }

            var m = node.AsObject();
            ValueModel model = m["model"]!.GetValue<string>() switch
            {
                "constant" => new ConstantModel(Constant(m["value"]!.AsValue())),
                "randomWalk" => new RandomWalkModel(Number(m, "start"), Number(m, "step")),
                "sine" => new SineModel(Number(m, "mean"), Number(m, "amplitude"), Period(m, pointer), m["phase"] is { } phase ? Duration(phase, pointer + "/phase") : TimeSpan.Zero),
                "diurnal" => new DiurnalModel(m["mean"] is null ? 0 : Number(m, "mean"), m["amplitude"] is null ? 0 : Number(m, "amplitude"),
                    m["peakHour"] is null ? 14 : Number(m, "peakHour"), m["hours"]?.AsArray().Select(h => AsDouble(h!)).ToArray())
                {
                    StartHour = startTime.TimeOfDay.TotalHours,
                },
                "csv" => Csv(m, pointer),
                _ => Steps(m, pointer),
            };
            if (m["min"] is not null && m["max"] is not null && Number(m, "min") > Number(m, "max"))
            {
                throw Problem(pointer + "/min", "min is larger than max.");
            }

            return model with
            {
                Noise = m["noise"] is null ? 0 : Number(m, "noise"),
                Round = m["round"] is { } round ? (int)round.GetValue<long>() : null,
                Min = m["min"] is null ? null : Number(m, "min"),
                Max = m["max"] is null ? null : Number(m, "max"),
            };
        }

        private TimeSpan Period(JsonObject m, string pointer)
        {
            var period = Duration(m["period"]!, pointer + "/period");
            return period > TimeSpan.Zero ? period : throw Problem(pointer + "/period", "a sine's period is more than zero.");
        }

        private CsvModel Csv(JsonObject m, string pointer)
        {
            var file = m["file"]!.GetValue<string>();
            var path = Path.IsPathRooted(file) ? file : Path.Combine(directory, file);
            if (!File.Exists(path))
            {
                throw Problem(pointer + "/file", $"the CSV file '{file}' was not found (looked for {Path.GetFullPath(path)}).");
            }

            var column = m["column"]!.GetValue<string>();
            var values = CsvModel.ReadColumn(File.ReadAllText(path), column, out var problem);
            return problem is null ? new CsvModel(file, column, values, m["loop"]?.GetValue<bool>() ?? true) : throw Problem(pointer + "/file", $"{file}: {problem}.");
        }

        private StepsModel Steps(JsonObject m, string pointer)
        {
            var steps = new List<(TimeSpan, double)>();
            var array = m["steps"]!.AsArray();
            for (var i = 0; i < array.Count; i++)
            {
                var at = Duration(array[i]!["at"]!, $"{pointer}/steps/{i}/at");
                if (steps.Count > 0 && at <= steps[^1].Item1)
                {
                    throw Problem($"{pointer}/steps/{i}/at", "steps are listed in time order, each later than the one before.");
                }

                steps.Add((at, AsDouble(array[i]!["value"]!)));
            }

            return new StepsModel(steps);
        }

        private static double Number(JsonObject m, string key) => AsDouble(m[key]!);

        /// <summary>A JSON number as a double, whether the YAML wrote it as an integer or not.</summary>
        private static double AsDouble(JsonNode node) => node.AsValue().TryGetValue<long>(out var integer) ? integer : node.GetValue<double>();

        private static SimValue Constant(JsonValue value) => value.GetValueKind() switch
        {
            JsonValueKind.Number => SimValue.Of(AsDouble(value)),
            JsonValueKind.True => new SimValue(0, null, true),
            JsonValueKind.False => new SimValue(0, null, false),
            _ => new SimValue(0, value.GetValue<string>()),
        };

        private TimeSpan Duration(JsonNode node, string pointer)
        {
            var text = node.GetValueKind() == JsonValueKind.Number ? AsDouble(node).ToString("R", CultureInfo.InvariantCulture) : node.GetValue<string>();
            return Durations.TryParse(text, out var value, out var problem) ? value : throw Problem(pointer, problem!);
        }

        private static double Share(JsonNode node) => node.GetValueKind() == JsonValueKind.Number
            ? AsDouble(node)
            : double.Parse(node.GetValue<string>().Trim().TrimEnd('%'), NumberStyles.Float, CultureInfo.InvariantCulture) / 100;
    }
}
