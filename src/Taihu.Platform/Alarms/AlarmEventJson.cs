using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Taihu.Platform.Alarms;

/// <summary>
/// An alarm as the REST API returns it (ThingsBoard's <c>Alarm</c>), written for the event log's ALARM_CREATED,
/// ALARM_UPDATED and ALARM_CLEARED events: integrations send it as the event's <c>data</c>, and the rules engine
/// reads its <c>type</c>. Kept in step with the API's AlarmDto (Taihu.Server).
/// </summary>
public static class AlarmEventJson
{
    public static string Write(Alarm alarm)
    {
        ArgumentNullException.ThrowIfNull(alarm);
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            WriteId(writer, "id", "ALARM", alarm.Id);
            writer.WriteNumber("createdTime", alarm.CreatedTime);
            WriteId(writer, "tenantId", "TENANT", alarm.TenantId);
            WriteId(writer, "customerId", "CUSTOMER", Guid.Parse("13814000-1dd2-11b2-8080-808080808080"));
            writer.WriteString("name", alarm.Type);
            writer.WriteString("type", alarm.Type);
            WriteId(writer, "originator", "DEVICE", alarm.OriginatorId);
            writer.WriteString("severity", alarm.Severity.Name());
            writer.WriteBoolean("acknowledged", alarm.Acknowledged);
            writer.WriteBoolean("cleared", alarm.Cleared);
            if (alarm.AssigneeId is { } assignee)
            {
                WriteId(writer, "assigneeId", "USER", assignee);
            }
            else
            {
                writer.WriteNull("assigneeId");
            }

            writer.WriteNumber("startTs", alarm.StartTs);
            writer.WriteNumber("endTs", alarm.EndTs);
            writer.WriteNumber("ackTs", alarm.AckTs);
            writer.WriteNumber("clearTs", alarm.ClearTs);
            writer.WriteNumber("assignTs", alarm.AssignTs);
            writer.WritePropertyName("details");
            writer.WriteRawValue(string.IsNullOrEmpty(alarm.DetailsJson) ? "null" : alarm.DetailsJson);
            writer.WriteBoolean("propagate", alarm.Propagate);
            writer.WriteBoolean("propagateToOwner", alarm.PropagateToOwner);
            writer.WriteBoolean("propagateToTenant", alarm.PropagateToTenant);
            writer.WriteStartArray("propagateRelationTypes");
            foreach (var relation in alarm.PropagateRelationTypes)
            {
                writer.WriteStringValue(relation);
            }

            writer.WriteEndArray();
            writer.WriteString("status", alarm.StatusName);
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteId(Utf8JsonWriter writer, string name, string entityType, Guid id)
    {
        writer.WriteStartObject(name);
        writer.WriteString("entityType", entityType);
        writer.WriteString("id", id);
        writer.WriteEndObject();
    }
}
