using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Taihu.Platform.Rpc;

/// <summary>ThingsBoard's states of a persistent RPC call.</summary>
public enum RpcStatus
{
    /// <summary>Stored; not sent yet (the device is not reachable, or the call waits its turn).</summary>
    Queued,

    /// <summary>Written towards the device; no acknowledgement yet.</summary>
    Sent,

    /// <summary>The device acknowledged it (PUBACK of a QoS 1 subscription), or it was written to a QoS 0 subscription or an HTTP long poll.</summary>
    Delivered,

    /// <summary>Two-way: the device replied. One-way: delivered.</summary>
    Successful,

    /// <summary>Two-way: delivered, and no reply within the timeout.</summary>
    Timeout,

    /// <summary>Its expirationTime passed before it was delivered.</summary>
    Expired,

    /// <summary>Resent <c>retries</c> times (after disconnects or missing acknowledgements) and still not delivered.</summary>
    Failed,
}

public static class RpcStatusNames
{
    public static string Name(this RpcStatus status) => status switch
    {
        RpcStatus.Queued => "QUEUED",
        RpcStatus.Sent => "SENT",
        RpcStatus.Delivered => "DELIVERED",
        RpcStatus.Successful => "SUCCESSFUL",
        RpcStatus.Timeout => "TIMEOUT",
        RpcStatus.Expired => "EXPIRED",
        _ => "FAILED",
    };

    public static bool TryParse(string? text, out RpcStatus status)
    {
        foreach (var candidate in Enum.GetValues<RpcStatus>())
        {
            if (string.Equals(candidate.Name(), text, StringComparison.OrdinalIgnoreCase))
            {
                status = candidate;
                return true;
            }
        }

        status = default;
        return false;
    }

    /// <summary>Whether nothing more happens to a call in this state.</summary>
    public static bool IsFinal(this RpcStatus status) => status is RpcStatus.Successful or RpcStatus.Timeout or RpcStatus.Expired or RpcStatus.Failed;
}

/// <summary>
/// A server-side RPC request as the REST API takes it: <c>{"method","params","timeout","expirationTime",
/// "persistent","retries","additionalInfo"}</c>, checked, with ThingsBoard's defaults applied.
/// </summary>
/// <param name="ParamsJson">The <c>params</c> value as JSON text, passed to the device unchanged (<c>{}</c> when absent).</param>
/// <param name="TimeoutMs">How long a lightweight call waits for delivery or reply; for a persistent call, how long after it is sent.</param>
/// <param name="ExpirationTime">Epoch ms after which the call is given up: a lightweight call's deadline, a persistent call's last moment to be delivered.</param>
public sealed record RpcRequest(string Method, string ParamsJson, bool OneWay, long TimeoutMs, long ExpirationTime, bool Persistent, int Retries, string? AdditionalInfoJson)
{
    /// <summary>ThingsBoard's default timeout.</summary>
    public const long DefaultTimeoutMs = 10_000;

    /// <summary>ThingsBoard raises a smaller timeout to this.</summary>
    public const long MinimumTimeoutMs = 5_000;

    /// <summary>
    /// The longest timeout taken: a lightweight call holds an HTTP request open that long, and nothing a street
    /// light does takes a day. A larger one is a mistake in the caller and refused.
    /// </summary>
    public const long MaximumTimeoutMs = 86_400_000;

    /// <summary>How far ahead expirationTime may lie: a persistent call waits at most this long for its device.</summary>
    public const long MaximumExpirationAheadMs = 30L * 86_400_000;

    /// <summary>Resends of a persistent call when the request names none (ThingsBoard's default <c>max_retries</c>).</summary>
    public const int DefaultRetries = 5;

    public const int MaximumRetries = 100;

    public const int MaximumMethodLength = 255;

    /// <summary>Reads and checks a request body; every problem is a 400 that names the member.</summary>
    public static RpcRequest Parse(ReadOnlySpan<byte> body, bool oneWay, long now)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body.ToArray());
        }
        catch (JsonException e)
        {
            throw PlatformException.BadRequest($"The RPC request is not valid JSON: {e.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw PlatformException.BadRequest("An RPC request is a JSON object: {\"method\":\"..\",\"params\":{..}}.");
            }

            if (!root.TryGetProperty("method", out var methodElement) || methodElement.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(methodElement.GetString()))
            {
                throw PlatformException.BadRequest("method is required: the name of the command, a non-empty string.");
            }

            var method = methodElement.GetString()!;
            if (method.Length > MaximumMethodLength)
            {
                throw PlatformException.BadRequest($"method may be at most {MaximumMethodLength} characters.");
            }

            var parameters = root.TryGetProperty("params", out var p) && p.ValueKind != JsonValueKind.Null ? p.GetRawText() : "{}";
            var timeout = DefaultTimeoutMs;
            if (root.TryGetProperty("timeout", out var t) && t.ValueKind != JsonValueKind.Null)
            {
                if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt64(out timeout))
                {
                    throw PlatformException.BadRequest("timeout is a whole number of milliseconds.");
                }

                if (timeout < 0)
                {
                    throw PlatformException.BadRequest($"timeout may not be negative (got {timeout} ms).");
                }

                if (timeout > MaximumTimeoutMs)
                {
                    throw PlatformException.BadRequest($"timeout may be at most {MaximumTimeoutMs} ms (a day); got {timeout} ms.");
                }

                timeout = Math.Max(timeout, MinimumTimeoutMs);
            }

            var expiration = now + timeout;
            if (root.TryGetProperty("expirationTime", out var e) && e.ValueKind != JsonValueKind.Null)
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out expiration))
                {
                    throw PlatformException.BadRequest("expirationTime is a time in epoch milliseconds.");
                }

                if (expiration <= now)
                {
                    throw PlatformException.BadRequest($"expirationTime {expiration} is not in the future (now is {now}).");
                }

                if (expiration - now > MaximumExpirationAheadMs)
                {
                    throw PlatformException.BadRequest("expirationTime may lie at most 30 days ahead.");
                }

                // expirationTime overrides timeout, as in ThingsBoard.
                timeout = expiration - now;
            }

            var persistent = false;
            if (root.TryGetProperty("persistent", out var pe) && pe.ValueKind != JsonValueKind.Null)
            {
                persistent = pe.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw PlatformException.BadRequest("persistent is true or false."),
                };
            }

            var retries = DefaultRetries;
            if (root.TryGetProperty("retries", out var r) && r.ValueKind != JsonValueKind.Null)
            {
                if (r.ValueKind != JsonValueKind.Number || !r.TryGetInt32(out retries) || retries < 0 || retries > MaximumRetries)
                {
                    throw PlatformException.BadRequest($"retries is a whole number from 0 to {MaximumRetries}.");
                }
            }

            var info = root.TryGetProperty("additionalInfo", out var a) && a.ValueKind != JsonValueKind.Null ? a.GetRawText() : null;
            return new RpcRequest(method, parameters, oneWay, timeout, expiration, persistent, retries, info);
        }
    }

    /// <summary>What a device subscribed to <c>v1/devices/me/rpc/request/+</c> receives: <c>{"method","params"}</c>.</summary>
    public static byte[] DevicePayload(string method, string paramsJson, int? id = null)
    {
        var writer = RentWriter(out var buffer);
        writer.WriteStartObject();
        if (id is { } value)
        {
            writer.WriteNumber("id", value);
        }

        writer.WriteString("method", method);
        writer.WritePropertyName("params");
        writer.WriteRawValue(paramsJson, skipInputValidation: true);
        writer.WriteEndObject();
        return Finish(writer, buffer);
    }

    // One writer and buffer per thread for the payloads above (a thousand calls a second made a buffer, its
    // growth and a writer each); nothing awaits between renting and copying the result out.
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    private static Utf8JsonWriter RentWriter(out ArrayBufferWriter<byte> buffer)
    {
        buffer = t_buffer ??= new ArrayBufferWriter<byte>(512);
        buffer.ResetWrittenCount();
        if (t_writer is { } writer)
        {
            writer.Reset(buffer);
            return writer;
        }

        return t_writer = new Utf8JsonWriter(buffer);
    }

    private static byte[] Finish(Utf8JsonWriter writer, ArrayBufferWriter<byte> buffer)
    {
        writer.Flush();
        var payload = buffer.WrittenSpan.ToArray();
        if (buffer.Capacity > 16 * 1024)
        {
            // A large command's buffer is not kept for the thread's life.
            t_buffer = null;
            t_writer = null;
        }

        return payload;
    }

    /// <summary>What a gateway receives on <c>v1/gateway/rpc</c>: <c>{"device","data":{"id","method","params"}}</c>.</summary>
    public static byte[] GatewayPayload(string deviceName, int id, string method, string paramsJson)
    {
        var writer = RentWriter(out var buffer);
        writer.WriteStartObject();
        writer.WriteString("device", deviceName);
        writer.WritePropertyName("data");
        writer.WriteStartObject();
        writer.WriteNumber("id", id);
        writer.WriteString("method", method);
        writer.WritePropertyName("params");
        writer.WriteRawValue(paramsJson, skipInputValidation: true);
        writer.WriteEndObject();
        writer.WriteEndObject();
        return Finish(writer, buffer);
    }

    /// <summary>
    /// A device's reply as JSON text: kept as it is when it is JSON, otherwise as a JSON string (ThingsBoard
    /// passes a reply through as the response body).
    /// </summary>
    public static string ReplyJson(ReadOnlySpan<byte> reply)
    {
        if (reply.IsEmpty)
        {
            return "{}";
        }

        try
        {
            // Checked by skipping the value (no document is built): one JSON value and nothing but blanks after it.
            var reader = new Utf8JsonReader(reply);
            if (reader.Read() && reader.TrySkip()
                && (reader.BytesConsumed == reply.Length || reply[(int)reader.BytesConsumed..].Trim(" \t\r\n"u8).IsEmpty))
            {
                return Encoding.UTF8.GetString(reply);
            }
        }
        catch (JsonException)
        {
        }

        return JsonSerializer.Serialize(Encoding.UTF8.GetString(reply));
    }
}
