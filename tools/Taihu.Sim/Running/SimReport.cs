using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>An expectation and whether the run met it, with what was found.</summary>
public sealed record ExpectationResult(string Expected, bool Met, string Found, int Line)
{
    /// <summary>Not checked: the run had no way to (a plain MQTT server has no API to read back from).</summary>
    public bool Skipped { get; init; }

    public static ExpectationResult Skip(string expected, string why, int line) => new(expected, true, why, line) { Skipped = true };
}

/// <summary>An alarm the server raised during the run, in scenario time.</summary>
public sealed record AlarmSeen(string Type, string Severity, string Device, string Fleet, TimeSpan RaisedAt, TimeSpan? ClearedAt);

/// <summary>A fault as injected: what, where, when (scenario time), to how many devices, and the server's answers.</summary>
public sealed record FaultResult(string Kind, string Fleet, TimeSpan At, int Devices, IReadOnlyList<(string Outcome, int Count)> Outcomes, bool Handled, string Why, int Line);

/// <summary>The RPC calls made for one definition of the scenario.</summary>
public sealed record RpcResult(string Fleet, string Method, int Calls, int Answered, int AnsweredWithError, int TimedOut, int Failed, double P99Ms, string? FirstFailure, int Line)
{
    /// <summary>Calls not made because the run held the (real) device offline at the time.</summary>
    public int Offline { get; init; }
}

/// <summary>A real device as its proxy saw it during the run.</summary>
public sealed record RealDeviceResult(
    string Name, int Port, double? ConnectedAfterSeconds, int Connections, int TelemetrySent, int TelemetryAcknowledged, int PublishesSent,
    int MaxPerMinute, int MaxPayload, IReadOnlyCollection<string> Subscriptions, int RpcRequests, int RpcResponses, int AttributeUpdates,
    int AttributeUpdatesAcknowledged, IReadOnlyList<string> Drops)
{
    /// <summary>What the device did wrong against its declaration, in words; empty when it behaved.</summary>
    public List<string> Problems(RealDeviceDefinition definition, bool rpcCalled, bool attributesSet)
    {
        var problems = new List<string>();
        if (ConnectedAfterSeconds is null)
        {
            problems.Add($"never connected to 127.0.0.1:{Port}");
            return problems;
        }

        if (ConnectedAfterSeconds > definition.ConnectWithin.TotalSeconds)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"connected only after {ConnectedAfterSeconds:0.#} s"));
        }

        if (definition.MaxMessagesPerMinute is { } rate && MaxPerMinute > rate)
        {
            problems.Add($"sent {MaxPerMinute} messages within a minute (its limit: {rate})");
        }

        if (definition.MaxPayloadBytes is { } bytes && MaxPayload > bytes)
        {
            problems.Add($"sent a {MaxPayload}-byte payload (its limit: {bytes})");
        }

        if (rpcCalled && !Subscriptions.Any(s => s is "v1/devices/me/rpc/request/+" or "v1/devices/me/rpc/request/#" or "#" or "v1/devices/me/#"))
        {
            problems.Add("never subscribed to v1/devices/me/rpc/request/+, so it cannot receive RPC");
        }

        if (attributesSet && AttributeUpdatesAcknowledged == 0)
        {
            problems.Add(AttributeUpdates == 0 ? "did not receive its shared attributes (no subscription to v1/devices/me/attributes?)" : "received its shared attributes but never acknowledged them");
        }

        problems.AddRange(Drops.Where(d => !d.StartsWith("reconnected with back-off", StringComparison.Ordinal)));
        return problems;
    }
}

/// <summary>One fleet's numbers.</summary>
public sealed record FleetResult(string Name, int Devices, long Sent, long Acknowledged, long Failed, long Stored, double P50Ms, double P99Ms)
{
    /// <summary>Reports skipped while devices were offline, times the server closed a device's connection, reconnects, RPC answered, attribute updates applied.</summary>
    public long MissedOffline { get; init; }

    public long ConnectionsLost { get; init; }

    public long Reconnects { get; init; }

    public long RpcAnswered { get; init; }

    public long AttributeUpdates { get; init; }
}

/// <summary>What a run did and whether it met the scenario's expectations; written as JSON and as one HTML file.</summary>
public sealed class SimReport
{
    public required string Scenario { get; init; }

    public required string? Description { get; init; }

    public required double Speed { get; init; }

    /// <summary>The scenario's duration (scenario time).</summary>
    public required TimeSpan Duration { get; init; }

    public required double Scale { get; init; }

    public required DateTimeOffset Started { get; init; }

    public required DateTimeOffset Ended { get; init; }

    public required string Tenant { get; init; }

    public required IReadOnlyList<FleetResult> Fleets { get; init; }

    public required IReadOnlyList<AlarmSeen> Alarms { get; init; }

    public required IReadOnlyList<FaultResult> Faults { get; init; }

    public required IReadOnlyList<RpcResult> Rpc { get; init; }

    public IReadOnlyList<RealDeviceResult> RealDevices { get; init; } = [];

    /// <summary>The simulator's own CPU (% of one core, over the run) and peak memory (MB).</summary>
    public (double CpuPercent, double MemoryMb) Simulator { get; internal set; }

    public required IReadOnlyList<ExpectationResult> Expectations { get; init; }

    /// <summary>Per second of the run: sent, acknowledged, failed, p50 and p99 (ms).</summary>
    public required IReadOnlyList<(long Sent, long Acknowledged, long Failed, double? P50, double? P99)> Timeline { get; init; }

    /// <summary>The server's CPU (% of one core) and memory (MB) each second, and where they were read.</summary>
    public required IReadOnlyList<(double Seconds, double? CpuPercent, double? MemoryMb)> Server { get; init; }

    public required string? ServerSource { get; init; }

    /// <summary>Points the server committed per second during the run (its own count, all tenants); empty when it does not say.</summary>
    public IReadOnlyList<(double Seconds, double PointsPerSecond)> ServerStored { get; init; } = [];

    /// <summary>What the reader must know about how the run was made: a plain MQTT server, a slice of the fleet.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    public bool Passed => Expectations.All(e => e.Met || e.Skipped);

    /// <param name="stored">Points read back per device id; null when the server has no API to read them from.</param>
    /// <param name="alarms">The tenant's alarms; null as for <paramref name="stored"/>.</param>
    internal static SimReport Build(Scenario scenario, ScenarioScaling scaling, SimTarget target, Provisioner provisioner, List<RunningDevice> devices, Dictionary<string, long>? stored,
        List<JsonElement>? alarms, Recorder total, Dictionary<string, Recorder> fleetRecorders, DateTimeOffset started, DateTimeOffset ended,
        List<FaultRun> faultRuns, List<RpcCallRun> callRuns, ServerSampler sampler, IReadOnlyList<string> notes)
    {
        var faults = faultRuns.Select(f =>
        {
            var handled = f.Handled(target.PlainMqtt, out var why);
            return new FaultResult(f.Definition.Kind.ToString(), f.Definition.Fleet, f.Definition.At, f.Devices.Count, f.Outcomes(), handled, why, f.Definition.Line);
        }).ToList();
        var rpc = callRuns.Select(c => new RpcResult(c.Definition.Fleet, c.Definition.Method, c.Calls, c.Answered, c.AnsweredWithError, c.TimedOut, c.Failed,
            c.P99.TotalMilliseconds, c.FirstFailure, c.Definition.Line) { Offline = c.Offline }).ToList();
        var byId = devices.ToDictionary(d => d.Provisioned.Id, StringComparer.OrdinalIgnoreCase);
        TimeSpan ScenarioAt(long ms) => scaling.ScenarioTime(TimeSpan.FromMilliseconds(ms - started.ToUnixTimeMilliseconds()));
        var seen = new List<AlarmSeen>();
        foreach (var alarm in alarms ?? [])
        {
            var originator = alarm.GetProperty("originator").GetProperty("id").GetString()!;
            if (!byId.TryGetValue(originator, out var device) || alarm.GetProperty("createdTime").GetInt64() < started.ToUnixTimeMilliseconds() - 1_000)
            {
                continue;
            }

            var cleared = alarm.TryGetProperty("cleared", out var c) && c.GetBoolean() && alarm.TryGetProperty("clearTs", out var clearTs) && clearTs.GetInt64() > 0
                ? ScenarioAt(clearTs.GetInt64()) : (TimeSpan?)null;
            seen.Add(new AlarmSeen(alarm.GetProperty("type").GetString()!, alarm.GetProperty("severity").GetString()!, device.Provisioned.Name,
                device.Provisioned.Fleet.Name, ScenarioAt(alarm.GetProperty("createdTime").GetInt64()), cleared));
        }

        seen.Sort((a, b) => a.RaisedAt.CompareTo(b.RaisedAt));
        var fleets = new List<FleetResult>();
        foreach (var fleet in scenario.Fleets)
        {
            var members = devices.Where(d => d.Provisioned.Fleet == fleet).ToList();
            var recorder = fleetRecorders[fleet.Name];
            fleets.Add(new FleetResult(fleet.Name, members.Count, recorder.Sent, recorder.Acknowledged, recorder.Failed, stored is null ? 0 : members.Sum(d => stored[d.Provisioned.Id]),
                recorder.Percentile(50).TotalMilliseconds, recorder.Percentile(99).TotalMilliseconds)
            {
                MissedOffline = members.Sum(d => d.MissedOffline),
                ConnectionsLost = members.Sum(d => (long)d.Connection.ConnectionsLost),
                Reconnects = members.Sum(d => (long)d.Connection.Reconnects),
                RpcAnswered = members.Sum(d => (long)d.Connection.RpcAnswered),
                AttributeUpdates = members.Sum(d => (long)d.Connection.AttributeUpdates),
            });
        }

        const string NoApi = "skipped: a plain MQTT server has no API to read it from";
        var realDevices = new List<RealDeviceResult>();
        foreach (var device in devices)
        {
            if (device.Connection is RealDeviceConnection real)
            {
                var w = real.Watch;
                realDevices.Add(new RealDeviceResult(device.Provisioned.Name, real.Proxy.Port,
                    w.FirstConnectedAt is { } at ? (double)(at - real.StartedAt) / System.Diagnostics.Stopwatch.Frequency : null, w.ConnectionsAccepted,
                    w.TelemetrySent, w.TelemetryAcknowledged, w.PublishesSent, w.MaxPerMinute, w.MaxPayload, w.Subscriptions, w.RpcRequests, w.RpcResponses,
                    w.AttributeUpdates, w.AttributeUpdatesAcknowledged, real.Drops));
            }
        }

        var results = new List<ExpectationResult>
        {
            // Every run: nothing the server acknowledged may be missing afterwards.
            stored is null ? ExpectationResult.Skip("no acknowledged point lost", NoApi, 0) : Lost(devices, stored),
        };
        foreach (var expectation in scenario.Expectations)
        {
            results.Add(stored is null && expectation.Kind is ExpectationKind.Stored or ExpectationKind.Alarm or ExpectationKind.NoAlarm or ExpectationKind.RpcAnswered
                ? ExpectationResult.Skip(expectation.Describe(), NoApi, expectation.Line)
                : expectation.Kind == ExpectationKind.Behaves
                    ? Behaves(expectation, scenario, realDevices, rpc, plainMqtt: target.PlainMqtt)
                    : Check(expectation, scaling, target.Slice, devices, stored ?? [], seen, fleetRecorders, total, faults, rpc));
        }

        return new SimReport
        {
            Scenario = scenario.Name,
            Description = scenario.Description,
            Speed = scaling.Speed,
            Duration = scenario.Duration,
            Scale = scaling.Scale,
            Started = started,
            Ended = ended,
            Tenant = target.PlainMqtt
                ? $"plain MQTT server at {target.MqttHost}:{target.MqttPort} (nothing provisioned)"
                : provisioner.ExistingTenant ? $"the existing tenant of {provisioner.TenantAdmin}"
                : $"sim {scenario.Name} {provisioner.RunId} (tenant administrator {provisioner.TenantAdmin})",
            Notes = notes,
            RealDevices = realDevices,
            Fleets = fleets,
            Alarms = seen,
            Faults = faults,
            Rpc = rpc,
            Expectations = results,
            Timeline = total.Timeline(),
            Server = sampler.Samples,
            ServerSource = sampler.Source,
            ServerStored = sampler.Stored,
        };
    }

    private static ExpectationResult Behaves(Expectation e, Scenario scenario, List<RealDeviceResult> realDevices, List<RpcResult> rpc, bool plainMqtt)
    {
        if (realDevices.Find(r => r.Name == e.Fleet) is not { } device)
        {
            return ExpectationResult.Skip(e.Describe(), "skipped: not in this slice of the fleet", e.Line);
        }

        var definition = scenario.Fleets.First(f => f.Name == e.Fleet).Real!;
        var problems = device.Problems(definition, rpc.Any(r => r.Fleet == e.Fleet), definition.SharedAttributes is not null && !plainMqtt);
        var found = problems.Count == 0
            ? string.Create(CultureInfo.InvariantCulture, $"connected after {device.ConnectedAfterSeconds:0.#} s; {device.TelemetrySent} telemetry messages, {device.TelemetryAcknowledged} acknowledged; at most {device.MaxPerMinute} messages a minute; {device.Drops.Count} drop(s) survived with back-off")
            : string.Join("; ", problems);
        return new ExpectationResult(e.Describe(), problems.Count == 0, found, e.Line);
    }

    private static ExpectationResult Lost(List<RunningDevice> devices, Dictionary<string, long> stored)
    {
        var short_ = devices.Where(d => stored[d.Provisioned.Id] < d.StoredTsCount).ToList();
        var acknowledged = devices.Sum(d => d.StoredTsCount);
        var found = short_.Count == 0
            ? $"all {acknowledged} acknowledged points found"
            : $"{short_.Sum(d => d.StoredTsCount - stored[d.Provisioned.Id])} acknowledged points missing at {short_.Count} device(s), e.g. {short_[0].Provisioned.Name}: {short_[0].StoredTsCount} acknowledged, {stored[short_[0].Provisioned.Id]} stored";
        return new ExpectationResult("no acknowledged point lost", short_.Count == 0, found, 0);
    }

    private static ExpectationResult Check(Expectation e, ScenarioScaling scaling, FleetSlice slice, List<RunningDevice> devices, Dictionary<string, long> stored,
        List<AlarmSeen> alarms, Dictionary<string, Recorder> fleetRecorders, Recorder total, List<FaultResult> faults, List<RpcResult> rpc)
    {
        var ci = CultureInfo.InvariantCulture;
        var members = devices.Where(d => e.Fleet is null || d.Provisioned.Fleet.Name == e.Fleet).ToList();
        switch (e.Kind)
        {
            case ExpectationKind.Stored:
            {
                var acknowledged = members.Sum(d => d.StoredTsCount);
                var found = members.Sum(d => Math.Min(stored[d.Provisioned.Id], d.StoredTsCount));
                var share = acknowledged == 0 ? 1 : (double)found / acknowledged;
                return new ExpectationResult(e.Describe(), share >= e.Share - 1e-9, string.Create(ci, $"{found} of {acknowledged} ({share:0.###%})"), e.Line);
            }

            case ExpectationKind.Acknowledged:
            {
                var sent = members.Sum(d => d.Sent);
                var acknowledged = members.Sum(d => d.Acknowledged);
                var share = sent == 0 ? 0 : (double)acknowledged / sent;
                return new ExpectationResult(e.Describe(), sent > 0 && share >= e.Share - 1e-9, string.Create(ci, $"{acknowledged} of {sent} ({share:0.###%})"), e.Line);
            }

            case ExpectationKind.LatencyP99:
            {
                var p99 = (e.Fleet is null ? total : fleetRecorders[e.Fleet]).Percentile(99);
                return new ExpectationResult(e.Describe(), p99 < e.Latency, string.Create(ci, $"p99 {p99.TotalMilliseconds:0.#} ms"), e.Line);
            }

            case ExpectationKind.RpcAnswered:
            {
                var calls = rpc.Where(r => e.Fleet is null || r.Fleet == e.Fleet).ToList();
                var made = calls.Sum(r => r.Calls);
                var answered = calls.Sum(r => r.Answered);
                var share = made == 0 ? 0 : (double)answered / made;
                var failure = calls.Select(r => r.FirstFailure).FirstOrDefault(f => f is not null);
                return new ExpectationResult(e.Describe(), made > 0 && share >= e.Share - 1e-9,
                    string.Create(ci, $"{answered} of {made} ({share:0.###%}); {calls.Sum(r => r.TimedOut)} timed out, {calls.Sum(r => r.Failed)} failed") + (calls.Sum(r => r.Offline) is > 0 and var offline ? string.Create(ci, $", {offline} not made while the run held the device offline") : "") + (failure is null ? "" : $", first failure: {failure}"), e.Line);
            }

            case ExpectationKind.FaultsHandled:
            {
                var unhandled = faults.Where(f => !f.Handled).ToList();
                return new ExpectationResult(e.Describe(), faults.Count > 0 && unhandled.Count == 0,
                    faults.Count == 0 ? "no faults were injected"
                    : unhandled.Count == 0 ? $"all {faults.Count} handled"
                    : $"{unhandled.Count} not handled: {unhandled[0].Kind} (line {unhandled[0].Line}): {unhandled[0].Why}", e.Line);
            }

            case ExpectationKind.NoAlarm:
            {
                var raised = alarms.Where(a => a.Type == e.AlarmType && (e.Fleet is null || a.Fleet == e.Fleet)).ToList();
                return new ExpectationResult(e.Describe(), raised.Count == 0,
                    raised.Count == 0 ? "none raised" : $"raised {raised.Count} time(s), first at {raised[0].Device} at {Durations.Format(Round(raised[0].RaisedAt))}", e.Line);
            }

            default:
            {
                // A count of devices is the fleet's first devices (as events pick them): a slice needs its part of them.
                var needed = e.Devices is { } n ? slice.CountOf(n) : Math.Max(1, (int)Math.Ceiling(e.Share * members.Count - 1e-9));
                var ofType = alarms.Where(a => a.Type == e.AlarmType && (e.Fleet is null || a.Fleet == e.Fleet)).ToList();
                var raisedInTime = ofType.Where(a => e.RaisedBy is not { } by || a.RaisedAt <= by).ToList();
                var clearedInTime = raisedInTime.Where(a => e.ClearedBy is not { } by || (a.ClearedAt is { } at && at <= by)).ToList();
                var raisedDevices = raisedInTime.Select(a => a.Device).Distinct().Count();
                var clearedDevices = clearedInTime.Select(a => a.Device).Distinct().Count();
                var met = raisedDevices >= needed && (e.ClearedBy is null || clearedDevices >= needed);
                var found = ofType.Count == 0
                    ? "never raised"
                    : $"raised at {ofType.Select(a => a.Device).Distinct().Count()} device(s), {raisedDevices} in time (first at {Durations.Format(Round(ofType[0].RaisedAt))})"
                        + (e.ClearedBy is null ? "" : $", cleared in time at {clearedDevices}");
                return new ExpectationResult(e.Describe(), met, found, e.Line);
            }
        }
    }

    private static TimeSpan Round(TimeSpan t) => TimeSpan.FromSeconds(Math.Round(t.TotalSeconds));

    /// <summary>The console summary: each expectation with its outcome.</summary>
    public string Summary()
    {
        var text = new StringBuilder();
        foreach (var e in Expectations)
        {
            text.Append(e.Skipped ? "  SKIP " : e.Met ? "  PASS " : "  FAIL ").Append(e.Expected).Append(e.Line > 0 ? $" (line {e.Line})" : "").Append(": ").AppendLine(e.Found);
        }

        text.Append(Passed ? "scenario passed" : $"scenario FAILED: {Expectations.Count(e => !e.Met)} of {Expectations.Count} expectation(s) not met");
        return text.ToString();
    }

    public JsonObject ToJson()
    {
        var ci = CultureInfo.InvariantCulture;
        var timeline = new JsonArray();
        foreach (var (sent, acknowledged, failed, p50, p99) in Timeline)
        {
            timeline.Add(new JsonArray(sent, acknowledged, failed, p50, p99));
        }

        return new JsonObject
        {
            ["scenario"] = Scenario,
            ["description"] = Description,
            ["speed"] = Speed,
            ["durationSeconds"] = Duration.TotalSeconds,
            ["scale"] = Scale,
            ["started"] = Started.ToString("O", ci),
            ["ended"] = Ended.ToString("O", ci),
            ["tenant"] = Tenant,
            ["passed"] = Passed,
            ["notes"] = new JsonArray([.. Notes.Select(n => (JsonNode)n)]),
            ["fleets"] = new JsonArray([.. Fleets.Select(f => (JsonNode)new JsonObject
            {
                ["name"] = f.Name, ["devices"] = f.Devices, ["sent"] = f.Sent, ["acknowledged"] = f.Acknowledged, ["failed"] = f.Failed, ["stored"] = f.Stored,
                ["p50Ms"] = Math.Round(f.P50Ms, 2), ["p99Ms"] = Math.Round(f.P99Ms, 2),
                ["missedOffline"] = f.MissedOffline, ["connectionsLost"] = f.ConnectionsLost, ["reconnects"] = f.Reconnects,
                ["rpcAnswered"] = f.RpcAnswered, ["attributeUpdates"] = f.AttributeUpdates,
            })]),
            ["alarms"] = new JsonArray([.. Alarms.Select(a => (JsonNode)new JsonObject
            {
                ["type"] = a.Type, ["severity"] = a.Severity, ["device"] = a.Device, ["fleet"] = a.Fleet,
                ["raisedAtSeconds"] = Math.Round(a.RaisedAt.TotalSeconds, 1), ["clearedAtSeconds"] = a.ClearedAt is { } c ? Math.Round(c.TotalSeconds, 1) : null,
            })]),
            ["faults"] = new JsonArray([.. Faults.Select(f => (JsonNode)new JsonObject
            {
                ["kind"] = f.Kind, ["fleet"] = f.Fleet, ["atSeconds"] = f.At.TotalSeconds, ["devices"] = f.Devices, ["handled"] = f.Handled, ["why"] = f.Why, ["line"] = f.Line,
                ["outcomes"] = new JsonObject(f.Outcomes.Select(o => new KeyValuePair<string, JsonNode?>(o.Outcome, o.Count))),
            })]),
            ["rpc"] = new JsonArray([.. Rpc.Select(r => (JsonNode)new JsonObject
            {
                ["fleet"] = r.Fleet, ["method"] = r.Method, ["calls"] = r.Calls, ["answered"] = r.Answered, ["answeredWithError"] = r.AnsweredWithError,
                ["timedOut"] = r.TimedOut, ["failed"] = r.Failed, ["offline"] = r.Offline, ["p99Ms"] = Math.Round(r.P99Ms, 1), ["firstFailure"] = r.FirstFailure,
            })]),
            ["realDevices"] = new JsonArray([.. RealDevices.Select(r => (JsonNode)new JsonObject
            {
                ["name"] = r.Name, ["port"] = r.Port, ["connectedAfterSeconds"] = r.ConnectedAfterSeconds is { } c ? Math.Round(c, 2) : null, ["connections"] = r.Connections,
                ["telemetrySent"] = r.TelemetrySent, ["telemetryAcknowledged"] = r.TelemetryAcknowledged, ["publishesSent"] = r.PublishesSent,
                ["maxPerMinute"] = r.MaxPerMinute, ["maxPayloadBytes"] = r.MaxPayload, ["subscriptions"] = new JsonArray([.. r.Subscriptions.Order(StringComparer.Ordinal).Select(s => (JsonNode)s)]),
                ["rpcRequests"] = r.RpcRequests, ["rpcResponses"] = r.RpcResponses, ["attributeUpdates"] = r.AttributeUpdates, ["attributeUpdatesAcknowledged"] = r.AttributeUpdatesAcknowledged,
                ["drops"] = new JsonArray([.. r.Drops.Select(d => (JsonNode)d)]),
            })]),
            ["expectations"] = new JsonArray([.. Expectations.Select(e => (JsonNode)new JsonObject
            {
                ["expected"] = e.Expected, ["met"] = e.Met, ["skipped"] = e.Skipped, ["found"] = e.Found, ["line"] = e.Line,
            })]),
            ["simulator"] = new JsonObject { ["cpuPercent"] = Math.Round(Simulator.CpuPercent, 1), ["peakMemoryMb"] = Math.Round(Simulator.MemoryMb, 1) },
            ["server"] = new JsonObject
            {
                ["source"] = ServerSource,
                ["stored"] = new JsonArray([.. ServerStored.Select(x => (JsonNode)new JsonArray(Math.Round(x.Seconds, 2), Math.Round(x.PointsPerSecond, 1)))]),
                ["samples"] = new JsonArray([.. Server.Select(x => (JsonNode)new JsonArray(Math.Round(x.Seconds, 2), x.CpuPercent is { } c ? Math.Round(c, 1) : null, x.MemoryMb is { } m ? Math.Round(m, 1) : null))]),
            },
            ["timelineColumns"] = new JsonArray("sent", "acknowledged", "failed", "p50Ms", "p99Ms"),
            ["timeline"] = timeline,
        };
    }

    /// <summary>Writes <c>report.json</c> and <c>report.html</c> into <paramref name="directory"/>; returns the HTML file's path.</summary>
    public string Write(string directory)
    {
        Directory.CreateDirectory(directory);
        var json = ToJson();
        File.WriteAllText(Path.Combine(directory, "report.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var html = Path.Combine(directory, "report.html");
        File.WriteAllText(html, ReportHtml.Render(this, json));
        return html;
    }
}
