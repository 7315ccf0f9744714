using System.Globalization;
using Microsoft.AspNetCore.Http;
using Taihu.Platform.Integrations;

namespace Taihu.WebConsole;

/// <summary>
/// The integration form's fields (Components/Integrations/IntegrationFields.razor) read from the posted form into
/// what the platform's <see cref="IntegrationService"/> takes. The form has every setting the API has; the browser
/// checks nothing itself, so the service checks every value and its message names the field, which
/// <see cref="FieldOf"/> turns back into the form's field to show it there. An empty secret or broker password keeps
/// the stored one; an empty retry limit or request timeout is the stored value (or the default).
/// </summary>
public static class IntegrationForm
{
    /// <summary>The event types an integration may send, in the order the form lists them.</summary>
    public static readonly string[] MessageTypes = ["TELEMETRY", "ATTRIBUTES", "CONNECT", "DISCONNECT", "ALARM_CREATED", "ALARM_UPDATED", "ALARM_CLEARED", "RPC_REQUEST"];

    public static IntegrationInput Read(IFormCollection form, Integration? existing)
    {
        ArgumentNullException.ThrowIfNull(form);
        var type = form["Type"].ToString();
        var old = existing?.Configuration ?? new IntegrationConfiguration();
        var chosen = form["MessageTypes"];
        IReadOnlyList<string>? messageTypes = chosen.Count == 0 || chosen.Count == MessageTypes.Length ? null : [.. chosen.Where(t => t is not null).Select(t => t!)];
        IntegrationConfiguration configuration;
        if (type == "MQTT")
        {
            var host = Text(form, "Host");
            configuration = new IntegrationConfiguration
            {
                Topic = form["Topic"].ToString().Trim(),
                Qos = int.TryParse(form["Qos"], out var qos) ? qos : 1,
                Host = host,
                Port = int.TryParse(form["Port"], out var port) ? port : 1883,
                Tls = form["Tls"] == "true",
                Username = host is null ? null : Text(form, "Username"),
                Password = host is null ? null : Text(form, "Password"),
                ProtocolVersion = Text(form, "ProtocolVersion") ?? old.ProtocolVersion,
            };
        }
        else
        {
            configuration = new IntegrationConfiguration
            {
                Url = form["Url"].ToString().Trim(),
                Secret = Text(form, "Secret"),
                Headers = Headers(form["Headers"].ToString()),
                RetryLimitMs = Milliseconds(form, "RetryLimitSeconds") ?? old.RetryLimitMs,
                RequestTimeoutMs = Milliseconds(form, "RequestTimeoutSeconds") ?? old.RequestTimeoutMs,
                AnswerRpc = form["AnswerRpc"] == "true",
            };
        }

        // No profile ticked: every profile's devices.
        var profiles = new List<Guid>();
        foreach (var value in form["DeviceProfileIds"])
        {
            if (Guid.TryParse(value, out var profile))
            {
                profiles.Add(profile);
            }
        }

        return new IntegrationInput(existing?.Id, form["Name"].ToString().Trim(), type, form["Enabled"] == "true", profiles.Count == 0 ? null : profiles, messageTypes, configuration);
    }

    /// <summary>
    /// The form's field that a platform message is about (its messages start with the field's JSON path:
    /// <c>configuration.retryLimitMs is ...</c>), or null when the message names none of the form's fields.
    /// </summary>
    public static string? FieldOf(string? message)
    {
        if (string.IsNullOrEmpty(message))
        {
            return null;
        }

        var end = message.AsSpan().IndexOfAny(" [");
        var path = end < 0 ? message : message[..end];
        return path switch
        {
            "name" => "Name",
            "type" => "Type",
            "messageTypes" => "MessageTypes",
            "deviceProfileIds" => "DeviceProfileIds",
            "configuration.url" => "Url",
            "configuration.secret" => "Secret",
            "configuration.headers" => "Headers",
            "configuration.retryLimitMs" => "RetryLimitSeconds",
            "configuration.requestTimeoutMs" => "RequestTimeoutSeconds",
            "configuration.answerRpc" => "AnswerRpc",
            "configuration.topic" => "Topic",
            "configuration.qos" => "Qos",
            "configuration.host" => "Host",
            "configuration.port" => "Port",
            "configuration.protocolVersion" => "ProtocolVersion",
            _ => null,
        };
    }

    /// <summary>Milliseconds as the form shows them, in seconds (<c>0.5</c>, <c>86400</c>).</summary>
    public static string Seconds(long milliseconds) => (milliseconds / 1000.0).ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>
    /// A duration typed in seconds, in milliseconds; null when empty. Anything that is not a number becomes -1, which
    /// the platform refuses with its own message for the field.
    /// </summary>
    private static long? Milliseconds(IFormCollection form, string name)
    {
        if (Text(form, name) is not { } text)
        {
            return null;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && double.IsFinite(seconds) && Math.Abs(seconds) < 1e12
            ? (long)Math.Round(seconds * 1000)
            : -1;
    }

    /// <summary>Headers as the form shows them: one <c>Name: value</c> a line.</summary>
    public static string HeaderLines(IReadOnlyDictionary<string, string>? headers) =>
        headers is null ? "" : string.Join('\n', headers.Select(h => $"{h.Key}: {h.Value}"));

    private static string? Text(IFormCollection form, string name) => form[name].ToString().Trim() is { Length: > 0 } text ? text : null;

    private static Dictionary<string, string>? Headers(string lines)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var raw in lines.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0)
            {
                continue;
            }

            // A line without a colon is a header without a value: the platform refuses it and names it.
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            headers[colon < 0 ? line : line[..colon].Trim()] = colon < 0 ? "" : line[(colon + 1)..].Trim();
        }

        return headers.Count == 0 ? null : headers;
    }
}
