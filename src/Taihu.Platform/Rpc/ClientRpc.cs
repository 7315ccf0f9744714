using System.Buffers;
using System.Text.Json;

namespace Taihu.Platform.Rpc;

/// <summary>
/// Client-side RPC: a device asks the platform (<c>{"method","params"}</c> on <c>v1/devices/me/rpc/request/{id}</c>,
/// or <c>POST /api/v1/{token}/rpc</c>) and gets the answer back. <c>getCurrentTime</c> is built in (server time
/// in epoch milliseconds, as ThingsBoard's examples answer it); any other method is answered by a webhook integration
/// (<see cref="ClientRpcRequests"/>) or, when none answers, with an error object naming it.
/// </summary>
public static class ClientRpc
{
    /// <summary>The answer to a device's request, as JSON; never throws for bad input (the answer says what was wrong).</summary>
    public static byte[] Answer(ReadOnlySpan<byte> request, long now)
    {
        string? method = null;
        try
        {
            var reader = new Utf8JsonReader(request);
            if (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
            {
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var isMethod = reader.ValueTextEquals("method"u8);
                    reader.Read();
                    if (isMethod && reader.TokenType == JsonTokenType.String)
                    {
                        method = reader.GetString();
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
            }
            else
            {
                return Error("A client-side RPC request is a JSON object: {\"method\":\"getCurrentTime\",\"params\":{}}.");
            }
        }
        catch (JsonException e)
        {
            return Error($"The request is not valid JSON: {e.Message}");
        }

        if (string.IsNullOrEmpty(method))
        {
            return Error("method is required: a non-empty string, such as \"getCurrentTime\".");
        }

        if (method == "getCurrentTime")
        {
            return Write(w => w.WriteNumber("time", now));
        }

        return Write(w =>
        {
            w.WriteString("error", $"Unknown method: {method}. The server answers getCurrentTime; other methods are answered by a webhook integration with answerRpc, and none answered this one.");
            w.WriteString("method", method);
        });
    }

    private static byte[] Error(string message) => Write(w => w.WriteString("error", message));

    private static byte[] Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}
