using System.Text;
using System.Text.Json;
using Taihu.Platform.Alarms;
using Taihu.Platform.Rules;

namespace Taihu.Platform.Tests;

/// <summary>
/// The parser of profileData.alarms: ThingsBoard's JSON as its editor writes it parses to the model; every bad
/// field is refused with the JSON path of that field.
/// </summary>
public sealed class AlarmRuleParserTests
{
    /// <summary>Two alarms as ThingsBoard's profile editor saves them, every kind of spec, key, predicate, value and schedule.</summary>
    public const string ThingsBoardAlarms = """
    [
      {
        "id": "8c1b2a4e-7d2f-4b1e-9b7a-0a3e2f1d4c5b",
        "alarmType": "High PM2.5",
        "createRules": {
          "CRITICAL": {
            "condition": {
              "condition": [
                {
                  "key": { "type": "TIME_SERIES", "key": "pm25" },
                  "valueType": "NUMERIC",
                  "value": null,
                  "predicate": {
                    "type": "NUMERIC",
                    "operation": "GREATER",
                    "value": { "defaultValue": 150, "userValue": null, "dynamicValue": { "sourceType": "CURRENT_DEVICE", "sourceAttribute": "pm25Critical", "inherit": true } }
                  }
                }
              ],
              "spec": { "type": "DURATION", "unit": "MINUTES", "predicate": { "defaultValue": 5, "userValue": null, "dynamicValue": null } }
            },
            "schedule": { "type": "ANY_TIME" },
            "alarmDetails": "pm2.5 is ${pm25}",
            "dashboardId": null
          },
          "MAJOR": {
            "condition": {
              "condition": [
                {
                  "key": { "type": "TIME_SERIES", "key": "pm25" },
                  "valueType": "NUMERIC",
                  "predicate": { "type": "NUMERIC", "operation": "GREATER", "value": { "defaultValue": 75, "userValue": null, "dynamicValue": null } }
                }
              ],
              "spec": { "type": "DURATION", "unit": "MINUTES", "predicate": { "defaultValue": 10 } }
            },
            "schedule": {
              "type": "SPECIFIC_TIME", "timezone": "Europe/Berlin", "daysOfWeek": [1, 2, 3, 4, 5], "startsOn": 28800000, "endsOn": 64800000,
              "dynamicValue": null
            },
            "alarmDetails": null
          },
          "WARNING": {
            "condition": {
              "condition": [
                {
                  "key": { "type": "TIME_SERIES", "key": "pm25" },
                  "valueType": "NUMERIC",
                  "predicate": {
                    "type": "COMPLEX",
                    "operation": "AND",
                    "predicates": [
                      { "type": "NUMERIC", "operation": "GREATER_OR_EQUAL", "value": { "defaultValue": 35 } },
                      { "type": "NUMERIC", "operation": "LESS", "value": { "defaultValue": 1000 } }
                    ]
                  }
                },
                {
                  "key": { "type": "ATTRIBUTE", "key": "site" },
                  "valueType": "STRING",
                  "predicate": { "type": "STRING", "operation": "IN", "value": { "defaultValue": "north,south" }, "ignoreCase": true }
                }
              ],
              "spec": { "type": "REPEATING", "predicate": { "defaultValue": 3 } }
            },
            "schedule": {
              "type": "CUSTOM", "timezone": "UTC",
              "items": [
                { "enabled": true, "dayOfWeek": 1, "startsOn": 0, "endsOn": 0 },
                { "enabled": false, "dayOfWeek": 7, "startsOn": 0, "endsOn": 0 }
              ]
            }
          }
        },
        "clearRule": {
          "condition": {
            "condition": [
              {
                "key": { "type": "TIME_SERIES", "key": "pm25" },
                "valueType": "NUMERIC",
                "predicate": { "type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": { "defaultValue": 35 } }
              }
            ],
            "spec": { "type": "SIMPLE" }
          },
          "schedule": null,
          "alarmDetails": null
        },
        "propagate": true,
        "propagateToOwner": false,
        "propagateToTenant": false,
        "propagateRelationTypes": ["Contains"]
      },
      {
        "id": "inactivity",
        "alarmType": "Device inactive",
        "createRules": {
          "MINOR": {
            "condition": {
              "condition": [
                {
                  "key": { "type": "ATTRIBUTE", "key": "active" },
                  "valueType": "BOOLEAN",
                  "predicate": { "type": "BOOLEAN", "operation": "EQUAL", "value": { "defaultValue": false } }
                },
                {
                  "key": { "type": "CONSTANT", "key": "enabled" },
                  "valueType": "BOOLEAN",
                  "value": true,
                  "predicate": { "type": "BOOLEAN", "operation": "EQUAL", "value": { "defaultValue": true } }
                }
              ],
              "spec": { "type": "SIMPLE" }
            }
          }
        },
        "clearRule": {
          "condition": {
            "condition": [
              {
                "key": { "type": "ATTRIBUTE", "key": "active" },
                "valueType": "BOOLEAN",
                "predicate": { "type": "BOOLEAN", "operation": "EQUAL", "value": { "defaultValue": true } }
              }
            ]
          }
        },
        "propagate": false
      }
    ]
    """;

    private static IReadOnlyList<ProfileAlarm> Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        return AlarmRuleParser.Parse(document.RootElement);
    }

    [Fact]
    public void ThingsBoard_profile_alarms_parse_into_the_model()
    {
        var alarms = Parse(ThingsBoardAlarms);

        Assert.Equal(2, alarms.Count);
        var pm = alarms[0];
        Assert.Equal("High PM2.5", pm.AlarmType);
        Assert.True(pm.Propagate);
        Assert.Equal([AlarmSeverity.Critical, AlarmSeverity.Major, AlarmSeverity.Warning], pm.CreateRules.Keys.Order());

        var critical = pm.CreateRules[AlarmSeverity.Critical];
        Assert.Equal(ConditionSpecType.Duration, critical.Spec.Type);
        Assert.Equal(TimeUnitName.Minutes, critical.Spec.Unit);
        Assert.Equal(5, critical.Spec.Amount);
        Assert.Equal("pm2.5 is ${pm25}", critical.AlarmDetails);
        var filter = Assert.Single(critical.Filters);
        Assert.Equal((RuleKeyType.TimeSeries, "pm25", RuleValueType.Numeric), (filter.KeyType, filter.Key, filter.ValueType));
        Assert.Equal(PredicateOperation.Greater, filter.Predicate.Operation);
        Assert.Equal(150, filter.Predicate.Value!.Default!.Value.Number);
        Assert.Equal(new DynamicValue(DynamicSourceType.CurrentDevice, "pm25Critical", true), filter.Predicate.Value.Dynamic);

        var major = pm.CreateRules[AlarmSeverity.Major];
        Assert.Equal(ScheduleType.SpecificTime, major.Schedule.Type);
        Assert.Equal(0b0011_1110, major.Schedule.DaysOfWeek);
        Assert.Equal((28_800_000L, 64_800_000L), (major.Schedule.StartsOn, major.Schedule.EndsOn));

        var warning = pm.CreateRules[AlarmSeverity.Warning];
        Assert.Equal(ConditionSpecType.Repeating, warning.Spec.Type);
        Assert.Equal(3, warning.Spec.Amount);
        Assert.Equal(PredicateType.Complex, warning.Filters[0].Predicate.Type);
        Assert.Equal(2, warning.Filters[0].Predicate.Predicates!.Count);
        Assert.Equal(PredicateOperation.In, warning.Filters[1].Predicate.Operation);
        Assert.True(warning.Filters[1].Predicate.IgnoreCase);
        Assert.Equal(ScheduleType.Custom, warning.Schedule.Type);
        Assert.Equal(2, warning.Schedule.Days.Count);

        Assert.Equal(ConditionSpecType.Simple, pm.ClearRule!.Spec.Type);
        Assert.Equal(AlarmSchedule.AnyTime, pm.ClearRule.Schedule);

        var inactivity = alarms[1];
        Assert.Equal("inactivity", inactivity.Id);
        Assert.Equal(RuleKeyType.Constant, inactivity.CreateRules[AlarmSeverity.Minor].Filters[1].KeyType);
        Assert.True(inactivity.CreateRules[AlarmSeverity.Minor].Filters[1].Constant!.Value.Boolean);
        Assert.Equal(ConditionSpecType.Simple, inactivity.ClearRule!.Spec.Type);
    }

    [Fact]
    public void Null_and_an_empty_array_are_no_alarms()
    {
        Assert.Empty(Parse("null"));
        Assert.Empty(Parse("[]"));
    }

    [Fact]
    public void An_alarm_without_an_id_is_known_by_its_type()
    {
        var alarm = Assert.Single(Parse(Alarm(createRules: """{"MAJOR": """ + Rule() + "}", id: null)));
        Assert.Equal("t", alarm.Id);
    }

    private static string Predicate(string type = "NUMERIC", string operation = "GREATER", string value = """{"defaultValue": 1}""") =>
        $$"""{"type": "{{type}}", "operation": "{{operation}}", "value": {{value}}}""";

    private static string Filter(string key = """{"type": "TIME_SERIES", "key": "t"}""", string valueType = "NUMERIC", string? predicate = null) =>
        $$"""{"key": {{key}}, "valueType": "{{valueType}}", "predicate": {{predicate ?? Predicate()}}}""";

    private static string Rule(string? filters = null, string spec = """{"type": "SIMPLE"}""", string schedule = "null") =>
        $$"""{"condition": {"condition": [{{filters ?? Filter()}}], "spec": {{spec}}}, "schedule": {{schedule}}}""";

    private static string Alarm(string? createRules = null, string? id = "a", string type = "t", string clear = "null") =>
        $$"""[{{{(id is null ? "" : $"\"id\": \"{id}\", ")}}"alarmType": "{{type}}", "createRules": {{createRules ?? "{\"CRITICAL\": " + Rule() + "}"}}, "clearRule": {{clear}}}]""";

    private static string Nested(int depth)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < depth; i++)
        {
            builder.Append("""{"type": "COMPLEX", "operation": "OR", "predicates": [""");
        }

        builder.Append(Predicate());
        for (var i = 0; i < depth; i++)
        {
            builder.Append("]}");
        }

        return builder.ToString();
    }

    /// <summary>Case, JSON of profileData.alarms, the path the error must name.</summary>
    public static TheoryData<string, string, string> BadRules()
    {
        const string C = "profileData.alarms[0].createRules.CRITICAL";
        const string F = C + ".condition.condition[0]";
        return new()
        {
            { "alarms not an array", """{"a": 1}""", "profileData.alarms" },
            { "alarms a string", "\"x\"", "profileData.alarms" },
            { "alarm not an object", "[1]", "profileData.alarms[0]" },
            { "alarmType missing", """[{"id": "a", "createRules": {}}]""", "profileData.alarms[0].alarmType" },
            { "alarmType a number", """[{"id": "a", "alarmType": 5, "createRules": {}}]""", "profileData.alarms[0].alarmType" },
            { "alarmType empty", """[{"id": "a", "alarmType": "", "createRules": {}}]""", "profileData.alarms[0].alarmType" },
            { "id an object", """[{"id": {}, "alarmType": "t", "createRules": {}}]""", "profileData.alarms[0].id" },
            { "createRules missing", """[{"id": "a", "alarmType": "t"}]""", "profileData.alarms[0].createRules" },
            { "createRules an array", """[{"id": "a", "alarmType": "t", "createRules": []}]""", "profileData.alarms[0].createRules" },
            { "createRules empty", Alarm("{}"), "profileData.alarms[0].createRules" },
            { "unknown severity", Alarm("""{"SEVERE": """ + Rule() + "}"), "profileData.alarms[0].createRules.SEVERE" },
            { "lower-case severity", Alarm("""{"critical": """ + Rule() + "}"), "profileData.alarms[0].createRules.critical" },
            { "rule not an object", Alarm("""{"CRITICAL": []}"""), C },
            { "condition missing", Alarm("""{"CRITICAL": {}}"""), C + ".condition" },
            { "condition a string", Alarm("""{"CRITICAL": {"condition": "x"}}"""), C + ".condition" },
            { "filters missing", Alarm("""{"CRITICAL": {"condition": {}}}"""), C + ".condition.condition" },
            { "filters empty", Alarm("""{"CRITICAL": {"condition": {"condition": []}}}"""), C + ".condition.condition" },
            { "filter not an object", Alarm("""{"CRITICAL": {"condition": {"condition": [true]}}}"""), F },
            { "key missing", Alarm("""{"CRITICAL": """ + Rule("""{"valueType": "NUMERIC", "predicate": {}}""") + "}"), F + ".key" },
            { "unknown key type", Alarm("""{"CRITICAL": """ + Rule(Filter("""{"type": "TELEMETRY", "key": "t"}""")) + "}"), F + ".key.type" },
            { "key name missing", Alarm("""{"CRITICAL": """ + Rule(Filter("""{"type": "TIME_SERIES"}""")) + "}"), F + ".key.key" },
            { "unknown value type", Alarm("""{"CRITICAL": """ + Rule(Filter(valueType: "INTEGER")) + "}"), F + ".valueType" },
            { "constant without value", Alarm("""{"CRITICAL": """ + Rule(Filter("""{"type": "CONSTANT", "key": "c"}""")) + "}"), F + ".value" },
            { "predicate missing", Alarm("""{"CRITICAL": """ + Rule("""{"key": {"type": "TIME_SERIES", "key": "t"}, "valueType": "NUMERIC"}""") + "}"), F + ".predicate" },
            { "unknown predicate type", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate("DATE"))) + "}"), F + ".predicate.type" },
            { "unknown numeric operation", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(operation: "GREATER_THAN"))) + "}"), F + ".predicate.operation" },
            { "string operation on a number", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(operation: "CONTAINS"))) + "}"), F + ".predicate.operation" },
            { "unknown string operation", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate("STRING", "MATCHES", """{"defaultValue": "x"}"""))) + "}"), F + ".predicate.operation" },
            { "boolean GREATER", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate("BOOLEAN", "GREATER", """{"defaultValue": true}"""))) + "}"), F + ".predicate.operation" },
            { "complex XOR", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: """{"type": "COMPLEX", "operation": "XOR", "predicates": []}""")) + "}"), F + ".predicate.operation" },
            { "complex without predicates", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: """{"type": "COMPLEX", "operation": "AND"}""")) + "}"), F + ".predicate.predicates" },
            { "complex empty", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: """{"type": "COMPLEX", "operation": "AND", "predicates": []}""")) + "}"), F + ".predicate.predicates" },
            { "bad child of complex", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: """{"type": "COMPLEX", "operation": "AND", "predicates": [""" + Predicate() + "," + Predicate(operation: "ABOVE") + "]}")) + "}"), F + ".predicate.predicates[1].operation" },
            { "deep nesting", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Nested(20))) + "}"), F + ".predicate" + string.Concat(Enumerable.Repeat(".predicates[0]", 8)) + ".predicates" },
            { "value missing", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: """{"type": "NUMERIC", "operation": "GREATER"}""")) + "}"), F + ".predicate.value" },
            { "value a number", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: "75"))) + "}"), F + ".predicate.value" },
            { "default missing", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: "{}"))) + "}"), F + ".predicate.value.defaultValue" },
            { "numeric default a string", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: """{"defaultValue": "75"}"""))) + "}"), F + ".predicate.value.defaultValue" },
            { "numeric default too big", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: """{"defaultValue": 1e999}"""))) + "}"), F + ".predicate.value.defaultValue" },
            { "boolean default a string", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate("BOOLEAN", "EQUAL", """{"defaultValue": "false"}"""))) + "}"), F + ".predicate.value.defaultValue" },
            { "string default a number", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate("STRING", "EQUAL", """{"defaultValue": 1}"""))) + "}"), F + ".predicate.value.defaultValue" },
            { "huge string default", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate("STRING", "EQUAL", $$"""{"defaultValue": "{{new string('x', 5000)}}"}"""))) + "}"), F + ".predicate.value.defaultValue" },
            { "ignoreCase a string", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: """{"type": "STRING", "operation": "EQUAL", "ignoreCase": "yes", "value": {"defaultValue": "x"}}""")) + "}"), F + ".predicate.ignoreCase" },
            { "unknown dynamic source", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: """{"defaultValue": 1, "dynamicValue": {"sourceType": "CURRENT_USER", "sourceAttribute": "x"}}"""))) + "}"), F + ".predicate.value.dynamicValue.sourceType" },
            { "dynamic attribute without source", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: """{"defaultValue": 1, "dynamicValue": {"sourceAttribute": "x"}}"""))) + "}"), F + ".predicate.value.dynamicValue.sourceType" },
            { "dynamic inherit a number", Alarm("""{"CRITICAL": """ + Rule(Filter(predicate: Predicate(value: """{"defaultValue": 1, "dynamicValue": {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "x", "inherit": 1}}"""))) + "}"), F + ".predicate.value.dynamicValue.inherit" },
            { "unknown spec", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "ONCE"}""") + "}"), C + ".condition.spec.type" },
            { "duration without unit", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "DURATION", "predicate": {"defaultValue": 1}}""") + "}"), C + ".condition.spec.unit" },
            { "duration in weeks", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "DURATION", "unit": "WEEKS", "predicate": {"defaultValue": 1}}""") + "}"), C + ".condition.spec.unit" },
            { "duration without predicate", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "DURATION", "unit": "MINUTES"}""") + "}"), C + ".condition.spec.predicate" },
            { "negative duration", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": -1}}""") + "}"), C + ".condition.spec.predicate.defaultValue" },
            { "fractional duration", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 1.5}}""") + "}"), C + ".condition.spec.predicate.defaultValue" },
            { "zero repeats", Alarm("""{"CRITICAL": """ + Rule(spec: """{"type": "REPEATING", "predicate": {"defaultValue": 0}}""") + "}"), C + ".condition.spec.predicate.defaultValue" },
            { "unknown schedule", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "WEEKDAYS"}""") + "}"), C + ".schedule.type" },
            { "schedule without zone", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "SPECIFIC_TIME", "daysOfWeek": [1]}""") + "}"), C + ".schedule.timezone" },
            { "unknown zone", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "SPECIFIC_TIME", "timezone": "Mars/Olympus", "daysOfWeek": [1]}""") + "}"), C + ".schedule.timezone" },
            { "day 8", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "SPECIFIC_TIME", "timezone": "UTC", "daysOfWeek": [1, 8]}""") + "}"), C + ".schedule.daysOfWeek[1]" },
            { "too many days", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "SPECIFIC_TIME", "timezone": "UTC", "daysOfWeek": [1,2,3,4,5,6,7,1]}""") + "}"), C + ".schedule.daysOfWeek" },
            { "endsOn past midnight", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "SPECIFIC_TIME", "timezone": "UTC", "daysOfWeek": [1], "endsOn": 90000000}""") + "}"), C + ".schedule.endsOn" },
            { "custom item without day", Alarm("""{"CRITICAL": """ + Rule(schedule: """{"type": "CUSTOM", "timezone": "UTC", "items": [{"enabled": true}]}""") + "}"), C + ".schedule.items[0].dayOfWeek" },
            { "alarmDetails a number", Alarm("""{"CRITICAL": {"condition": {"condition": [""" + Filter() + """]}, "alarmDetails": 3}}"""), C + ".alarmDetails" },
            { "bad clear rule", Alarm(clear: """{"condition": {"condition": []}}"""), "profileData.alarms[0].clearRule.condition.condition" },
            { "propagate a string", """[{"id": "a", "alarmType": "t", "createRules": {"CRITICAL": """ + Rule() + """}, "propagate": "true"}]""", "profileData.alarms[0].propagate" },
            { "duplicate id", "[" + Alarm()[1..^1] + "," + Alarm(type: "u")[1..^1] + "]", "profileData.alarms[1].id" },
            { "duplicate type", "[" + Alarm()[1..^1] + "," + Alarm(id: "b")[1..^1] + "]", "profileData.alarms[1].alarmType" },
            { "too many alarms", "[" + string.Join(',', Enumerable.Range(0, 101).Select(i => Alarm(id: $"a{i}", type: $"t{i}")[1..^1])) + "]", "profileData.alarms" },
            { "too many filters", Alarm("""{"CRITICAL": """ + Rule(string.Join(',', Enumerable.Repeat(Filter(), 101))) + "}"), C + ".condition.condition" },
            { "second filter bad", Alarm("""{"CRITICAL": """ + Rule(Filter() + "," + Filter(predicate: Predicate(operation: "BIGGER"))) + "}"), C + ".condition.condition[1].predicate.operation" },
        };
    }

    [Theory]
    [MemberData(nameof(BadRules))]
    public void A_bad_rule_is_refused_naming_the_field(string name, string json, string path)
    {
        _ = name;
        var error = Assert.Throws<AlarmRuleException>(() => Parse(json));
        Assert.Equal(path, error.Path);
        Assert.StartsWith(path + ": ", error.Message, StringComparison.Ordinal);
        Assert.Equal(400, error.Status);
    }
}
