using Microsoft.AspNetCore.Http;
using Taihu.Platform.Integrations;

namespace Taihu.WebConsole;

/// <summary>
/// The integration form's fields (Components/Integrations/IntegrationFields.razor) read from the posted form into
/// what the platform's <see cref="IntegrationService"/> takes; the service checks every value and names the field
/// that is wrong. On an edit, what the form does not show (device profiles, retry limit, request timeout, answering
/// RPC) is kept, and an empty secret or broker password keeps the stored one.
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
                ProtocolVersion = old.ProtocolVersion,
            };
        }
        else
        {
            configuration = new IntegrationConfiguration
            {
                Url = form["Url"].ToString().Trim(),
                Secret = Text(form, "Secret"),
                Headers = Headers(form["Headers"].ToString()),
                RetryLimitMs = old.RetryLimitMs,
                RequestTimeoutMs = old.RequestTimeoutMs,
                AnswerRpc = old.AnswerRpc,
            };
        }

        return new IntegrationInput(existing?.Id, form["Name"].ToString().Trim(), type, form["Enabled"] == "true", old.DeviceProfileIds, messageTypes, configuration);
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
