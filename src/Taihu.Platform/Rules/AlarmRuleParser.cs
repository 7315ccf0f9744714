using System.Globalization;
using System.Text.Json;
using Taihu.Platform.Alarms;

namespace Taihu.Platform.Rules;

/// <summary>A rule that does not parse: <see cref="Path"/> names the JSON field, the message says what it should be.</summary>
public sealed class AlarmRuleException(string path, string problem) : PlatformException(400, 30, $"{path}: {problem}")
{
    public string Path { get; } = path;
}

/// <summary>
/// Reads ThingsBoard's profileData.alarms from JSON. Every problem is an <see cref="AlarmRuleException"/> naming the
/// JSON path of the field, so a user sees which of many rules to fix. Unknown fields are allowed (they are kept in
/// the stored JSON, not here). The sizes are bounded so that a hostile profile costs little to refuse and little
/// to evaluate: the limits are far above what ThingsBoard's own editor produces.
/// </summary>
public static class AlarmRuleParser
{
    public const int MaximumAlarms = 100;
    public const int MaximumFilters = 100;
    public const int MaximumPredicates = 100;
    public const int MaximumComplexDepth = 8;
    public const int MaximumTextLength = 1024;
    public const int MaximumDetailsLength = 16 * 1024;

    private const long MillisecondsPerDay = 86_400_000;

    /// <summary>Parses the alarms array; null or a JSON null is no alarms.</summary>
    public static IReadOnlyList<ProfileAlarm> Parse(JsonElement alarms, string path = "profileData.alarms")
    {
        if (alarms.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        if (alarms.ValueKind != JsonValueKind.Array)
        {
            throw Fail(path, "must be an array of alarms or null.");
        }

        var count = alarms.GetArrayLength();
        if (count > MaximumAlarms)
        {
            throw Fail(path, $"holds {count} alarms; at most {MaximumAlarms} are allowed.");
        }

        var result = new List<ProfileAlarm>(count);
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var types = new HashSet<string>(StringComparer.Ordinal);
        var i = 0;
        foreach (var alarm in alarms.EnumerateArray())
        {
            var at = $"{path}[{i}]";
            var parsed = ParseAlarm(alarm, at);
            if (!ids.Add(parsed.Id))
            {
                throw Fail(at + ".id", $"'{parsed.Id}' is used by another alarm of this profile.");
            }

            if (!types.Add(parsed.AlarmType))
            {
                throw Fail(at + ".alarmType", $"'{parsed.AlarmType}' is used by another alarm of this profile.");
            }

            result.Add(parsed);
            i++;
        }

        return result;
    }

    /// <summary>Parses the alarms array from JSON text (as stored).</summary>
    public static IReadOnlyList<ProfileAlarm> Parse(string? json)
    {
        if (string.IsNullOrEmpty(json))
        {
            return [];
        }

        using var document = JsonDocument.Parse(json);
        return Parse(document.RootElement);
    }

    private static ProfileAlarm ParseAlarm(JsonElement alarm, string path)
    {
        RequireObject(alarm, path);
        var alarmType = RequiredText(alarm, "alarmType", path);
        // ThingsBoard's editor always sends an id; a hand-written profile may not, and the type is unique too.
        var id = OptionalText(alarm, "id", path) ?? alarmType;

        var createPath = path + ".createRules";
        if (!alarm.TryGetProperty("createRules", out var create) || create.ValueKind != JsonValueKind.Object)
        {
            throw Fail(createPath, "must be an object of rules keyed by severity (CRITICAL, MAJOR, MINOR, WARNING, INDETERMINATE).");
        }

        var rules = new Dictionary<AlarmSeverity, AlarmRule>();
        foreach (var property in create.EnumerateObject())
        {
            var rulePath = $"{createPath}.{property.Name}";
            if (!AlarmNames.TryParseSeverity(property.Name, out var severity))
            {
                throw Fail(rulePath, "is not a severity; use CRITICAL, MAJOR, MINOR, WARNING or INDETERMINATE.");
            }

            if (rules.ContainsKey(severity))
            {
                throw Fail(rulePath, "appears twice.");
            }

            rules[severity] = ParseRule(property.Value, rulePath);
        }

        if (rules.Count == 0)
        {
            throw Fail(createPath, "needs at least one rule.");
        }

        AlarmRule? clear = null;
        if (alarm.TryGetProperty("clearRule", out var clearRule) && clearRule.ValueKind != JsonValueKind.Null)
        {
            clear = ParseRule(clearRule, path + ".clearRule");
        }

        var propagate = OptionalBoolean(alarm, "propagate", path) ?? false;
        _ = OptionalBoolean(alarm, "propagateToOwner", path);
        _ = OptionalBoolean(alarm, "propagateToTenant", path);
        if (alarm.TryGetProperty("propagateRelationTypes", out var relations) && relations.ValueKind is not (JsonValueKind.Null or JsonValueKind.Array))
        {
            throw Fail(path + ".propagateRelationTypes", "must be an array of relation types or null.");
        }

        return new ProfileAlarm(id, alarmType, rules, clear, propagate);
    }

    private static AlarmRule ParseRule(JsonElement rule, string path)
    {
        RequireObject(rule, path);
        var conditionPath = path + ".condition";
        if (!rule.TryGetProperty("condition", out var condition))
        {
            throw Fail(conditionPath, "is missing.");
        }

        RequireObject(condition, conditionPath);
        var filtersPath = conditionPath + ".condition";
        if (!condition.TryGetProperty("condition", out var filters) || filters.ValueKind != JsonValueKind.Array)
        {
            throw Fail(filtersPath, "must be an array of key filters.");
        }

        var count = filters.GetArrayLength();
        if (count == 0)
        {
            throw Fail(filtersPath, "needs at least one key filter.");
        }

        if (count > MaximumFilters)
        {
            throw Fail(filtersPath, $"holds {count} filters; at most {MaximumFilters} are allowed.");
        }

        var parsed = new ConditionFilter[count];
        var i = 0;
        foreach (var filter in filters.EnumerateArray())
        {
            parsed[i] = ParseFilter(filter, $"{filtersPath}[{i}]");
            i++;
        }

        var spec = new ConditionSpec(ConditionSpecType.Simple, TimeUnitName.Milliseconds, 0, null);
        if (condition.TryGetProperty("spec", out var specElement) && specElement.ValueKind != JsonValueKind.Null)
        {
            spec = ParseSpec(specElement, conditionPath + ".spec");
        }

        var schedule = AlarmSchedule.AnyTime;
        if (rule.TryGetProperty("schedule", out var scheduleElement) && scheduleElement.ValueKind != JsonValueKind.Null)
        {
            schedule = ParseSchedule(scheduleElement, path + ".schedule");
        }

        var details = OptionalText(rule, "alarmDetails", path, MaximumDetailsLength);
        return new AlarmRule(parsed, spec, schedule, details);
    }

    private static ConditionFilter ParseFilter(JsonElement filter, string path)
    {
        RequireObject(filter, path);
        var keyPath = path + ".key";
        if (!filter.TryGetProperty("key", out var key))
        {
            throw Fail(keyPath, "is missing.");
        }

        RequireObject(key, keyPath);
        var keyType = RequiredText(key, "type", keyPath) switch
        {
            "TIME_SERIES" => RuleKeyType.TimeSeries,
            "ATTRIBUTE" => RuleKeyType.Attribute,
            "CONSTANT" => RuleKeyType.Constant,
            "ENTITY_FIELD" => RuleKeyType.EntityField,
            _ => throw Fail(keyPath + ".type", "must be TIME_SERIES, ATTRIBUTE, CONSTANT or ENTITY_FIELD."),
        };
        var keyName = RequiredText(key, "key", keyPath);
        var valueType = ParseValueType(RequiredText(filter, "valueType", path), path + ".valueType");

        RuleConstant? constant = null;
        if (keyType == RuleKeyType.Constant)
        {
            if (!filter.TryGetProperty("value", out var value) || value.ValueKind == JsonValueKind.Null)
            {
                throw Fail(path + ".value", "is required for a CONSTANT key.");
            }

            constant = ReadConstant(value, valueType, path + ".value");
        }

        if (!filter.TryGetProperty("predicate", out var predicate))
        {
            throw Fail(path + ".predicate", "is missing.");
        }

        return new ConditionFilter(keyType, keyName, valueType, ParsePredicate(predicate, path + ".predicate", 0), constant);
    }

    private static RuleValueType ParseValueType(string name, string path) => name switch
    {
        "NUMERIC" => RuleValueType.Numeric,
        "STRING" => RuleValueType.String,
        "BOOLEAN" => RuleValueType.Boolean,
        "DATE_TIME" => RuleValueType.DateTime,
        _ => throw Fail(path, "must be NUMERIC, STRING, BOOLEAN or DATE_TIME."),
    };

    private static KeyPredicate ParsePredicate(JsonElement predicate, string path, int depth)
    {
        RequireObject(predicate, path);
        var typeName = RequiredText(predicate, "type", path);
        var operationPath = path + ".operation";
        var operation = RequiredText(predicate, "operation", path);
        switch (typeName)
        {
            case "NUMERIC":
                {
                    var op = operation switch
                    {
                        "EQUAL" => PredicateOperation.Equal,
                        "NOT_EQUAL" => PredicateOperation.NotEqual,
                        "GREATER" => PredicateOperation.Greater,
                        "LESS" => PredicateOperation.Less,
                        "GREATER_OR_EQUAL" => PredicateOperation.GreaterOrEqual,
                        "LESS_OR_EQUAL" => PredicateOperation.LessOrEqual,
                        _ => throw Fail(operationPath, "must be EQUAL, NOT_EQUAL, GREATER, LESS, GREATER_OR_EQUAL or LESS_OR_EQUAL for a NUMERIC predicate."),
                    };
                    return new KeyPredicate(PredicateType.Numeric, op, ParseValue(predicate, path, RuleValueType.Numeric), false, null);
                }

            case "STRING":
                {
                    var op = operation switch
                    {
                        "EQUAL" => PredicateOperation.Equal,
                        "NOT_EQUAL" => PredicateOperation.NotEqual,
                        "STARTS_WITH" => PredicateOperation.StartsWith,
                        "ENDS_WITH" => PredicateOperation.EndsWith,
                        "CONTAINS" => PredicateOperation.Contains,
                        "NOT_CONTAINS" => PredicateOperation.NotContains,
                        "IN" => PredicateOperation.In,
                        "NOT_IN" => PredicateOperation.NotIn,
                        _ => throw Fail(operationPath, "must be EQUAL, NOT_EQUAL, STARTS_WITH, ENDS_WITH, CONTAINS, NOT_CONTAINS, IN or NOT_IN for a STRING predicate."),
                    };
                    var ignoreCase = OptionalBoolean(predicate, "ignoreCase", path) ?? false;
                    return new KeyPredicate(PredicateType.String, op, ParseValue(predicate, path, RuleValueType.String), ignoreCase, null);
                }

            case "BOOLEAN":
                {
                    var op = operation switch
                    {
                        "EQUAL" => PredicateOperation.Equal,
                        "NOT_EQUAL" => PredicateOperation.NotEqual,
                        _ => throw Fail(operationPath, "must be EQUAL or NOT_EQUAL for a BOOLEAN predicate."),
                    };
                    return new KeyPredicate(PredicateType.Boolean, op, ParseValue(predicate, path, RuleValueType.Boolean), false, null);
                }

            case "COMPLEX":
                {
                    var op = operation switch
                    {
                        "AND" => PredicateOperation.And,
                        "OR" => PredicateOperation.Or,
                        _ => throw Fail(operationPath, "must be AND or OR for a COMPLEX predicate."),
                    };
                    var childrenPath = path + ".predicates";
                    if (depth >= MaximumComplexDepth)
                    {
                        throw Fail(childrenPath, $"nests COMPLEX predicates deeper than {MaximumComplexDepth} levels.");
                    }

                    if (!predicate.TryGetProperty("predicates", out var children) || children.ValueKind != JsonValueKind.Array)
                    {
                        throw Fail(childrenPath, "must be an array of predicates.");
                    }

                    var count = children.GetArrayLength();
                    if (count == 0 || count > MaximumPredicates)
                    {
                        throw Fail(childrenPath, $"must hold 1 to {MaximumPredicates} predicates; it holds {count}.");
                    }

                    var parsed = new KeyPredicate[count];
                    var i = 0;
                    foreach (var child in children.EnumerateArray())
                    {
                        parsed[i] = ParsePredicate(child, $"{childrenPath}[{i}]", depth + 1);
                        i++;
                    }

                    return new KeyPredicate(PredicateType.Complex, op, null, false, parsed);
                }

            default:
                throw Fail(path + ".type", "must be NUMERIC, STRING, BOOLEAN or COMPLEX.");
        }
    }

    /// <summary>A predicate's "value": {"defaultValue": .., "userValue": .., "dynamicValue": {..}}.</summary>
    private static PredicateValue ParseValue(JsonElement predicate, string path, RuleValueType type)
    {
        var valuePath = path + ".value";
        if (!predicate.TryGetProperty("value", out var value))
        {
            throw Fail(valuePath, "is missing; give {\"defaultValue\": ...}.");
        }

        RequireObject(value, valuePath);
        var dynamic = ParseDynamic(value, valuePath);
        var defaultPath = valuePath + ".defaultValue";
        if (!value.TryGetProperty("defaultValue", out var defaultValue) || defaultValue.ValueKind == JsonValueKind.Null)
        {
            // ThingsBoard's editor sends a null default when the value is taken from an attribute.
            if (dynamic is null)
            {
                throw Fail(defaultPath, "is required unless dynamicValue names an attribute.");
            }

            return new PredicateValue(null, dynamic);
        }

        return new PredicateValue(ReadConstant(defaultValue, type, defaultPath), dynamic);
    }

    private static DynamicValue? ParseDynamic(JsonElement owner, string path)
    {
        if (!owner.TryGetProperty("dynamicValue", out var dynamic) || dynamic.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        path += ".dynamicValue";
        RequireObject(dynamic, path);
        var attribute = OptionalText(dynamic, "sourceAttribute", path);
        var sourceName = OptionalText(dynamic, "sourceType", path);
        var inherit = OptionalBoolean(dynamic, "inherit", path) ?? false;
        if (sourceName is null)
        {
            // The editor sends {"sourceType": null, "sourceAttribute": null} for "no dynamic value".
            return attribute is null ? null : throw Fail(path + ".sourceType", "is required when sourceAttribute is set.");
        }

        var source = sourceName switch
        {
            "CURRENT_DEVICE" => DynamicSourceType.CurrentDevice,
            "CURRENT_CUSTOMER" => DynamicSourceType.CurrentCustomer,
            "CURRENT_TENANT" => DynamicSourceType.CurrentTenant,
            _ => throw Fail(path + ".sourceType", "must be CURRENT_DEVICE, CURRENT_CUSTOMER or CURRENT_TENANT."),
        };
        return attribute is null ? null : new DynamicValue(source, attribute, inherit);
    }

    private static RuleConstant ReadConstant(JsonElement value, RuleValueType type, string path)
    {
        switch (type)
        {
            case RuleValueType.Numeric or RuleValueType.DateTime:
                if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var number) && double.IsFinite(number))
                {
                    return RuleConstant.Of(number);
                }

                throw Fail(path, "must be a finite number.");
            case RuleValueType.Boolean:
                return value.ValueKind switch
                {
                    JsonValueKind.True => RuleConstant.Of(true),
                    JsonValueKind.False => RuleConstant.Of(false),
                    _ => throw Fail(path, "must be true or false."),
                };
            default:
                if (value.ValueKind != JsonValueKind.String)
                {
                    throw Fail(path, "must be a string.");
                }

                var text = value.GetString()!;
                return text.Length > MaximumTextLength ? throw Fail(path, $"is longer than {MaximumTextLength} characters.") : RuleConstant.Of(text);
        }
    }

    private static ConditionSpec ParseSpec(JsonElement spec, string path)
    {
        RequireObject(spec, path);
        switch (RequiredText(spec, "type", path))
        {
            case "SIMPLE":
                return new ConditionSpec(ConditionSpecType.Simple, TimeUnitName.Milliseconds, 0, null);
            case "DURATION":
                {
                    var unit = RequiredText(spec, "unit", path) switch
                    {
                        "MILLISECONDS" => TimeUnitName.Milliseconds,
                        "SECONDS" => TimeUnitName.Seconds,
                        "MINUTES" => TimeUnitName.Minutes,
                        "HOURS" => TimeUnitName.Hours,
                        "DAYS" => TimeUnitName.Days,
                        _ => throw Fail(path + ".unit", "must be MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS."),
                    };
                    var (amount, dynamic) = ParseAmount(spec, path, 0);
                    return new ConditionSpec(ConditionSpecType.Duration, unit, amount, dynamic);
                }

            case "REPEATING":
                {
                    var (amount, dynamic) = ParseAmount(spec, path, 1);
                    return new ConditionSpec(ConditionSpecType.Repeating, TimeUnitName.Milliseconds, amount, dynamic);
                }

            default:
                throw Fail(path + ".type", "must be SIMPLE, DURATION or REPEATING.");
        }
    }

    /// <summary>The spec's "predicate": {"defaultValue": n, "dynamicValue": ..}, a whole number of at least <paramref name="minimum"/>.</summary>
    private static (long Amount, DynamicValue? Dynamic) ParseAmount(JsonElement spec, string path, long minimum)
    {
        path += ".predicate";
        if (!spec.TryGetProperty("predicate", out var predicate))
        {
            throw Fail(path, "is missing; give {\"defaultValue\": ...}.");
        }

        RequireObject(predicate, path);
        var dynamic = ParseDynamic(predicate, path);
        if (!predicate.TryGetProperty("defaultValue", out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return dynamic is null ? throw Fail(path + ".defaultValue", "is required unless dynamicValue names an attribute.") : (minimum, dynamic);
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var amount) || amount < minimum || amount > int.MaxValue)
        {
            throw Fail(path + ".defaultValue", $"must be a whole number from {minimum} to {int.MaxValue}.");
        }

        return (amount, dynamic);
    }

    private static AlarmSchedule ParseSchedule(JsonElement schedule, string path)
    {
        RequireObject(schedule, path);
        var type = RequiredText(schedule, "type", path);
        switch (type)
        {
            case "ANY_TIME":
                return AlarmSchedule.AnyTime;
            case "SPECIFIC_TIME":
                {
                    var zone = ParseZone(schedule, path);
                    var daysPath = path + ".daysOfWeek";
                    if (!schedule.TryGetProperty("daysOfWeek", out var days) || days.ValueKind != JsonValueKind.Array)
                    {
                        throw Fail(daysPath, "must be an array of days, 1 (Monday) to 7 (Sunday).");
                    }

                    if (days.GetArrayLength() > 7)
                    {
                        throw Fail(daysPath, "holds more than 7 days.");
                    }

                    var mask = 0;
                    var i = 0;
                    foreach (var day in days.EnumerateArray())
                    {
                        if (day.ValueKind != JsonValueKind.Number || !day.TryGetInt32(out var d) || d is < 1 or > 7)
                        {
                            throw Fail($"{daysPath}[{i}]", "must be a day from 1 (Monday) to 7 (Sunday).");
                        }

                        mask |= 1 << d;
                        i++;
                    }

                    return new AlarmSchedule(ScheduleType.SpecificTime, zone, mask, TimeOfDay(schedule, "startsOn", path), TimeOfDay(schedule, "endsOn", path), []);
                }

            case "CUSTOM":
                {
                    var zone = ParseZone(schedule, path);
                    var itemsPath = path + ".items";
                    if (!schedule.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array)
                    {
                        throw Fail(itemsPath, "must be an array of days.");
                    }

                    if (items.GetArrayLength() > 7)
                    {
                        throw Fail(itemsPath, "holds more than 7 days.");
                    }

                    var parsed = new List<ScheduleDay>(items.GetArrayLength());
                    var i = 0;
                    foreach (var item in items.EnumerateArray())
                    {
                        var itemPath = $"{itemsPath}[{i}]";
                        RequireObject(item, itemPath);
                        if (!item.TryGetProperty("dayOfWeek", out var day) || day.ValueKind != JsonValueKind.Number || !day.TryGetInt32(out var d) || d is < 1 or > 7)
                        {
                            throw Fail(itemPath + ".dayOfWeek", "must be a day from 1 (Monday) to 7 (Sunday).");
                        }

                        parsed.Add(new ScheduleDay(OptionalBoolean(item, "enabled", itemPath) ?? false, d, TimeOfDay(item, "startsOn", itemPath), TimeOfDay(item, "endsOn", itemPath)));
                        i++;
                    }

                    return new AlarmSchedule(ScheduleType.Custom, zone, 0, 0, 0, parsed);
                }

            default:
                throw Fail(path + ".type", "must be ANY_TIME, SPECIFIC_TIME or CUSTOM.");
        }
    }

    private static TimeZoneInfo ParseZone(JsonElement schedule, string path)
    {
        var name = RequiredText(schedule, "timezone", path);
        return TimeZoneInfo.TryFindSystemTimeZoneById(name, out var zone) ? zone : throw Fail(path + ".timezone", $"'{name}' is not a known time zone (use an IANA name such as Europe/Berlin).");
    }

    private static long TimeOfDay(JsonElement owner, string name, string path)
    {
        if (!owner.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return 0;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var ms) && ms is >= 0 and <= MillisecondsPerDay
            ? ms
            : throw Fail($"{path}.{name}", "must be milliseconds from midnight, 0 to 86400000.");
    }

    private static void RequireObject(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Fail(path, $"must be an object, not {Describe(element.ValueKind)}.");
        }
    }

    private static string RequiredText(JsonElement owner, string name, string path) =>
        OptionalText(owner, name, path) is { Length: > 0 } text ? text : throw Fail($"{path}.{name}", "is required and must be a non-empty string.");

    private static string? OptionalText(JsonElement owner, string name, string path, int maximumLength = MaximumTextLength)
    {
        if (!owner.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw Fail($"{path}.{name}", $"must be a string, not {Describe(value.ValueKind)}.");
        }

        var text = value.GetString()!;
        return text.Length <= maximumLength ? text : throw Fail($"{path}.{name}", $"is longer than {maximumLength.ToString(CultureInfo.InvariantCulture)} characters.");
    }

    private static bool? OptionalBoolean(JsonElement owner, string name, string path)
    {
        if (!owner.TryGetProperty(name, out var value))
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Fail($"{path}.{name}", $"must be true or false, not {Describe(value.ValueKind)}."),
        };
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "missing",
    };

    private static AlarmRuleException Fail(string path, string problem) => new(path, problem);
}
