using System.Buffers;
using System.Text;
using System.Text.Json;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;
using Taihu.Platform.Telemetry;
using Taihu.Protocols.Jt808;

namespace Taihu.Server.Protocols.Jt808;

/// <summary>What a <see cref="Jt808CommandChannel"/> needs of its connection: the terminal's header form and a way to write a frame.</summary>
internal interface IJt808CommandWriter
{
    /// <summary>The terminal's header form (null before its first frame), and the edition its text messages are written in.</summary>
    (Jt808HeaderForm Form, Jt808Version Version)? Terminal { get; }

    /// <summary>True once the connection is ending: no command is taken then.</summary>
    bool Closing { get; }

    ushort NextSerial();

    /// <summary>Writes one frame; false when the connection has ended.</summary>
    ValueTask<bool> WriteAsync(Jt808HeaderForm form, ushort messageId, ushort serial, byte[] body, int length);
}

/// <summary>
/// The platform's RPC commands to one JT/T 808 terminal (<c>queryLocation</c> 0x8201, <c>setParameters</c> 0x8103,
/// <c>sendText</c> 0x8300) and the terminal's answers to them (0x0001, 0x0201), matched by the serial number the
/// command went out with. The one owner of the pending commands; it writes through <see cref="IJt808CommandWriter"/>
/// and answers through the device's session, so it is tested without a socket. Answers that come before the
/// session is open (a persistent call failed as the session opens) wait for <see cref="Opened"/>.
/// </summary>
internal sealed partial class Jt808CommandChannel(IJt808CommandWriter writer, ILogger logger) : IDeviceCommandChannel
{
    internal const int MaxPendingCommands = 256;
    private readonly Dictionary<ushort, int> _pending = [];
    private readonly Lock _gate = new();
    private Func<int, string, bool, Task>? _reply;
    private List<(int RequestId, string Json, bool Failed)>? _early;

    /// <summary>Commands sent and not yet answered.</summary>
    public int Pending
    {
        get
        {
            lock (_gate)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>The device's session is open: answers go to <paramref name="session"/> from now on (those that waited first).</summary>
    public void Opened(ProtocolDeviceSession session)
    {
        ArgumentNullException.ThrowIfNull(session);
        Opened((requestId, json, failed) => session.ReplyAsync(requestId, json, failed));
    }

    /// <summary>Answers go to <paramref name="reply"/> from now on (those that waited first).</summary>
    internal void Opened(Func<int, string, bool, Task> reply)
    {
        List<(int RequestId, string Json, bool Failed)>? early;
        lock (_gate)
        {
            _reply = reply;
            (early, _early) = (_early, null);
        }

        foreach (var (requestId, json, failed) in early ?? [])
        {
            _ = AnswerAsync(reply, requestId, json, failed);
        }
    }

    public bool TrySend(Device device, int requestId, string method, string paramsJson, IDeliveryListener listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        if (writer.Closing || writer.Terminal is not { } terminal)
        {
            return false;
        }

        var body = new byte[1023];
        int length;
        ushort messageId;
        string? error = null;
        switch (method)
        {
            case "queryLocation":
                (messageId, length) = (Jt808MessageIds.QueryLocation, 0);
                break;
            case "setParameters":
                messageId = Jt808MessageIds.SetParameters;
                length = 0;
                try
                {
                    using var parameters = JsonDocument.Parse(paramsJson);
                    Jt808Parameters.TryWrite(parameters.RootElement, body, out length, out error);
                }
                catch (JsonException)
                {
                    error = "setParameters takes an object of parameters, such as {\"heartbeatInterval\":30}.";
                }

                break;
            case "sendText":
                messageId = Jt808MessageIds.TextMessage;
                error = TextMessage(paramsJson, terminal.Version, body, out length);
                break;
            default:
                Answer(requestId, "{\"error\":\"JT/T 808 terminals take the RPC methods queryLocation, setParameters and sendText.\"}", failed: true);
                return true;
        }

        if (error is not null)
        {
            Answer(requestId, JsonSerializer.Serialize(new { error }), failed: true);
            return true;
        }

        var serial = writer.NextSerial();
        lock (_gate)
        {
            if (_pending.Count >= MaxPendingCommands)
            {
                // Calls whose answers never came; the platform has timed them out long since.
                _pending.Clear();
            }

            _pending[serial] = requestId;
        }

        _ = SendAsync(terminal.Form, messageId, serial, body, length, listener);
        return true;
    }

    /// <summary>The terminal's general reply 0x0001: result 0 makes the call it answers successful, any other failed.</summary>
    public void GeneralReply(Jt808GeneralReply reply)
    {
        if (Take(reply.ReplySerial, out var requestId))
        {
            Answer(requestId, $"{{\"result\":{reply.Result}}}", failed: reply.Result != Jt808Results.Ok);
        }
    }

    /// <summary>The terminal's answer 0x0201 to <c>queryLocation</c> sent as <paramref name="serial"/>: the location's points, as <c>{"ts":..,"key":value,...}</c>.</summary>
    public void LocationReply(ushort serial, List<TelemetryPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Count == 0 || !Take(serial, out var requestId))
        {
            return;
        }

        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("ts", points[0].Ts);
            foreach (var point in points)
            {
                json.WritePropertyName(point.Key);
                point.Value.WriteTo(json);
            }

            json.WriteEndObject();
        }

        Answer(requestId, Encoding.UTF8.GetString(buffer.WrittenSpan), failed: false);
    }

    private bool Take(ushort serial, out int requestId)
    {
        lock (_gate)
        {
            return _pending.Remove(serial, out requestId);
        }
    }

    private void Answer(int requestId, string json, bool failed)
    {
        Func<int, string, bool, Task>? reply;
        lock (_gate)
        {
            reply = _reply;
            if (reply is null)
            {
                (_early ??= []).Add((requestId, json, failed));
                return;
            }
        }

        _ = AnswerAsync(reply, requestId, json, failed);
    }

    private async Task AnswerAsync(Func<int, string, bool, Task> reply, int requestId, string json, bool failed)
    {
        try
        {
            await reply(requestId, json, failed);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogReplyFailed(logger, requestId, ex);
        }
    }

    /// <summary>sendText params: <c>{"text":"...","flags":12,"textType":1}</c> or just the text as a JSON string.</summary>
    private static string? TextMessage(string paramsJson, Jt808Version version, byte[] body, out int length)
    {
        length = 0;
        string? text = null;
        byte flags = 0x0C, textType = 1;
        try
        {
            using var parameters = JsonDocument.Parse(paramsJson);
            var root = parameters.RootElement;
            if (root.ValueKind == JsonValueKind.String)
            {
                text = root.GetString();
            }
            else if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String)
            {
                text = t.GetString();
                if (root.TryGetProperty("flags", out var f) && !f.TryGetByte(out flags))
                {
                    return "sendText flags is a number from 0 to 255 (bit 0 emergency, bit 2 display, bit 3 text to speech).";
                }

                if (root.TryGetProperty("textType", out var tt) && !tt.TryGetByte(out textType))
                {
                    return "sendText textType is 1 (notice) or 2 (service).";
                }
            }
        }
        catch (JsonException)
        {
        }

        if (text is null)
        {
            return "sendText takes {\"text\":\"...\"} (and optionally flags and textType).";
        }

        return Jt808Bodies.TryTextMessage(body, version, flags, textType, text, out length) ? null : "The text is too long for one message (at most about 1,000 bytes in GBK).";
    }

    private async Task SendAsync(Jt808HeaderForm form, ushort messageId, ushort serial, byte[] body, int length, IDeliveryListener listener)
    {
        try
        {
            if (await writer.WriteAsync(form, messageId, serial, body, length))
            {
                // There is no separate acknowledgement of delivery: the frame written to the socket is delivered.
                listener.OnDelivered(QoS.AtMostOnce);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogReplyFailed(logger, 0, ex);
        }
    }

    [LoggerMessage(EventId = 1413, Level = LogLevel.Warning, Message = "JT/T 808 answer to RPC call {RequestId} could not be handed over")]
    private static partial void LogReplyFailed(ILogger logger, int requestId, Exception exception);
}
