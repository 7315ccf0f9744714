using System.Net;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// A device profile's alarm rules (profileData.alarms) through the REST API of the real server: a profile as
/// ThingsBoard exports it is saved and read back unchanged, every field included; a bad rule is refused with
/// problem details naming the field and changes nothing.
/// </summary>
public sealed class DeviceProfileAlarmRulesTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    /// <summary>A profile as ThingsBoard 3.x exports it, with a DURATION rule, a clear rule, a schedule and the inactivity rule.</summary>
    private static string ThingsBoardProfile(string name) => $$"""
    {
      "name": "{{name}}",
      "description": "Air quality sensors",
      "type": "DEFAULT",
      "transportType": "DEFAULT",
      "provisionType": "DISABLED",
      "defaultRuleChainId": null,
      "defaultDashboardId": null,
      "defaultQueueName": null,
      "profileData": {
        "configuration": { "type": "DEFAULT" },
        "transportConfiguration": { "type": "DEFAULT" },
        "provisionConfiguration": { "type": "DISABLED", "provisionDeviceSecret": null },
        "alarms": [
          {
            "id": "5c0a2b1e-41f4-4b0e-8c1d-3f8a9e7d6c5b",
            "alarmType": "High PM2.5",
            "createRules": {
              "MAJOR": {
                "condition": {
                  "condition": [
                    {
                      "key": { "type": "TIME_SERIES", "key": "pm25" },
                      "valueType": "NUMERIC",
                      "value": null,
                      "predicate": {
                        "type": "NUMERIC",
                        "operation": "GREATER",
                        "value": { "defaultValue": 75.0, "userValue": null, "dynamicValue": { "sourceType": "CURRENT_DEVICE", "sourceAttribute": "pm25Limit", "inherit": false } }
                      }
                    }
                  ],
                  "spec": { "type": "DURATION", "unit": "MINUTES", "predicate": { "defaultValue": 10, "userValue": null, "dynamicValue": null } }
                },
                "schedule": { "type": "SPECIFIC_TIME", "timezone": "Asia/Shanghai", "daysOfWeek": [1, 2, 3, 4, 5], "startsOn": 0, "endsOn": 86400000, "dynamicValue": null },
                "alarmDetails": "PM2.5 has been ${pm25} for 10 minutes",
                "dashboardId": null
              }
            },
            "clearRule": {
              "condition": {
                "condition": [
                  {
                    "key": { "type": "TIME_SERIES", "key": "pm25" },
                    "valueType": "NUMERIC",
                    "value": null,
                    "predicate": { "type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": { "defaultValue": 35.0, "userValue": null, "dynamicValue": null } }
                  }
                ],
                "spec": { "type": "SIMPLE" }
              },
              "schedule": null,
              "alarmDetails": null,
              "dashboardId": null
            },
            "propagate": false,
            "propagateToOwner": false,
            "propagateToTenant": false,
            "propagateRelationTypes": null
          },
          {
            "id": "b3e8d1a0-2f6c-4a7e-9d5b-8c1f0e2a3b4d",
            "alarmType": "Inactivity",
            "createRules": {
              "WARNING": {
                "condition": {
                  "condition": [
                    {
                      "key": { "type": "ATTRIBUTE", "key": "active" },
                      "valueType": "BOOLEAN",
                      "value": null,
                      "predicate": { "type": "BOOLEAN", "operation": "EQUAL", "value": { "defaultValue": false, "userValue": null, "dynamicValue": null } }
                    }
                  ],
                  "spec": { "type": "SIMPLE" }
                },
                "schedule": { "type": "ANY_TIME" },
                "alarmDetails": null,
                "dashboardId": null
              }
            },
            "clearRule": null,
            "propagate": true,
            "propagateToOwner": false,
            "propagateToTenant": false,
            "propagateRelationTypes": ["Contains"]
          }
        ]
      }
    }
    """;

    [Fact]
    public async Task A_ThingsBoard_profile_with_alarm_rules_reads_back_unchanged()
    {
        var name = "air-" + Guid.NewGuid().ToString("N")[..8];
        var posted = JsonNode.Parse(ThingsBoardProfile(name))!;
        var saved = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/deviceProfile", ThingsBoardProfile(name)), HttpStatusCode.OK);
        var id = saved["id"]!["id"]!.GetValue<string>();
        var expected = posted["profileData"]!["alarms"];
        Assert.True(JsonNode.DeepEquals(expected, saved["profileData"]!["alarms"]), saved.ToJsonString());

        var read = await fixture.Admin.GetAsync($"/api/deviceProfile/{id}");
        Assert.True(JsonNode.DeepEquals(expected, read["profileData"]!["alarms"]), read.ToJsonString());
        var listed = await fixture.Admin.GetAsync("/api/deviceProfiles?pageSize=100&page=0&textSearch=" + name);
        Assert.True(JsonNode.DeepEquals(expected, listed["data"]![0]!["profileData"]!["alarms"]));

        // Saved again without alarms: the rules are gone.
        var withoutRules = JsonNode.Parse(ThingsBoardProfile(name))!;
        withoutRules["id"] = new JsonObject { ["entityType"] = "DEVICE_PROFILE", ["id"] = id };
        withoutRules["profileData"]!.AsObject().Remove("alarms");
        await fixture.Admin.PostAsync("/api/deviceProfile", withoutRules.ToJsonString());
        Assert.Null((await fixture.Admin.GetAsync($"/api/deviceProfile/{id}"))["profileData"]!["alarms"]);
    }

    [Theory]
    [InlineData("MAJOR.condition.condition[0].predicate.operation", "GREATER_THAN")]
    [InlineData("MAJOR.condition.spec.unit", "FORTNIGHTS")]
    [InlineData("MAJOR.schedule.timezone", "Nowhere/Special")]
    public async Task A_bad_rule_is_400_naming_the_field_and_changes_nothing(string field, string badValue)
    {
        var name = "air-" + Guid.NewGuid().ToString("N")[..8];
        var good = JsonNode.Parse(ThingsBoardProfile(name))!;
        var saved = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/deviceProfile", good.ToJsonString()), HttpStatusCode.OK);
        var id = saved["id"]!["id"]!.GetValue<string>();

        var bad = JsonNode.Parse(ThingsBoardProfile(name))!;
        bad["id"] = new JsonObject { ["entityType"] = "DEVICE_PROFILE", ["id"] = id };
        bad["description"] = "changed";
        JsonNode node = bad["profileData"]!["alarms"]![0]!["createRules"]!;
        var parts = field.Split('.');
        foreach (var part in parts[..^1])
        {
            node = part.EndsWith(']') ? node[part[..part.IndexOf('[')]]![int.Parse(part[(part.IndexOf('[') + 1)..^1], System.Globalization.CultureInfo.InvariantCulture)]! : node[part]!;
        }

        node[parts[^1]] = badValue;
        var problem = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/deviceProfile", bad.ToJsonString()), HttpStatusCode.BadRequest);
        Assert.Equal(30, problem["errorCode"]!.GetValue<int>());
        Assert.StartsWith("profileData.alarms[0].createRules." + field + ": ", problem["message"]!.GetValue<string>(), StringComparison.Ordinal);

        // Nothing changed, and the server still serves.
        var read = await fixture.Admin.GetAsync($"/api/deviceProfile/{id}");
        Assert.Equal("Air quality sensors", read["description"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(good["profileData"]!["alarms"], read["profileData"]!["alarms"]));
    }

    [Fact]
    public async Task Hostile_alarm_json_is_400_and_the_server_keeps_serving()
    {
        var name = "air-" + Guid.NewGuid().ToString("N")[..8];
        // Nested deeper than any JSON the API reads (64 levels), inside a predicate.
        var deep = new string('[', 200) + new string(']', 200);
        var bodies = new[]
        {
            ($$"""{"name": "{{name}}", "profileData": {"alarms": {"alarmType": "x"} } }""", "profileData.alarms: "),
            ($$"""{"name": "{{name}}", "profileData": {"alarms": [{"alarmType": "x", "createRules": {"MAJOR": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "t"}, "valueType": "NUMERIC", "predicate": {{deep}} }]} } } }]} }""", null),
            ($$"""{"name": "{{name}}", "profileData": {"alarms": [{{string.Join(',', Enumerable.Repeat("{}", 5000))}}]} }""", "profileData.alarms: "),
        };
        foreach (var (body, message) in bodies)
        {
            var problem = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/deviceProfile", body), HttpStatusCode.BadRequest);
            if (message is not null)
            {
                Assert.StartsWith(message, problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
            }
        }

        Assert.Empty((await fixture.Admin.GetAsync("/api/deviceProfiles?pageSize=100&page=0&textSearch=" + name))["data"]!.AsArray());
        await fixture.Admin.GetAsync("/api/deviceProfileInfo/default");
    }

    [Fact]
    public async Task A_new_profile_with_a_bad_rule_is_not_created()
    {
        var name = "air-" + Guid.NewGuid().ToString("N")[..8];
        var bad = JsonNode.Parse(ThingsBoardProfile(name))!;
        bad["profileData"]!["alarms"]![1]!["createRules"]!["WARNING"]!["condition"]!["condition"]![0]!["key"]!["type"] = 7;
        var problem = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/deviceProfile", bad.ToJsonString()), HttpStatusCode.BadRequest);
        Assert.StartsWith("profileData.alarms[1].createRules.WARNING.condition.condition[0].key.type: ", problem["message"]!.GetValue<string>(), StringComparison.Ordinal);

        var listed = await fixture.Admin.GetAsync("/api/deviceProfiles?pageSize=100&page=0&textSearch=" + name);
        Assert.Empty(listed["data"]!.AsArray());
    }
}
