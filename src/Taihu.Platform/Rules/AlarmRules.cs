using Taihu.Platform.Alarms;

namespace Taihu.Platform.Rules;

// The alarm rules of a device profile, in ThingsBoard's shape (profileData.alarms[]). These types are what the
// evaluator needs; the JSON a user posted is kept as text beside them (DeviceProfile.AlarmsJson), so fields we
// do not read (propagateRelationTypes, dashboardId, userValue, ...) come back on GET exactly as they were sent.

/// <summary>Where a filter's value comes from.</summary>
public enum RuleKeyType
{
    TimeSeries,
    Attribute,
    Constant,

    /// <summary>An entity field (name, type, ...): accepted and kept; the evaluator has none and never matches it.</summary>
    EntityField,
}

public enum RuleValueType
{
    Numeric,
    String,
    Boolean,
    DateTime,
}

public enum PredicateType
{
    Numeric,
    String,
    Boolean,
    Complex,
}

/// <summary>Every operation of every predicate type; which ones a type allows is checked by the parser.</summary>
public enum PredicateOperation
{
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
    StartsWith,
    EndsWith,
    Contains,
    NotContains,
    In,
    NotIn,
    And,
    Or,
}

public enum DynamicSourceType
{
    CurrentDevice,
    CurrentCustomer,
    CurrentTenant,
}

public enum ConditionSpecType
{
    Simple,
    Duration,
    Repeating,
}

public enum ScheduleType
{
    AnyTime,
    SpecificTime,
    Custom,
}

/// <summary>A value taken from an attribute instead of the default: of the device, its customer or its tenant; <see cref="Inherit"/> falls back device, customer, tenant.</summary>
public sealed record DynamicValue(DynamicSourceType SourceType, string? SourceAttribute, bool Inherit);

/// <summary>
/// A predicate's operand: the dynamic value when the attribute it names has a value, else the default. The default
/// may be absent when a dynamic value is given (ThingsBoard's editor sends null); with neither, the predicate fails.
/// </summary>
public sealed record PredicateValue(RuleConstant? Default, DynamicValue? Dynamic);

/// <summary>A constant in a rule: a number, a string or a boolean, whichever the JSON held.</summary>
public readonly record struct RuleConstant(RuleValueType Type, double Number, string? Text, bool Boolean)
{
    public static RuleConstant Of(double value) => new(RuleValueType.Numeric, value, null, false);

    public static RuleConstant Of(string value) => new(RuleValueType.String, 0, value, false);

    public static RuleConstant Of(bool value) => new(RuleValueType.Boolean, 0, null, value);
}

/// <summary>A key filter predicate. <see cref="Predicates"/> is set for COMPLEX only; <see cref="Value"/> for the others.</summary>
public sealed record KeyPredicate(PredicateType Type, PredicateOperation Operation, PredicateValue? Value, bool IgnoreCase, IReadOnlyList<KeyPredicate>? Predicates);

/// <summary>One filter of a condition: the key it reads, the value type and the predicate; <see cref="Constant"/> is the value of a CONSTANT key.</summary>
public sealed record ConditionFilter(RuleKeyType KeyType, string Key, RuleValueType ValueType, KeyPredicate Predicate, RuleConstant? Constant);

/// <summary>
/// SIMPLE: true now. DURATION: true for longer than <see cref="Amount"/> of <see cref="Unit"/>, measured on the
/// points' timestamps. REPEATING: true <see cref="Amount"/> times in a row.
/// </summary>
public sealed record ConditionSpec(ConditionSpecType Type, TimeUnitName Unit, long Amount, DynamicValue? AmountDynamic);

/// <summary>Java's TimeUnit names, which ThingsBoard's DURATION spec uses.</summary>
public enum TimeUnitName
{
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
}

/// <summary>One day of a CUSTOM schedule. Day 1 is Monday, 7 Sunday; times are milliseconds from local midnight.</summary>
public sealed record ScheduleDay(bool Enabled, int DayOfWeek, long StartsOn, long EndsOn);

/// <summary>When a rule applies. <see cref="DaysOfWeek"/> is a bit per ISO day (bit 1 Monday .. bit 7 Sunday).</summary>
public sealed record AlarmSchedule(ScheduleType Type, TimeZoneInfo? TimeZone, int DaysOfWeek, long StartsOn, long EndsOn, IReadOnlyList<ScheduleDay> Days)
{
    public static readonly AlarmSchedule AnyTime = new(ScheduleType.AnyTime, null, 0, 0, 0, []);
}

/// <summary>A create or clear rule: all filters must hold (AND), as <see cref="Spec"/> says, while <see cref="Schedule"/> allows.</summary>
public sealed record AlarmRule(IReadOnlyList<ConditionFilter> Filters, ConditionSpec Spec, AlarmSchedule Schedule, string? AlarmDetails);

/// <summary>One entry of profileData.alarms: create rules by severity, an optional clear rule.</summary>
public sealed record ProfileAlarm(string Id, string AlarmType, IReadOnlyDictionary<AlarmSeverity, AlarmRule> CreateRules, AlarmRule? ClearRule, bool Propagate);
