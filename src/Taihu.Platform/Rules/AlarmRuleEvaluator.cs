using System.Globalization;
using System.Text;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Alarms;

namespace Taihu.Platform.Rules;

// ThingsBoard's device profile alarm semantics, which this follows (its AlarmState and AlarmRuleState):
// - Telemetry is taken one timestamp at a time: the points of one ts update the device's latest values, then every
//   rule that reads one of those keys is evaluated with that ts as "now of the data".
// - An attribute change re-evaluates only rules that read no time series (a rule on temperature and a threshold
//   attribute waits for the next temperature); this is how the inactivity rule on the server attribute "active"
//   fires when the connectivity tracker flips it.
// - Create rules are tried highest severity first; the first that is TRUE raises the alarm at its severity, or
//   changes a raised alarm's severity (up or down), or updates it. A rule that is FALSE forgets its progress.
//   Only when no create rule is TRUE and an alarm is raised is the clear rule tried; TRUE clears the alarm and
//   forgets every rule's progress.
// - SIMPLE: the condition now. REPEATING: counts evaluations in a row where the condition held; TRUE at the
//   required count. DURATION: from the first point where the condition held, adds the gap to each later point's
//   ts while it holds; TRUE once the sum is longer than required. A point whose ts is not later adds nothing.
// - Recheck (on server time, periodically) lets a DURATION rule fire without a new point: the duration so far
//   plus (now - last point) counts, without being stored. Unlike ThingsBoard, a recheck whose "now" is not after
//   the last point (a device clock ahead of ours) leaves the progress alone instead of forgetting it.
// - A schedule is checked at the data's ts (at server time for attribute updates and rechecks).

/// <summary>What a rule evaluation decided about one alarm.</summary>
public enum AlarmDecisionKind
{
    /// <summary>No alarm of this type was raised; raise it.</summary>
    Create,

    /// <summary>The raised alarm now has another severity (higher or lower).</summary>
    SeverityChange,

    /// <summary>The raised alarm's rule still holds at the same severity (at most one per alarm and call).</summary>
    Update,

    /// <summary>The clear rule held: clear the raised alarm.</summary>
    Clear,
}

/// <summary>
/// One decision. <see cref="Ts"/> is the data time it was taken at (the point's ts, or server time for attribute
/// updates and rechecks); <see cref="Details"/> is the rule's alarmDetails with ${key} replaced by the values, and
/// <see cref="Values"/> the values of the keys the deciding rule read.
/// </summary>
public sealed record AlarmDecision(
    AlarmDecisionKind Kind, string AlarmId, string AlarmType, AlarmSeverity Severity, AlarmSeverity? PreviousSeverity, long Ts,
    string? Details, IReadOnlyList<KeyValuePair<string, KvValue>> Values, bool Propagate);

/// <summary>Attributes of the device's customer and tenant, for dynamic values that name them; either may be null.</summary>
public readonly record struct OwnerAttributes(IReadOnlyDictionary<string, KvValue>? Customer, IReadOnlyDictionary<string, KvValue>? Tenant);

/// <summary>
/// Evaluates a profile's alarm rules against one device's state. It keeps nothing itself: everything it remembers
/// is in the <see cref="DeviceRuleState"/> it is handed, by the one owner of that device. Evaluating a batch
/// allocates only the decisions it returns.
/// </summary>
public sealed class AlarmRuleEvaluator(TimeProvider time)
{
    private enum Outcome
    {
        False,
        NotYetTrue,
        True,
    }

    private enum UpdateKind
    {
        TimeSeries,
        Attributes,
        Recheck,
    }

    /// <summary>
    /// Takes a device's points (in ts order, as one message or one batch of them carries them), updating the
    /// values and the rules' progress one timestamp at a time; adds what it decided to <paramref name="decisions"/>.
    /// </summary>
    public void EvaluateTelemetry(DeviceRuleState state, ReadOnlySpan<TelemetryPoint> points, OwnerAttributes owners, List<AlarmDecision> decisions)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(decisions);
        var rules = state.Rules;
        if (rules.Alarms.Length == 0)
        {
            return;
        }

        var start = 0;
        while (start < points.Length)
        {
            var ts = points[start].Ts;
            var end = start;
            var changed = 0;
            for (; end < points.Length && points[end].Ts == ts; end++)
            {
                var slot = rules.TimeSeriesSlot(points[end].Key);
                if (slot >= 0)
                {
                    state.Values[slot] = points[end].Value;
                    state.HasValue[slot] = true;
                    changed = MarkChanged(state, slot, changed);
                }
            }

            if (changed > 0)
            {
                Process(state, UpdateKind.TimeSeries, ts, owners, decisions);
                ResetChanged(state, changed);
            }

            start = end;
        }

        FlushUpdates(state, decisions);
    }

    /// <summary>Takes changed attributes of the device (any scope; "active" is the server attribute of connectivity).</summary>
    public void EvaluateAttributes(DeviceRuleState state, ReadOnlySpan<AttributeEntry> attributes, OwnerAttributes owners, List<AlarmDecision> decisions)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(decisions);
        var changed = 0;
        for (var i = 0; i < attributes.Length; i++)
        {
            var slot = state.Rules.AttributeSlot(attributes[i].Key);
            if (slot >= 0)
            {
                state.Values[slot] = attributes[i].Value;
                state.HasValue[slot] = true;
                changed = MarkChanged(state, slot, changed);
            }
        }

        if (changed > 0)
        {
            Process(state, UpdateKind.Attributes, time.GetUtcNow().ToUnixTimeMilliseconds(), owners, decisions);
            ResetChanged(state, changed);
            FlushUpdates(state, decisions);
        }
    }

    /// <summary>The periodic check on server time: a DURATION rule whose condition still holds may fire without a new point.</summary>
    public void Recheck(DeviceRuleState state, OwnerAttributes owners, List<AlarmDecision> decisions)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(decisions);
        Process(state, UpdateKind.Recheck, time.GetUtcNow().ToUnixTimeMilliseconds(), owners, decisions);
        FlushUpdates(state, decisions);
    }

    private static int MarkChanged(DeviceRuleState state, int slot, int changed)
    {
        if (!state.Changed[slot])
        {
            state.Changed[slot] = true;
            state.ChangedList[changed++] = slot;
        }

        return changed;
    }

    private static void ResetChanged(DeviceRuleState state, int changed)
    {
        for (var i = 0; i < changed; i++)
        {
            state.Changed[state.ChangedList[i]] = false;
        }
    }

    private static bool Concerns(DeviceRuleState state, CompiledRule rule, UpdateKind kind)
    {
        if (kind == UpdateKind.Recheck)
        {
            return true;
        }

        if (kind == UpdateKind.Attributes && rule.ReadsTimeSeries)
        {
            return false;
        }

        foreach (var slot in rule.Slots)
        {
            if (state.Changed[slot])
            {
                return true;
            }
        }

        return false;
    }

    private void Process(DeviceRuleState state, UpdateKind kind, long ts, OwnerAttributes owners, List<AlarmDecision> decisions)
    {
        var alarms = state.Rules.Alarms;
        for (var a = 0; a < alarms.Length; a++)
        {
            var alarm = alarms[a];
            var progress = state.Alarms[a];
            var raisedBy = -1;
            for (var r = 0; r < alarm.CreateRules.Length; r++)
            {
                var rule = alarm.CreateRules[r];
                if (!Concerns(state, rule, kind))
                {
                    continue;
                }

                var outcome = Evaluate(state, rule, ref progress.Create[r], kind, ts, owners);
                if (outcome == Outcome.True)
                {
                    raisedBy = r;
                    break;
                }

                if (outcome == Outcome.False)
                {
                    progress.Create[r] = default;
                }
            }

            if (raisedBy >= 0)
            {
                var rule = alarm.CreateRules[raisedBy];
                var severity = rule.Severity!.Value;
                if (progress.Active is not { } active)
                {
                    progress.Active = severity;
                    progress.StartTs = ts;
                    progress.PendingUpdateTs = 0;
                    decisions.Add(Decide(state, alarm, rule, AlarmDecisionKind.Create, severity, null, ts));
                }
                else if (active != severity)
                {
                    progress.Active = severity;
                    progress.PendingUpdateTs = 0;
                    decisions.Add(Decide(state, alarm, rule, AlarmDecisionKind.SeverityChange, severity, active, ts));
                }
                else
                {
                    // Every point that keeps an alarm up would be an update; one per call is enough to move its end time.
                    progress.PendingUpdateTs = ts;
                    progress.PendingUpdateRule = raisedBy;
                }

                progress.Clear = default;
            }
            else if (progress.Active is { } active && alarm.ClearRule is { } clear && Concerns(state, clear, kind))
            {
                var outcome = Evaluate(state, clear, ref progress.Clear, kind, ts, owners);
                if (outcome == Outcome.True)
                {
                    progress.Clear = default;
                    Array.Clear(progress.Create);
                    progress.Active = null;
                    progress.PendingUpdateTs = 0;
                    decisions.Add(Decide(state, alarm, clear, AlarmDecisionKind.Clear, active, active, ts));
                }
                else if (outcome == Outcome.False)
                {
                    progress.Clear = default;
                }
            }
        }
    }

    private static void FlushUpdates(DeviceRuleState state, List<AlarmDecision> decisions)
    {
        var alarms = state.Rules.Alarms;
        for (var a = 0; a < alarms.Length; a++)
        {
            var progress = state.Alarms[a];
            if (progress.PendingUpdateTs != 0 && progress.Active is { } active)
            {
                var rule = alarms[a].CreateRules[progress.PendingUpdateRule];
                decisions.Add(Decide(state, alarms[a], rule, AlarmDecisionKind.Update, active, active, progress.PendingUpdateTs));
            }

            progress.PendingUpdateTs = 0;
        }
    }

    private Outcome Evaluate(DeviceRuleState state, CompiledRule rule, ref RuleProgress progress, UpdateKind kind, long ts, OwnerAttributes owners)
    {
        var spec = rule.Rule.Spec;
        if (kind == UpdateKind.Recheck)
        {
            if (spec.Type != ConditionSpecType.Duration)
            {
                return Outcome.NotYetTrue;
            }

            var required = RequiredAmount(state, rule, owners);
            if (required <= 0 || progress.LastEventTs <= 0)
            {
                return Outcome.False;
            }

            if (ts <= progress.LastEventTs)
            {
                return Outcome.NotYetTrue;
            }

            if (!ScheduleAllows(rule.Rule.Schedule, ts))
            {
                return Outcome.False;
            }

            return progress.Duration + (ts - progress.LastEventTs) > required ? Outcome.True : Outcome.NotYetTrue;
        }

        var holds = ScheduleAllows(rule.Rule.Schedule, ts) && ConditionHolds(state, rule, owners);
        switch (spec.Type)
        {
            case ConditionSpecType.Repeating:
                if (!holds)
                {
                    return Outcome.False;
                }

                progress.EventCount++;
                return progress.EventCount >= RequiredAmount(state, rule, owners) ? Outcome.True : Outcome.NotYetTrue;

            case ConditionSpecType.Duration:
                if (!holds)
                {
                    return Outcome.False;
                }

                if (progress.LastEventTs > 0)
                {
                    if (ts > progress.LastEventTs)
                    {
                        progress.Duration += ts - progress.LastEventTs;
                        progress.LastEventTs = ts;
                    }
                }
                else
                {
                    progress.LastEventTs = ts;
                    progress.Duration = 0;
                }

                return progress.Duration > RequiredAmount(state, rule, owners) ? Outcome.True : Outcome.NotYetTrue;

            default:
                return holds ? Outcome.True : Outcome.False;
        }
    }

    /// <summary>The DURATION in milliseconds or the REPEATING count, from the device attribute the spec names when it has one.</summary>
    private static long RequiredAmount(DeviceRuleState state, CompiledRule rule, OwnerAttributes owners)
    {
        var spec = rule.Rule.Spec;
        var amount = spec.Amount;
        if (spec.AmountDynamic is { } dynamic && Resolve(state, rule.AmountSlot, dynamic, owners, out var value) && ToNumber(value) is { } number)
        {
            amount = (long)number;
        }

        return spec.Type != ConditionSpecType.Duration ? amount : spec.Unit switch
        {
            TimeUnitName.Seconds => amount * 1000,
            TimeUnitName.Minutes => amount * 60_000,
            TimeUnitName.Hours => amount * 3_600_000,
            TimeUnitName.Days => amount * 86_400_000,
            _ => amount,
        };
    }

    private static bool ConditionHolds(DeviceRuleState state, CompiledRule rule, OwnerAttributes owners)
    {
        var filters = rule.Rule.Filters;
        for (var i = 0; i < filters.Count; i++)
        {
            var filter = filters[i];
            KvValue value;
            if (filter.Constant is { } constant)
            {
                value = FromConstant(constant);
            }
            else
            {
                var slot = rule.FilterSlots[i];
                if (slot < 0 || !state.HasValue[slot])
                {
                    return false;
                }

                value = state.Values[slot];
            }

            if (!PredicateHolds(state, filter.Predicate, value, owners))
            {
                return false;
            }
        }

        return true;
    }

    private static bool PredicateHolds(DeviceRuleState state, KeyPredicate predicate, KvValue value, OwnerAttributes owners)
    {
        switch (predicate.Type)
        {
            case PredicateType.Complex:
                var children = predicate.Predicates!;
                if (predicate.Operation == PredicateOperation.Or)
                {
                    for (var i = 0; i < children.Count; i++)
                    {
                        if (PredicateHolds(state, children[i], value, owners))
                        {
                            return true;
                        }
                    }

                    return false;
                }

                for (var i = 0; i < children.Count; i++)
                {
                    if (!PredicateHolds(state, children[i], value, owners))
                    {
                        return false;
                    }
                }

                return true;

            case PredicateType.Numeric:
                {
                    if (ToNumber(value) is not { } actual || Operand(state, predicate.Value!, owners) is not { } operand || ToNumber(operand) is not { } expected)
                    {
                        return false;
                    }

                    return predicate.Operation switch
                    {
                        PredicateOperation.Equal => actual == expected,
                        PredicateOperation.NotEqual => actual != expected,
                        PredicateOperation.Greater => actual > expected,
                        PredicateOperation.Less => actual < expected,
                        PredicateOperation.GreaterOrEqual => actual >= expected,
                        _ => actual <= expected,
                    };
                }

            case PredicateType.Boolean:
                {
                    if (ToBoolean(value) is not { } actual || Operand(state, predicate.Value!, owners) is not { } operand || ToBoolean(operand) is not { } expected)
                    {
                        return false;
                    }

                    return predicate.Operation == PredicateOperation.Equal ? actual == expected : actual != expected;
                }

            default:
                {
                    if (Operand(state, predicate.Value!, owners) is not { } operand)
                    {
                        return false;
                    }

                    // Strings are compared as they are; a number read as a string is formatted (the one allocation, rare).
                    var actual = value.Type is DataType.String or DataType.Json ? value.Text ?? "" : value.ToString();
                    var expected = operand.Type is DataType.String or DataType.Json ? operand.Text ?? "" : operand.ToString();
                    var comparison = predicate.IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
                    return predicate.Operation switch
                    {
                        PredicateOperation.Equal => string.Equals(actual, expected, comparison),
                        PredicateOperation.NotEqual => !string.Equals(actual, expected, comparison),
                        PredicateOperation.StartsWith => actual.StartsWith(expected, comparison),
                        PredicateOperation.EndsWith => actual.EndsWith(expected, comparison),
                        PredicateOperation.Contains => actual.Contains(expected, comparison),
                        PredicateOperation.NotContains => !actual.Contains(expected, comparison),
                        PredicateOperation.In => InList(actual, expected, comparison),
                        _ => !InList(actual, expected, comparison),
                    };
                }
        }
    }

    /// <summary>IN / NOT_IN: the operand is a comma-separated list; items may be quoted ("a, b" or "'a','b'").</summary>
    private static bool InList(string actual, string list, StringComparison comparison)
    {
        var rest = list.AsSpan();
        while (true)
        {
            var comma = rest.IndexOf(',');
            var item = (comma < 0 ? rest : rest[..comma]).Trim();
            if (item.Length >= 2 && (item[0] == '"' || item[0] == '\'') && item[^1] == item[0])
            {
                item = item[1..^1];
            }

            if (actual.AsSpan().Equals(item, comparison))
            {
                return true;
            }

            if (comma < 0)
            {
                return false;
            }

            rest = rest[(comma + 1)..];
        }
    }

    /// <summary>The predicate's operand: the dynamic value when it resolves, else the default (null when neither exists).</summary>
    private static KvValue? Operand(DeviceRuleState state, PredicateValue value, OwnerAttributes owners)
    {
        if (value.Dynamic is { } dynamic)
        {
            var slot = dynamic.SourceType == DynamicSourceType.CurrentDevice ? state.Rules.AttributeSlot(dynamic.SourceAttribute!) : -1;
            if (Resolve(state, slot, dynamic, owners, out var resolved))
            {
                return resolved;
            }
        }

        return value.Default is { } constant ? FromConstant(constant) : null;
    }

    private static bool Resolve(DeviceRuleState state, int slot, DynamicValue dynamic, OwnerAttributes owners, out KvValue value)
    {
        var name = dynamic.SourceAttribute!;
        var source = dynamic.SourceType;
        if (source == DynamicSourceType.CurrentDevice)
        {
            if (slot >= 0 && state.HasValue[slot])
            {
                value = state.Values[slot];
                return true;
            }

            if (!dynamic.Inherit)
            {
                value = default;
                return false;
            }

            source = DynamicSourceType.CurrentCustomer;
        }

        if (source == DynamicSourceType.CurrentCustomer)
        {
            if (owners.Customer is { } customer && customer.TryGetValue(name, out value))
            {
                return true;
            }

            if (!dynamic.Inherit)
            {
                value = default;
                return false;
            }
        }

        if (owners.Tenant is { } tenant && tenant.TryGetValue(name, out value))
        {
            return true;
        }

        value = default;
        return false;
    }

    private static KvValue FromConstant(RuleConstant constant) => constant.Type switch
    {
        RuleValueType.Boolean => KvValue.Of(constant.Boolean),
        RuleValueType.String => KvValue.Of(constant.Text ?? ""),
        _ => KvValue.Of(constant.Number),
    };

    private static double? ToNumber(KvValue value) => value.Type switch
    {
        DataType.Long => value.Long,
        DataType.Double => value.Double,
        DataType.Boolean => value.Boolean ? 1 : 0,
        _ => double.TryParse(value.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) ? parsed : null,
    };

    private static bool? ToBoolean(KvValue value) => value.Type switch
    {
        DataType.Long => value.Long > 0,
        DataType.Double => value.Double > 0,
        DataType.Boolean => value.Boolean,
        _ => string.Equals(value.Text, "true", StringComparison.OrdinalIgnoreCase),
    };

    private static bool ScheduleAllows(AlarmSchedule schedule, long ts)
    {
        if (schedule.Type == ScheduleType.AnyTime)
        {
            return true;
        }

        var local = TimeZoneInfo.ConvertTime(DateTimeOffset.FromUnixTimeMilliseconds(ts), schedule.TimeZone!);
        var day = local.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)local.DayOfWeek;
        var msOfDay = (long)local.TimeOfDay.TotalMilliseconds;
        if (schedule.Type == ScheduleType.SpecificTime)
        {
            // All seven days skip the day check; an empty list matches no day (both as ThingsBoard).
            if (schedule.DaysOfWeek != 0b1111_1110 && (schedule.DaysOfWeek & (1 << day)) == 0)
            {
                return false;
            }

            return InWindow(msOfDay, schedule.StartsOn, schedule.EndsOn);
        }

        foreach (var item in schedule.Days)
        {
            if (item.DayOfWeek == day)
            {
                return item.Enabled && InWindow(msOfDay, item.StartsOn, item.EndsOn);
            }
        }

        return false;
    }

    /// <summary>ThingsBoard's window: [start, end) within a day, or across midnight when start is after end.</summary>
    private static bool InWindow(long msOfDay, long startsOn, long endsOn) =>
        startsOn <= endsOn ? startsOn <= msOfDay && endsOn > msOfDay : startsOn < msOfDay || (0 < msOfDay && msOfDay < endsOn);

    private static AlarmDecision Decide(DeviceRuleState state, CompiledAlarm alarm, CompiledRule rule, AlarmDecisionKind kind, AlarmSeverity severity,
        AlarmSeverity? previous, long ts)
    {
        var filters = rule.Rule.Filters;
        var values = new List<KeyValuePair<string, KvValue>>(filters.Count);
        for (var i = 0; i < filters.Count; i++)
        {
            var slot = rule.FilterSlots[i];
            if (slot >= 0 && state.HasValue[slot])
            {
                values.Add(new KeyValuePair<string, KvValue>(filters[i].Key, state.Values[slot]));
            }
        }

        string? details = null;
        if (rule.Rule.AlarmDetails is { } template)
        {
            var builder = new StringBuilder(template);
            foreach (var (key, value) in values)
            {
                builder.Replace("${" + key + "}", value.ToString());
            }

            details = builder.ToString();
        }

        return new AlarmDecision(kind, alarm.Source.Id, alarm.Source.AlarmType, severity, previous, ts, details, values, alarm.Source.Propagate);
    }
}
