using System.Buffers.Binary;
using System.Text;

namespace Taihu.Protocols.Jt808;

/// <summary>The edition of JT/T 808 a message body is laid out in.</summary>
public enum Jt808Version
{
    V2011 = 2011,
    V2013 = 2013,
    V2019 = 2019,
}

/// <summary>The message ids Taihu reads and writes.</summary>
public static class Jt808MessageIds
{
    public const ushort TerminalReply = 0x0001;
    public const ushort Heartbeat = 0x0002;
    public const ushort Deregistration = 0x0003;
    public const ushort Registration = 0x0100;
    public const ushort Authentication = 0x0102;
    public const ushort Location = 0x0200;
    public const ushort LocationQueryReply = 0x0201;
    public const ushort LocationBatch = 0x0704;
    public const ushort PlatformReply = 0x8001;
    public const ushort RegistrationReply = 0x8100;
    public const ushort SetParameters = 0x8103;
    public const ushort QueryLocation = 0x8201;
    public const ushort TextMessage = 0x8300;
}

/// <summary>Results of the platform's general reply 0x8001 (and the terminal's 0x0001, which has 0 to 3).</summary>
public static class Jt808Results
{
    public const byte Ok = 0;
    public const byte Failure = 1;
    public const byte BadMessage = 2;
    public const byte NotSupported = 3;
    public const byte AlarmConfirmed = 4;
}

/// <summary>Results of the registration reply 0x8100.</summary>
public static class Jt808RegistrationResults
{
    public const byte Ok = 0;
    public const byte VehicleAlreadyRegistered = 1;
    public const byte NoSuchVehicle = 2;
    public const byte TerminalAlreadyRegistered = 3;
    public const byte NoSuchTerminal = 4;
}

/// <summary>Text in JT/T 808 bodies: GBK (code page 936), padded with zeros (or spaces) in fixed-width fields.</summary>
public static class Jt808Text
{
    /// <summary>GBK, from the code pages provider that ships with .NET (registered on first use).</summary>
    public static Encoding Gbk { get; } = CreateGbk();

    private static Encoding CreateGbk()
    {
        Encoding.RegisterProvider(CodePagesEncodingProvider.Instance);
        return Encoding.GetEncoding(936);
    }

    /// <summary>A fixed-width or trailing field: trailing zeros and spaces dropped, the rest decoded as GBK.</summary>
    public static string Read(ReadOnlySpan<byte> field)
    {
        var end = field.Length;
        while (end > 0 && field[end - 1] is 0 or (byte)' ')
        {
            end--;
        }

        // Some terminals pad at the front instead.
        var start = 0;
        while (start < end && field[start] == 0)
        {
            start++;
        }

        return end == start ? "" : Gbk.GetString(field[start..end]);
    }
}

/// <summary>Terminal registration 0x0100: where the vehicle is registered, who made the terminal, and the plate.</summary>
/// <remarks>
/// Field widths by edition: manufacturer ID 5 bytes (2011, 2013) or 11 (2019); terminal model 8 (2011), 20 (2013) or
/// 30 (2019); terminal ID 7 (2011, 2013) or 30 (2019); then the plate colour (a byte) and the plate number (GBK, the
/// rest of the body). So the fixed part is 25, 37 or 76 bytes.
/// </remarks>
public sealed record Jt808Registration(ushort Province, ushort City, string ManufacturerId, string Model, string TerminalId, byte PlateColor, string Plate, Jt808Version Version)
{
    /// <summary>
    /// The edition a registration body is laid out in when the terminal's setting does not say: 2019 when the header
    /// is 2019's or sets bit 14 and the body holds 2019's fixed part; otherwise 2013 when it holds 2013's; otherwise 2011.
    /// </summary>
    public static Jt808Version Guess(bool says2019, int bodyLength) =>
        says2019 && bodyLength >= 76 ? Jt808Version.V2019 : bodyLength >= 37 ? Jt808Version.V2013 : Jt808Version.V2011;

    public static bool TryRead(ReadOnlySpan<byte> body, Jt808Version version, out Jt808Registration? registration, out string? error)
    {
        registration = null;
        var (manufacturer, model, terminal) = version switch
        {
            Jt808Version.V2011 => (5, 8, 7),
            Jt808Version.V2013 => (5, 20, 7),
            _ => (11, 30, 30),
        };
        var fixedPart = 4 + manufacturer + model + terminal + 1;
        if (body.Length < fixedPart)
        {
            error = $"A {(int)version} registration has at least {fixedPart} bytes; this one has {body.Length}.";
            return false;
        }

        var at = 4;
        var manufacturerId = Jt808Text.Read(body.Slice(at, manufacturer));
        at += manufacturer;
        var modelText = Jt808Text.Read(body.Slice(at, model));
        at += model;
        var terminalId = Jt808Text.Read(body.Slice(at, terminal));
        at += terminal;
        var color = body[at++];
        registration = new Jt808Registration(BinaryPrimitives.ReadUInt16BigEndian(body), BinaryPrimitives.ReadUInt16BigEndian(body[2..]),
            manufacturerId, modelText, terminalId, color, Jt808Text.Read(body[at..]), version);
        error = null;
        return true;
    }
}

/// <summary>Terminal authentication 0x0102: the code (2013: the whole body; 2019: its length, the code, the IMEI and the software version).</summary>
public sealed record Jt808Authentication(string Code, string? Imei, string? SoftwareVersion)
{
    /// <summary>
    /// Reads either layout. The 2019 body is exactly 1 + n + 15 + 20 bytes with n in its first byte; a 2013 code
    /// (printable characters, at most 64 of them) never looks like that, so the layout is told from the body itself.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> body, out Jt808Authentication? authentication, out string? error)
    {
        authentication = null;
        if (body.IsEmpty)
        {
            error = "The authentication body is empty.";
            return false;
        }

        if (body.Length == 1 + body[0] + 15 + 20)
        {
            var n = body[0];
            authentication = new Jt808Authentication(Jt808Text.Read(body.Slice(1, n)), Jt808Text.Read(body.Slice(1 + n, 15)), Jt808Text.Read(body.Slice(1 + n + 15, 20)));
        }
        else
        {
            authentication = new Jt808Authentication(Jt808Text.Read(body), null, null);
        }

        error = null;
        return true;
    }
}

/// <summary>A general reply, the terminal's 0x0001 or the platform's 0x8001: the serial and id of the message answered, and the result.</summary>
public readonly record struct Jt808GeneralReply(ushort ReplySerial, ushort ReplyId, byte Result)
{
    public const int Length = 5;

    public static bool TryRead(ReadOnlySpan<byte> body, out Jt808GeneralReply reply)
    {
        if (body.Length < Length)
        {
            reply = default;
            return false;
        }

        reply = new Jt808GeneralReply(BinaryPrimitives.ReadUInt16BigEndian(body), BinaryPrimitives.ReadUInt16BigEndian(body[2..]), body[4]);
        return true;
    }

    public int Write(Span<byte> into)
    {
        BinaryPrimitives.WriteUInt16BigEndian(into, ReplySerial);
        BinaryPrimitives.WriteUInt16BigEndian(into[2..], ReplyId);
        into[4] = Result;
        return Length;
    }
}

/// <summary>The platform's message bodies.</summary>
public static class Jt808Bodies
{
    /// <summary>Registration reply 0x8100: the registration's serial, the result, and the authentication code when the result is 0.</summary>
    public static int RegistrationReply(Span<byte> into, ushort replySerial, byte result, string? code)
    {
        BinaryPrimitives.WriteUInt16BigEndian(into, replySerial);
        into[2] = result;
        var n = 3;
        if (result == Jt808RegistrationResults.Ok && code is not null)
        {
            n += Jt808Text.Gbk.GetBytes(code, into[3..]);
        }

        return n;
    }

    /// <summary>Text message 0x8300: the flag byte, in 2019 the text type (1 notice, 2 service), then the text in GBK.</summary>
    public static bool TryTextMessage(Span<byte> into, Jt808Version version, byte flags, byte textType, string text, out int length)
    {
        var header = version == Jt808Version.V2019 ? 2 : 1;
        length = 0;
        if (Jt808Text.Gbk.GetByteCount(text) > into.Length - header)
        {
            return false;
        }

        into[0] = flags;
        if (header == 2)
        {
            into[1] = textType;
        }

        length = header + Jt808Text.Gbk.GetBytes(text, into[header..]);
        return true;
    }
}
