using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Taihu.Protocols.Jt808;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// A vehicle terminal on JT/T 808-2013 (raw TCP, the codec of <c>Taihu.Protocols</c>): it authenticates with the code
/// of its <c>JT808</c> credentials (0x0102), sends each report as a location (0x0200: alarm flags, status, position,
/// altitude, speed, direction, time, and the extra items mileage 0x01 and fuel 0x02) and counts it acknowledged when
/// the platform's general reply (0x8001) to its serial number says result 0. It answers the platform's commands: a
/// location query (0x8201) with its last location (0x0201), parameters (0x8103) and text (0x8300) with its general
/// reply (0x0001). Fix times are whole seconds (the BCD time has no finer unit): two reports within one second are one
/// point, which the run counts so.
/// </summary>
public sealed class Jt808SimDevice(string host, int port, string phone, string code, FleetDefinition fleet, ScenarioScaling scaling, Random random)
    : TcpSimDevice(host, port, fleet, scaling, random)
{
    private static readonly TimeSpan ChinaStandardTime = TimeSpan.FromHours(8);
    private readonly Jt808Header _header = new(0, 0, null, phone, 0, null, null);
    private readonly byte[] _message = new byte[Jt808Framing.MaxUnescapedLength];
    private byte[] _lastLocation = [];
    private int _serial;

    protected override async Task HandshakeAsync(CancellationToken cancellationToken)
    {
        var (serial, frame) = Frame(Jt808MessageIds.Authentication, System.Text.Encoding.ASCII.GetBytes(code));
        var answer = await SendAndWaitAsync(Key(Jt808MessageIds.Authentication, serial), frame, cancellationToken);
        if (!answer.Acknowledged)
        {
            throw new InvalidOperationException($"The server refused terminal {phone}'s authentication: {answer.Outcome}.");
        }
    }

    public override async Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken)
    {
        if (!TryReadReport(payload, out var ts, out var document))
        {
            return new SendResult(false, "not sent: a JT/T 808 terminal cannot carry it");
        }

        byte[] body;
        using (document)
        {
            body = Location(document!.RootElement.GetProperty("values"), ts);
        }

        _lastLocation = body;
        var (serial, frame) = Frame(Jt808MessageIds.Location, body);
        return await SendAndWaitAsync(Key(Jt808MessageIds.Location, serial), frame, cancellationToken);
    }

    /// <summary>
    /// A location report whose check code is wrong: the platform answers the standard's "message error" (0x8001
    /// result 2) when the header still reads.
    /// </summary>
    public override Task<SendResult> SendMalformedAsync(CancellationToken cancellationToken)
    {
        var body = _lastLocation.Length > 0 ? _lastLocation : new byte[Jt808Location.BasicLength];
        var (serial, frame) = Frame(Jt808MessageIds.Location, body);
        BreakCheckCode(frame);
        return SendAndWaitAsync(Key(Jt808MessageIds.Location, serial), frame, cancellationToken);
    }

    /// <summary>Changes an escaped frame's check code (the byte or escape pair before the closing 0x7E) to a wrong one, keeping the framing valid.</summary>
    internal static void BreakCheckCode(byte[] frame)
    {
        if (frame[^3] == 0x7D)
        {
            // An escaped check code (0x7E or 0x7D): the pair becomes 0x7D 0x02 <-> 0x7D 0x01, the other escaped value.
            frame[^2] = frame[^2] == 0x01 ? (byte)0x02 : (byte)0x01;
            return;
        }

        var wrong = (byte)(frame[^2] ^ 0x10);
        frame[^2] = wrong is 0x7E or 0x7D ? (byte)(frame[^2] ^ 0x20) : wrong;
    }

    /// <summary>A basic location with no fix: status 0 (ACC off, not positioned), no position, at <paramref name="time"/>.</summary>
    internal static byte[] NotPositioned(DateTimeOffset time)
    {
        using var none = JsonDocument.Parse("{\"status\":0}");
        return LocationBody(none.RootElement, time);
    }

    /// <summary>A location body from the report's values, at the report's second.</summary>
    internal static byte[] Location(JsonElement values, long ts) => LocationBody(values, DateTimeOffset.FromUnixTimeMilliseconds(ts));

    /// <summary>Writes a 0x0200 body: the basic 28 bytes, then mileage (0x01) and fuel (0x02) when reported.</summary>
    internal static byte[] LocationBody(JsonElement values, DateTimeOffset time)
    {
        double Get(string key, double otherwise) => values.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : otherwise;
        bool Has(string key) => values.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number;
        var latitude = Get("latitude", 0);
        var longitude = Get("longitude", 0);
        var status = (uint)Get("status", 0x3); // ACC on, positioned
        status = (status & ~0xCu) | (latitude < 0 ? 0x4u : 0) | (longitude < 0 ? 0x8u : 0);
        var length = Jt808Location.BasicLength + (Has("mileage") ? 6 : 0) + (Has("fuel") ? 4 : 0);
        var body = new byte[length];
        var span = body.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)Get("alarm", 0));
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], status);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], (uint)Math.Round(Math.Abs(latitude) * 1e6));
        BinaryPrimitives.WriteUInt32BigEndian(span[12..], (uint)Math.Round(Math.Abs(longitude) * 1e6));
        BinaryPrimitives.WriteUInt16BigEndian(span[16..], (ushort)Math.Clamp(Get("altitude", 0), 0, ushort.MaxValue));
        BinaryPrimitives.WriteUInt16BigEndian(span[18..], (ushort)Math.Clamp(Math.Round(Get("speed", 0) * 10), 0, ushort.MaxValue));
        BinaryPrimitives.WriteUInt16BigEndian(span[20..], (ushort)(((int)Math.Round(Get("direction", 0)) % 360 + 360) % 360));
        var local = time.ToOffset(ChinaStandardTime);
        Span<int> parts = [local.Year % 100, local.Month, local.Day, local.Hour, local.Minute, local.Second];
        for (var i = 0; i < 6; i++)
        {
            span[22 + i] = (byte)(((parts[i] / 10) << 4) | (parts[i] % 10));
        }

        var at = Jt808Location.BasicLength;
        if (Has("mileage"))
        {
            span[at] = 0x01;
            span[at + 1] = 4;
            BinaryPrimitives.WriteUInt32BigEndian(span[(at + 2)..], (uint)Math.Clamp(Math.Round(Get("mileage", 0) * 10), 0, uint.MaxValue));
            at += 6;
        }

        if (Has("fuel"))
        {
            span[at] = 0x02;
            span[at + 1] = 2;
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 2)..], (ushort)Math.Clamp(Math.Round(Get("fuel", 0) * 10), 0, ushort.MaxValue));
        }

        return body;
    }

    private (ushort Serial, byte[] Frame) Frame(ushort id, ReadOnlySpan<byte> body)
    {
        var serial = (ushort)Interlocked.Increment(ref _serial);
        var header = (_header with { MessageId = id, Serial = serial }).Encode(body.Length);
        var message = new byte[header.Length + body.Length];
        header.CopyTo(message, 0);
        body.CopyTo(message.AsSpan(header.Length));
        return (serial, Jt808Framing.Encode(message));
    }

    private static string Key(ushort id, ushort serial) => string.Create(CultureInfo.InvariantCulture, $"{id:X4}/{serial}");

    protected override int ReadFrames(ReadOnlySpan<byte> buffer)
    {
        var total = 0;
        while (true)
        {
            var status = Jt808Framing.TryRead(buffer[total..], _message, out var length, out var consumed, out _);
            total += consumed;
            if (status == Jt808ReadStatus.NeedMore || consumed == 0)
            {
                return total;
            }

            if (status == Jt808ReadStatus.Frame && Jt808HeaderFields.TryRead(_message.AsSpan(0, length), out var header) == Jt808HeaderError.None)
            {
                Handle(header, _message.AsSpan(header.Length, header.BodyLength));
            }
        }
    }

    private void Handle(Jt808HeaderFields header, ReadOnlySpan<byte> body)
    {
        switch (header.MessageId)
        {
            case Jt808MessageIds.PlatformReply when Jt808GeneralReply.TryRead(body, out var reply):
                Answer(Key(reply.ReplyId, reply.ReplySerial), reply.Result == Jt808Results.Ok
                    ? SendResult.Ok
                    : new SendResult(false, string.Create(CultureInfo.InvariantCulture, $"refused: 0x8001 result {reply.Result}")));
                break;
            case Jt808MessageIds.QueryLocation:
                // 0x0201: the command's serial number, then the last location (before its first fix, as a terminal
                // without one: not positioned, at the present time).
                var last = _lastLocation.Length > 0 ? _lastLocation : NotPositioned(DateTimeOffset.UtcNow);
                var answer = new byte[2 + last.Length];
                BinaryPrimitives.WriteUInt16BigEndian(answer, header.Serial);
                last.CopyTo(answer, 2);
                Reply(Jt808MessageIds.LocationQueryReply, answer);
                break;
            case Jt808MessageIds.SetParameters or Jt808MessageIds.TextMessage:
                var general = new byte[Jt808GeneralReply.Length];
                new Jt808GeneralReply(header.Serial, header.MessageId, Jt808Results.Ok).Write(general);
                Reply(Jt808MessageIds.TerminalReply, general);
                break;
        }
    }

    private void Reply(ushort id, byte[] body)
    {
        var (_, frame) = Frame(id, body);
        _ = AnswerCommandAsync(frame);
    }

    private async Task AnswerCommandAsync(byte[] frame)
    {
        try
        {
            if (await WriteAsync(frame, Stopping))
            {
                CountRpcAnswered();
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }
}
