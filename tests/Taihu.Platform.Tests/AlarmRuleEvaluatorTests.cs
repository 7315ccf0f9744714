using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Taihu.Platform.Alarms;
using Taihu.Platform.Rules;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// The evaluator on fake time: each spec, predicate, dynamic values, schedules, severity changes and clear rules,
/// driven by timestamped points and attribute changes as ThingsBoard's device profile node takes them.
/// </summary>
public sealed class AlarmRuleEvaluatorTests
{
    // Monday 2026-01-05 00:00 UTC.
    private static readonly DateTimeOffset s_monday = new(2026, 1, 5, 0, 0, 0, TimeSpan.Zero);
    private const long Minute = 60_000;

    private readonly FakeTimeProvider _time = new(s_monday);
    private readonly AlarmRuleEvaluator _evaluator;
    private readonly List<AlarmDecision> _decisions = [];

    public AlarmRuleEvaluatorTests() => _evaluator = new AlarmRuleEvaluator(_time);

    private static long T0 => s_monday.ToUnixTimeMilliseconds();

    private static CompiledAlarmRules Compile(string alarmsJson)
    {
        using var document = JsonDocument.Parse(alarmsJson);
        return new CompiledAlarmRules(AlarmRuleParser.Parse(document.RootElement));
    }

    private static string Numeric(string key, string operation, double value, string keyType = "TIME_SERIES", string? dynamic = null) =>
        $$"""{"key": {"type": "{{keyType}}", "key": "{{key}}"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "{{operation}}", "value": {"defaultValue": {{value}}, "dynamicValue": {{dynamic ?? "null"}} } } }""";

    private static string Rule(string filters, string spec = """{"type": "SIMPLE"}""", string schedule = "null", string details = "null") =>
        $$"""{"condition": {"condition": [{{filters}}], "spec": {{spec}}}, "schedule": {{schedule}}, "alarmDetails": {{details}}}""";

    private static string Alarm(string type, string createRules, string clearRule = "null") =>
        $$"""{"id": "{{type}}-id", "alarmType": "{{type}}", "createRules": {{{createRules}}}, "clearRule": {{clearRule}}, "propagate": false}""";

    private List<AlarmDecision> Telemetry(DeviceRuleState state, params (long Ts, string Key, double Value)[] points)
    {
        _decisions.Clear();
        var batch = new TelemetryPoint[points.Length];
        for (var i = 0; i < points.Length; i++)
        {
            batch[i] = new TelemetryPoint(points[i].Key, points[i].Ts, KvValue.Of(points[i].Value));
        }

        _evaluator.EvaluateTelemetry(state, batch, default, _decisions);
        return [.. _decisions];
    }

    private List<AlarmDecision> Attributes(DeviceRuleState state, OwnerAttributes owners = default, params (string Key, KvValue Value)[] attributes)
    {
        _decisions.Clear();
        _evaluator.EvaluateAttributes(state, attributes.Select(a => new AttributeEntry(a.Key, 0, a.Value)).ToArray(), owners, _decisions);
        return [.. _decisions];
    }

    private List<AlarmDecision> Recheck(DeviceRuleState state)
    {
        _decisions.Clear();
        _evaluator.Recheck(state, default, _decisions);
        return [.. _decisions];
    }

    /// <summary>The example: MAJOR when pm25 stays above 75 for (longer than) 10 minutes, measured on the points' timestamps.</summary>
    private static string Pm25Alarm(string clear = "null") => "[" + Alarm("High PM2.5",
        "\"MAJOR\": " + Rule(Numeric("pm25", "GREATER", 75), """{"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 10}}""", details: "\"pm2.5 at ${pm25}\""),
        clear) + "]";

    [Fact]
    public void Duration_pm25_above_75_for_10_minutes_fires_on_the_points_timestamps()
    {
        var state = new DeviceRuleState(Compile(Pm25Alarm()));

        Assert.Empty(Telemetry(state, (T0, "pm25", 80)));
        Assert.Empty(Telemetry(state, (T0 + 4 * Minute, "pm25", 90), (T0 + 5 * Minute, "pm25", 91)));
        // Exactly 10 minutes is not longer than 10 minutes (ThingsBoard compares with >).
        Assert.Empty(Telemetry(state, (T0 + 10 * Minute, "pm25", 85)));
        // A point that repeats the last timestamp adds nothing.
        Assert.Empty(Telemetry(state, (T0 + 10 * Minute, "pm25", 86)));

        var decision = Assert.Single(Telemetry(state, (T0 + 10 * Minute + 1, "pm25", 88)));
        Assert.Equal(AlarmDecisionKind.Create, decision.Kind);
        Assert.Equal(("High PM2.5", "High PM2.5-id", AlarmSeverity.Major, T0 + 10 * Minute + 1), (decision.AlarmType, decision.AlarmId, decision.Severity, decision.Ts));
        Assert.Equal("pm2.5 at 88", decision.Details);
        Assert.Equal(KvValue.Of(88d), Assert.Single(decision.Values, v => v.Key == "pm25").Value);
        Assert.Equal(AlarmSeverity.Major, state.ActiveSeverity("High PM2.5"));
    }

    [Fact]
    public void Duration_starts_over_when_the_condition_breaks_and_ignores_other_keys()
    {
        var state = new DeviceRuleState(Compile(Pm25Alarm()));

        Assert.Empty(Telemetry(state, (T0, "pm25", 80), (T0 + 9 * Minute, "pm25", 80)));
        Assert.Empty(Telemetry(state, (T0 + 9 * Minute + 30_000, "pm25", 60)));
        // A key no rule reads neither counts time nor breaks it.
        Assert.Empty(Telemetry(state, (T0 + 15 * Minute, "temperature", 20)));
        Assert.Empty(Telemetry(state, (T0 + 10 * Minute, "pm25", 80), (T0 + 20 * Minute, "pm25", 80)));
        Assert.Equal(AlarmDecisionKind.Create, Assert.Single(Telemetry(state, (T0 + 20 * Minute + 1, "pm25", 80))).Kind);
    }

    [Fact]
    public void Duration_fires_on_the_periodic_recheck_on_server_time_without_a_new_point()
    {
        var state = new DeviceRuleState(Compile(Pm25Alarm()));
        Assert.Empty(Telemetry(state, (T0, "pm25", 80), (T0 + 2 * Minute, "pm25", 80)));

        _time.SetUtcNow(s_monday.AddMinutes(10));
        Assert.Empty(Recheck(state));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var decision = Assert.Single(Recheck(state));
        Assert.Equal((AlarmDecisionKind.Create, AlarmSeverity.Major, T0 + 10 * Minute + 1), (decision.Kind, decision.Severity, decision.Ts));
    }

    [Fact]
    public void A_recheck_counts_time_without_storing_it_and_keeps_progress_when_device_time_is_ahead()
    {
        var state = new DeviceRuleState(Compile(Pm25Alarm()));
        Assert.Empty(Telemetry(state, (T0 + 5 * Minute, "pm25", 80)));

        // Server time behind the device's points: nothing counts, nothing is forgotten.
        Assert.Empty(Recheck(state));
        _time.SetUtcNow(s_monday.AddMinutes(14));
        Assert.Empty(Recheck(state));
        // The recheck at 14 minutes did not store 9 minutes: a point below the threshold ends the run, and one at
        // 15 minutes on the points' own clock has 10 minutes, not yet longer.
        Assert.Empty(Telemetry(state, (T0 + 15 * Minute, "pm25", 80)));
        Assert.Single(Telemetry(state, (T0 + 15 * Minute + 1, "pm25", 80)));
    }

    [Fact]
    public void Repeating_fires_on_the_nth_true_evaluation_in_a_row()
    {
        var rules = Compile("[" + Alarm("Vibration",
            "\"WARNING\": " + Rule(Numeric("vibration", "GREATER_OR_EQUAL", 5), """{"type": "REPEATING", "predicate": {"defaultValue": 3}}""")) + "]");
        var state = new DeviceRuleState(rules);

        Assert.Empty(Telemetry(state, (T0, "vibration", 6), (T0 + 1, "vibration", 7)));
        Assert.Empty(Telemetry(state, (T0 + 2, "vibration", 1)));
        Assert.Empty(Telemetry(state, (T0 + 3, "vibration", 5), (T0 + 4, "vibration", 9)));
        var decision = Assert.Single(Telemetry(state, (T0 + 5, "vibration", 5)));
        Assert.Equal((AlarmDecisionKind.Create, AlarmSeverity.Warning, T0 + 5), (decision.Kind, decision.Severity, decision.Ts));
    }

    [Fact]
    public void Severity_goes_up_and_down_with_the_highest_rule_that_holds_and_the_clear_rule_clears()
    {
        var rules = Compile("[" + Alarm("Temperature",
            "\"CRITICAL\": " + Rule(Numeric("t", "GREATER", 50)) + ", \"MAJOR\": " + Rule(Numeric("t", "GREATER", 30)),
            Rule(Numeric("t", "LESS", 25))) + "]");
        var state = new DeviceRuleState(rules);

        Assert.Empty(Telemetry(state, (T0, "t", 29)));
        Assert.Equal((AlarmDecisionKind.Create, AlarmSeverity.Major), Only(Telemetry(state, (T0 + 1, "t", 35))));
        var up = Assert.Single(Telemetry(state, (T0 + 2, "t", 55)));
        Assert.Equal((AlarmDecisionKind.SeverityChange, AlarmSeverity.Critical, AlarmSeverity.Major), (up.Kind, up.Severity, up.PreviousSeverity));
        var down = Assert.Single(Telemetry(state, (T0 + 3, "t", 40)));
        Assert.Equal((AlarmDecisionKind.SeverityChange, AlarmSeverity.Major, AlarmSeverity.Critical), (down.Kind, down.Severity, down.PreviousSeverity));
        // Between the rules: no create rule holds and the clear rule does not either: the alarm stays.
        Assert.Empty(Telemetry(state, (T0 + 4, "t", 27)));
        Assert.Equal(AlarmSeverity.Major, state.ActiveSeverity("Temperature"));
        var clear = Assert.Single(Telemetry(state, (T0 + 5, "t", 20)));
        Assert.Equal((AlarmDecisionKind.Clear, AlarmSeverity.Major, T0 + 5), (clear.Kind, clear.Severity, clear.Ts));
        Assert.Null(state.ActiveSeverity("Temperature"));
        Assert.Empty(Telemetry(state, (T0 + 6, "t", 10)));
        Assert.Equal((AlarmDecisionKind.Create, AlarmSeverity.Critical), Only(Telemetry(state, (T0 + 7, "t", 60))));
    }

    [Fact]
    public void Points_that_keep_an_alarm_up_give_one_update_per_batch_and_a_batch_may_raise_and_clear()
    {
        var rules = Compile("[" + Alarm("Hot", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 30)), Rule(Numeric("t", "LESS", 25))) + "]");
        var state = new DeviceRuleState(rules);

        var decisions = Telemetry(state, (T0, "t", 31), (T0 + 1, "t", 20), (T0 + 2, "t", 40));
        Assert.Equal([AlarmDecisionKind.Create, AlarmDecisionKind.Clear, AlarmDecisionKind.Create], decisions.Select(d => d.Kind));

        var update = Assert.Single(Telemetry(state, (T0 + 3, "t", 41), (T0 + 4, "t", 42), (T0 + 5, "t", 43)));
        Assert.Equal((AlarmDecisionKind.Update, T0 + 5), (update.Kind, update.Ts));
        Assert.Equal(KvValue.Of(43d), update.Values[0].Value);
    }

    [Fact]
    public void Complex_and_or_predicates_all_filters_and_constants()
    {
        // (t < 0 OR t > 40) AND humidity in [20, 80] AND a constant that holds.
        var outOfRange = """{"key": {"type": "TIME_SERIES", "key": "t"}, "valueType": "NUMERIC", "predicate": {"type": "COMPLEX", "operation": "OR", "predicates": [{"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 0}}, {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 40}}]}}""";
        var humidity = """{"key": {"type": "TIME_SERIES", "key": "h"}, "valueType": "NUMERIC", "predicate": {"type": "COMPLEX", "operation": "AND", "predicates": [{"type": "NUMERIC", "operation": "GREATER_OR_EQUAL", "value": {"defaultValue": 20}}, {"type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": {"defaultValue": 80}}]}}""";
        var constant = """{"key": {"type": "CONSTANT", "key": "on"}, "valueType": "NUMERIC", "value": 1, "predicate": {"type": "NUMERIC", "operation": "EQUAL", "value": {"defaultValue": 1}}}""";
        var state = new DeviceRuleState(Compile("[" + Alarm("Range", "\"MINOR\": " + Rule(outOfRange + "," + humidity + "," + constant)) + "]"));

        // A filter whose key has no value yet fails.
        Assert.Empty(Telemetry(state, (T0, "t", 50)));
        Assert.Empty(Telemetry(state, (T0 + 1, "h", 90)));
        Assert.Empty(Telemetry(state, (T0 + 2, "t", 20), (T0 + 2, "h", 50)));
        Assert.Single(Telemetry(state, (T0 + 3, "t", -5)));
    }

    [Fact]
    public void String_predicates_with_ignore_case_and_in_lists()
    {
        static string Text(string operation, string value, bool ignoreCase) =>
            $$"""{"key": {"type": "TIME_SERIES", "key": "mode"}, "valueType": "STRING", "predicate": {"type": "STRING", "operation": "{{operation}}", "ignoreCase": {{(ignoreCase ? "true" : "false")}}, "value": {"defaultValue": "{{value}}"} } }""";

        bool Holds(string operation, string value, bool ignoreCase, string actual)
        {
            var state = new DeviceRuleState(Compile("[" + Alarm("Mode", "\"MINOR\": " + Rule(Text(operation, value, ignoreCase))) + "]"));
            _decisions.Clear();
            _evaluator.EvaluateTelemetry(state, new[] { new TelemetryPoint("mode", T0, KvValue.Of(actual)) }, default, _decisions);
            return _decisions.Count == 1;
        }

        Assert.True(Holds("EQUAL", "Fault", false, "Fault"));
        Assert.False(Holds("EQUAL", "Fault", false, "fault"));
        Assert.True(Holds("EQUAL", "Fault", true, "FAULT"));
        Assert.True(Holds("NOT_EQUAL", "Fault", false, "ok"));
        Assert.True(Holds("STARTS_WITH", "err", true, "ERR-42"));
        Assert.True(Holds("ENDS_WITH", "-42", false, "ERR-42"));
        Assert.True(Holds("CONTAINS", "rr", false, "ERR-err"));
        Assert.False(Holds("NOT_CONTAINS", "rr", false, "ERR-err"));
        Assert.True(Holds("IN", "idle, 'run', fault", true, "RUN"));
        Assert.False(Holds("IN", "idle,run", false, "runs"));
        Assert.True(Holds("NOT_IN", "idle,run", false, "fault"));
        Assert.False(Holds("NOT_IN", "idle,run", false, "idle"));
    }

    [Fact]
    public void Dynamic_values_come_from_device_attributes_then_tenant_when_inherited_else_the_default()
    {
        var threshold = """{"sourceType": "CURRENT_DEVICE", "sourceAttribute": "limit", "inherit": true}""";
        var rules = Compile("[" + Alarm("Over", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 100, dynamic: threshold)), Rule(Numeric("t", "LESS", 0))) + "]");

        // No attribute anywhere: the default 100.
        var state = new DeviceRuleState(rules);
        Assert.Empty(Telemetry(state, (T0, "t", 60)));
        Assert.Single(Telemetry(state, (T0 + 1, "t", 101)));

        // The device's attribute, seeded at start.
        state = new DeviceRuleState(rules);
        state.Seed(RuleKeyType.Attribute, "limit", KvValue.Of(50L));
        Assert.Single(Telemetry(state, (T0, "t", 60)));

        // Inherited from the tenant when the device has none.
        state = new DeviceRuleState(rules);
        _decisions.Clear();
        var tenant = new Dictionary<string, KvValue> { ["limit"] = KvValue.Of(10L) };
        _evaluator.EvaluateTelemetry(state, new[] { new TelemetryPoint("t", T0, KvValue.Of(20L)) }, new OwnerAttributes(null, tenant), _decisions);
        Assert.Single(_decisions);
    }

    [Fact]
    public void A_duration_taken_from_an_attribute()
    {
        var rules = Compile("[" + Alarm("Slow", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 0),
            """{"type": "DURATION", "unit": "SECONDS", "predicate": {"defaultValue": 600, "dynamicValue": {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "window"}}}""")) + "]");
        var state = new DeviceRuleState(rules);
        state.Seed(RuleKeyType.Attribute, "window", KvValue.Of(5L));

        Assert.Empty(Telemetry(state, (T0, "t", 1), (T0 + 5_000, "t", 1)));
        Assert.Single(Telemetry(state, (T0 + 5_001, "t", 1)));
    }

    [Fact]
    public void Inactivity_rule_on_the_active_attribute_raises_and_clears_and_attributes_do_not_drive_time_series_rules()
    {
        var inactive = """{"key": {"type": "ATTRIBUTE", "key": "active"}, "valueType": "BOOLEAN", "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": false}}}""";
        var activeAgain = """{"key": {"type": "ATTRIBUTE", "key": "active"}, "valueType": "BOOLEAN", "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": true}}}""";
        var rules = Compile("[" + Alarm("Inactive", "\"MINOR\": " + Rule(inactive), Rule(activeAgain)) + ","
            + Alarm("Hot", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 30) + "," + Numeric("limit", "GREATER", 0, "ATTRIBUTE"))) + "]");
        var state = new DeviceRuleState(rules);

        _time.SetUtcNow(s_monday.AddMinutes(30));
        var raised = Assert.Single(Attributes(state, default, ("active", KvValue.Of(false))));
        Assert.Equal((AlarmDecisionKind.Create, "Inactive", AlarmSeverity.Minor, T0 + 30 * Minute), (raised.Kind, raised.AlarmType, raised.Severity, raised.Ts));
        Assert.Equal(AlarmDecisionKind.Clear, Assert.Single(Attributes(state, default, ("active", KvValue.Of(true)))).Kind);

        // "Hot" reads a time series: an attribute change alone does not evaluate it, the next point does.
        Assert.Empty(Telemetry(state, (T0, "t", 35)));
        Assert.Empty(Attributes(state, default, ("limit", KvValue.Of(1L))));
        Assert.Equal("Hot", Assert.Single(Telemetry(state, (T0 + 1, "t", 35))).AlarmType);
    }

    [Fact]
    public void Specific_time_schedule_is_checked_at_the_points_time_in_its_time_zone()
    {
        // Weekdays 08:00 to 18:00 in Berlin (UTC+1 in January).
        var schedule = """{"type": "SPECIFIC_TIME", "timezone": "Europe/Berlin", "daysOfWeek": [1,2,3,4,5], "startsOn": 28800000, "endsOn": 64800000}""";
        var state = new DeviceRuleState(Compile("[" + Alarm("Hot", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 30), schedule: schedule)) + "]"));

        var saturdayNoon = new DateTimeOffset(2026, 1, 10, 11, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        var mondayBefore8Berlin = new DateTimeOffset(2026, 1, 5, 6, 59, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        var mondayAt8Berlin = new DateTimeOffset(2026, 1, 5, 7, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        Assert.Empty(Telemetry(state, (saturdayNoon, "t", 40)));
        Assert.Empty(Telemetry(state, (mondayBefore8Berlin, "t", 40)));
        Assert.Single(Telemetry(state, (mondayAt8Berlin, "t", 40)));
    }

    [Fact]
    public void Custom_schedule_uses_the_item_of_the_day_and_a_window_across_midnight()
    {
        // Mondays from 22:00 to 06:00 UTC; Tuesdays disabled; no item for other days.
        var schedule = """{"type": "CUSTOM", "timezone": "UTC", "items": [{"enabled": true, "dayOfWeek": 1, "startsOn": 79200000, "endsOn": 21600000}, {"enabled": false, "dayOfWeek": 2, "startsOn": 0, "endsOn": 86400000}]}""";
        var rules = Compile("[" + Alarm("Night", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 30), schedule: schedule)) + "]");

        bool Fires(DateTimeOffset at)
        {
            var state = new DeviceRuleState(rules);
            return Telemetry(state, (at.ToUnixTimeMilliseconds(), "t", 40)).Count == 1;
        }

        Assert.True(Fires(new DateTimeOffset(2026, 1, 5, 23, 0, 0, TimeSpan.Zero)));
        Assert.True(Fires(new DateTimeOffset(2026, 1, 5, 5, 0, 0, TimeSpan.Zero)));
        Assert.False(Fires(new DateTimeOffset(2026, 1, 5, 12, 0, 0, TimeSpan.Zero)));
        Assert.False(Fires(new DateTimeOffset(2026, 1, 6, 23, 0, 0, TimeSpan.Zero)));
        Assert.False(Fires(new DateTimeOffset(2026, 1, 7, 23, 0, 0, TimeSpan.Zero)));
    }

    [Fact]
    public void State_survives_a_snapshot_round_trip_mid_duration_and_with_an_alarm_raised()
    {
        var rules = Compile("[" + Alarm("Temp", "\"CRITICAL\": " + Rule(Numeric("t", "GREATER", 50)) + ", \"MAJOR\": " + Rule(Numeric("t", "GREATER", 30)),
            Rule(Numeric("t", "LESS", 25), """{"type": "REPEATING", "predicate": {"defaultValue": 2}}""")) + ","
            + Pm25Alarm()[1..^1] + "]");
        var state = new DeviceRuleState(rules);
        state.Seed(RuleKeyType.Attribute, "unused", KvValue.Of(1L));
        Assert.Single(Telemetry(state, (T0, "t", 35)));
        Assert.Empty(Telemetry(state, (T0 + 1, "t", 20)));
        Assert.Empty(Telemetry(state, (T0, "pm25", 80), (T0 + 6 * Minute, "pm25", 80)));

        var buffer = new ArrayBufferWriter<byte>();
        state.WriteSnapshot(buffer);
        var restored = DeviceRuleState.Restore(rules, buffer.WrittenSpan);
        var again = new ArrayBufferWriter<byte>();
        restored.WriteSnapshot(again);
        Assert.Equal(buffer.WrittenSpan.ToArray(), again.WrittenSpan.ToArray());

        Assert.Equal(AlarmSeverity.Major, restored.ActiveSeverity("Temp"));
        // The clear rule had one of its two repeats: the second clears.
        Assert.Equal(AlarmDecisionKind.Clear, Assert.Single(Telemetry(restored, (T0 + 2, "t", 20))).Kind);
        // pm25 had 6 of its 10 minutes.
        Assert.Empty(Telemetry(restored, (T0 + 10 * Minute, "pm25", 80)));
        Assert.Equal("High PM2.5", Assert.Single(Telemetry(restored, (T0 + 10 * Minute + 1, "pm25", 80))).AlarmType);
    }

    [Fact]
    public void A_snapshot_restored_into_edited_rules_keeps_what_still_exists()
    {
        var before = Compile(Pm25Alarm());
        var state = new DeviceRuleState(before);
        Assert.Empty(Telemetry(state, (T0, "pm25", 80), (T0 + 6 * Minute, "pm25", 80)));
        var buffer = new ArrayBufferWriter<byte>();
        state.WriteSnapshot(buffer);

        // The profile gained an alarm; the pm25 one keeps its progress, the new one starts empty.
        var after = Compile("[" + Alarm("Hot", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 30))) + "," + Pm25Alarm()[1..^1] + "]");
        var restored = DeviceRuleState.Restore(after, buffer.WrittenSpan);
        Assert.Single(Telemetry(restored, (T0 + 10 * Minute + 1, "pm25", 80)));
        Assert.Throws<JsonException>(() => DeviceRuleState.Restore(after, """{"version": 2}"""u8));
    }

    [Fact]
    public void An_alarm_cleared_elsewhere_is_raised_anew_when_its_rule_holds_again()
    {
        var state = new DeviceRuleState(Compile("[" + Alarm("Hot", "\"MAJOR\": " + Rule(Numeric("t", "GREATER", 30))) + "]"));
        Assert.Equal(AlarmDecisionKind.Create, Assert.Single(Telemetry(state, (T0, "t", 40))).Kind);
        Assert.Equal(AlarmDecisionKind.Update, Assert.Single(Telemetry(state, (T0 + 1, "t", 40))).Kind);

        Assert.True(state.ForgetRaised("Hot"));
        Assert.False(state.ForgetRaised("Cold"));
        Assert.Null(state.ActiveSeverity("Hot"));
        Assert.Equal(AlarmDecisionKind.Create, Assert.Single(Telemetry(state, (T0 + 2, "t", 40))).Kind);
    }

    [Fact]
    public void A_damaged_snapshot_is_a_json_exception()
    {
        var rules = Compile(Pm25Alarm());
        Assert.Throws<JsonException>(() => DeviceRuleState.Restore(rules, "{\"version\": 1}"u8));
        Assert.Throws<JsonException>(() => DeviceRuleState.Restore(rules, "{\"version\": 1, \"values\": [{\"type\": 3}], \"alarms\": []}"u8));
        Assert.ThrowsAny<JsonException>(() => DeviceRuleState.Restore(rules, "[1, 2"u8));
    }

    [Fact]
    public void Evaluating_a_batch_allocates_nothing_beyond_decisions()
    {
        var rules = Compile("[" + Alarm("Hot", "\"CRITICAL\": " + Rule(Numeric("t", "GREATER", 50)) + ", \"MAJOR\": " + Rule(Numeric("t", "GREATER", 30)),
            Rule(Numeric("t", "LESS", 25))) + "," + Pm25Alarm()[1..^1] + "]");
        var state = new DeviceRuleState(rules);
        var batch = new TelemetryPoint[1000];
        for (var i = 0; i < batch.Length; i++)
        {
            batch[i] = new TelemetryPoint(i % 2 == 0 ? "t" : "humidity", T0 + i, KvValue.Of(27d));
        }

        var decisions = new List<AlarmDecision>(16);
        _evaluator.EvaluateTelemetry(state, batch, default, decisions);
        var before = GC.GetAllocatedBytesForCurrentThread();
        _evaluator.EvaluateTelemetry(state, batch, default, decisions);
        _evaluator.Recheck(state, default, decisions);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Empty(decisions);
    }

    private static (AlarmDecisionKind, AlarmSeverity) Only(List<AlarmDecision> decisions)
    {
        var decision = Assert.Single(decisions);
        return (decision.Kind, decision.Severity);
    }
}
