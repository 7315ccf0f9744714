using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Taihu.Mqtt.Topics;
using Taihu.Platform.Events;

namespace Taihu.Platform.Integrations;

/// <summary>Where an integration sends: an HTTP webhook or an MQTT topic.</summary>
public enum IntegrationType
{
    Http,
    Mqtt,
}

/// <summary>
/// A tenant's integration: which events (device profiles, event types; null means all) go where. The target's
/// settings are in <see cref="IntegrationConfiguration"/>, stored as JSON.
/// </summary>
public sealed record Integration(Guid Id, Guid TenantId, string Name, IntegrationType Type, bool Enabled, IntegrationConfiguration Configuration, long CreatedTime)
{
    public static string TypeName(IntegrationType type) => type == IntegrationType.Http ? "HTTP" : "MQTT";

    public static IntegrationType? ParseType(string? name) => name switch
    {
        "HTTP" => IntegrationType.Http,
        "MQTT" => IntegrationType.Mqtt,
        _ => null,
    };
}

/// <summary>What an integration sends and its target's settings (webhook or MQTT); unused members stay null.</summary>
public sealed record IntegrationConfiguration
{
    public const long DefaultRetryLimitMs = 24 * 3_600_000L;
    public const long DefaultRequestTimeoutMs = 10_000;

    /// <summary>Device profiles whose devices' events are sent; null or empty: every profile.</summary>
    public IReadOnlyList<Guid>? DeviceProfileIds { get; init; }

    /// <summary>Event type names (TELEMETRY, ATTRIBUTES, ...); null or empty: every type.</summary>
    public IReadOnlyList<string>? MessageTypes { get; init; }

    // HTTP webhook.
    public string? Url { get; init; }

    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    public string? Secret { get; init; }

    /// <summary>How long an event is retried before it is dead-lettered (default 24 h).</summary>
    public long RetryLimitMs { get; init; } = DefaultRetryLimitMs;

    public long RequestTimeoutMs { get; init; } = DefaultRequestTimeoutMs;

    /// <summary>
    /// A webhook that answers devices' client-side RPC requests: the non-empty body of its 2xx answer to an
    /// <c>RPC_REQUEST</c> event is the reply the device gets. Null (false) for MQTT.
    /// </summary>
    public bool? AnswerRpc { get; init; }

    // MQTT republish.
    public string? Topic { get; init; }

    public int Qos { get; init; } = 1;

    /// <summary>An external broker's host; null: Taihu's own broker, in the tenant's namespace.</summary>
    public string? Host { get; init; }

    public int Port { get; init; } = 1883;

    public bool Tls { get; init; }

    public string? Username { get; init; }

    public string? Password { get; init; }

    /// <summary>"3.1.1" or "5.0".</summary>
    public string ProtocolVersion { get; init; } = "5.0";

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static IntegrationConfiguration FromJson(string json) => JsonSerializer.Deserialize<IntegrationConfiguration>(json, Json) ?? new IntegrationConfiguration();
}

/// <summary>An MQTT topic template: literal text with <c>{tenant}</c>, <c>{deviceId}</c>, <c>{deviceName}</c>, <c>{deviceType}</c> and <c>{type}</c>.</summary>
public static class TopicTemplate
{
    private static readonly string[] Placeholders = ["tenant", "deviceId", "deviceName", "deviceType", "type"];

    /// <summary>Null when the template is valid, else why not.</summary>
    public static string? Check(string? template)
    {
        if (string.IsNullOrEmpty(template) || template.Length > 1024)
        {
            return "configuration.topic is 1 to 1024 characters.";
        }

        var sample = new StringBuilder();
        var i = 0;
        while (i < template.Length)
        {
            var c = template[i];
            if (c == '{')
            {
                var end = template.IndexOf('}', i);
                var name = end < 0 ? template[(i + 1)..] : template[(i + 1)..end];
                if (end < 0 || Array.IndexOf(Placeholders, name) < 0)
                {
                    return $"configuration.topic has an unknown placeholder '{{{name}}}'; the placeholders are {{tenant}}, {{deviceId}}, {{deviceName}}, {{deviceType}} and {{type}}.";
                }

                sample.Append('x');
                i = end + 1;
            }
            else
            {
                sample.Append(c);
                i++;
            }
        }

        var topic = sample.ToString();
        return TopicValidator.IsValidTopicName(topic) && topic[0] != '$' ? null : "configuration.topic is not a valid MQTT topic name (no wildcards, not starting with $).";
    }

    /// <summary>Fills the template; false (with the reason) when a value would break the topic.</summary>
    public static bool TryFill(string template, Guid tenantId, string deviceId, string deviceName, string deviceType, string eventType, out string topic, out string? reason)
    {
        var builder = new StringBuilder(template.Length + 64);
        reason = null;
        var i = 0;
        while (i < template.Length)
        {
            var c = template[i];
            if (c != '{')
            {
                builder.Append(c);
                i++;
                continue;
            }

            var end = template.IndexOf('}', i);
            var name = template[(i + 1)..end];
            var value = name switch
            {
                "tenant" => tenantId.ToString(),
                "deviceId" => deviceId,
                "deviceName" => deviceName,
                "deviceType" => deviceType,
                _ => eventType,
            };
            if (value.Length == 0 || value.AsSpan().IndexOfAny("+#/\0") >= 0)
            {
                reason = $"The topic template cannot be filled: {{{name}}} is '{value}', which is empty or holds +, # or /.";
                topic = "";
                return false;
            }

            builder.Append(value);
            i = end + 1;
        }

        topic = builder.ToString();
        if (!TopicValidator.IsValidTopicName(topic) || Encoding.UTF8.GetByteCount(topic) > 65_535)
        {
            reason = "The filled topic is not a valid MQTT topic name.";
            return false;
        }

        return true;
    }
}

/// <summary>An integration's filter, compiled for the consumer's hot path (no LINQ, no allocation per event).</summary>
public sealed class IntegrationFilter
{
    private readonly HashSet<Guid>? _profiles;
    private readonly int _types;

    public IntegrationFilter(IntegrationConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        _profiles = configuration.DeviceProfileIds is { Count: > 0 } ids ? [.. ids] : null;
        if (configuration.MessageTypes is { Count: > 0 } names)
        {
            foreach (var name in names)
            {
                if (PlatformEventTypes.TryParse(name, out var type))
                {
                    _types |= 1 << (int)type;
                }
            }
        }
        else
        {
            _types = -1;
        }
    }

    public bool Matches(PlatformEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return Matches(e.Type, e.Device.ProfileId);
    }

    public bool Matches(PlatformEventType type, Guid profileId) => (_types & (1 << (int)type)) != 0 && (_profiles is null || _profiles.Contains(profileId));
}
