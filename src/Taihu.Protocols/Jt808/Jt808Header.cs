using System.Buffers.Binary;

namespace Taihu.Protocols.Jt808;

/// <summary>
/// A JT/T 808 message header. Its length is read from the frame (the frame's length less the body length the
/// properties give): 12 bytes in the 2011 and 2013 editions (6-byte BCD phone number), 17 in 2019 (a protocol
/// version byte and a 10-byte phone number), 4 more with sub-package fields. So the phone number is read whatever
/// bit 14 (the 2019 version flag) says: real terminals set that bit and send a 2013 header, and the listener
/// decides per terminal which to believe.
/// </summary>
public sealed record Jt808Header(
    ushort MessageId,
    ushort Properties,
    byte? ProtocolVersion,
    string Phone,
    ushort Serial,
    ushort? PackageCount,
    ushort? PackageNumber)
{
    public int BodyLength => Properties & 0x3FF;

    /// <summary>Bits 10 to 12: 0 none, 1 RSA.</summary>
    public int Encryption => (Properties >> 10) & 0x7;

    public bool IsSubpackage => (Properties & 0x2000) != 0;

    /// <summary>Bit 14, which the 2019 edition sets.</summary>
    public bool VersionFlag => (Properties & 0x4000) != 0;

    /// <summary>The header was laid out as 2019's (17 or 21 bytes).</summary>
    public bool Is2019Layout => ProtocolVersion is not null;

    public int Length => (Is2019Layout ? 17 : 12) + (IsSubpackage ? 4 : 0);

    /// <summary>Reads the header of an unescaped message (header and body, no check code).</summary>
    public static bool TryRead(ReadOnlySpan<byte> message, out Jt808Header? header, out string? error)
    {
        header = null;
        var problem = Jt808HeaderFields.TryRead(message, out var f);
        if (problem != Jt808HeaderError.None)
        {
            error = Describe(message, problem);
            return false;
        }

        TryBcd(f.Phone(message), out var phone);
        header = new Jt808Header(f.MessageId, f.Properties, f.ProtocolVersion, phone, f.Serial, f.PackageCount, f.PackageNumber);
        error = null;
        return true;
    }

    /// <summary>The phone number's digits (the BCD bytes of a header already read).</summary>
    public static string PhoneDigits(ReadOnlySpan<byte> bcd)
    {
        TryBcd(bcd, out var digits);
        return digits;
    }

    private static string Describe(ReadOnlySpan<byte> message, Jt808HeaderError problem)
    {
        if (problem == Jt808HeaderError.TooShort)
        {
            return $"A header has at least 12 bytes; the message has {message.Length}.";
        }

        var properties = BinaryPrimitives.ReadUInt16BigEndian(message[2..]);
        var bodyLength = properties & 0x3FF;
        var sub = (properties & 0x2000) != 0;
        var headerLength = message.Length - bodyLength;
        int expected2013 = sub ? 16 : 12, expected2019 = sub ? 21 : 17;
        if (problem == Jt808HeaderError.BadLength)
        {
            return $"The body length in the properties ({bodyLength}) leaves {headerLength} bytes of header; a{(sub ? " sub-package" : "")} header has {expected2013} (2011/2013) or {expected2019} (2019).";
        }

        var is2019 = headerLength == expected2019;
        var phoneAt = is2019 ? 5 : 4;
        var phoneLength = is2019 ? 10 : 6;
        if (problem == Jt808HeaderError.BadPhone)
        {
            return $"The phone number is not BCD: {Convert.ToHexString(message.Slice(phoneAt, phoneLength))}.";
        }

        var at = phoneAt + phoneLength + 2;
        return $"Sub-package {BinaryPrimitives.ReadUInt16BigEndian(message[(at + 2)..])} of {BinaryPrimitives.ReadUInt16BigEndian(message[at..])} is not a package of the message.";
    }

    /// <summary>Writes this header for a body of <paramref name="bodyLength"/> bytes (the properties' length field set to it).</summary>
    public byte[] Encode(int bodyLength)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bodyLength, 1023);
        var bytes = new byte[Length];
        BinaryPrimitives.WriteUInt16BigEndian(bytes, MessageId);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), (ushort)((Properties & ~0x3FF) | bodyLength));
        var at = 4;
        if (ProtocolVersion is { } version)
        {
            bytes[at++] = version;
        }

        var phoneLength = Is2019Layout ? 10 : 6;
        WriteBcd(Phone, bytes.AsSpan(at, phoneLength));
        at += phoneLength;
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(at), Serial);
        at += 2;
        if (IsSubpackage)
        {
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(at), PackageCount ?? 1);
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(at + 2), PackageNumber ?? 1);
        }

        return bytes;
    }

    /// <summary>Writes <paramref name="digits"/> as a BCD phone number of <paramref name="into"/>'s length (6 or 10 bytes), zeros in front.</summary>
    public static void EncodePhone(string digits, Span<byte> into) => WriteBcd(digits, into);

    private static readonly System.Buffers.SearchValues<char> Digits = System.Buffers.SearchValues.Create("0123456789");

    internal static bool IsBcd(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
        {
            if (b >> 4 > 9 || (b & 0xF) > 9)
            {
                return false;
            }
        }

        return true;
    }

    private static bool TryBcd(ReadOnlySpan<byte> bytes, out string digits)
    {
        Span<char> text = stackalloc char[bytes.Length * 2];
        for (var i = 0; i < bytes.Length; i++)
        {
            int high = bytes[i] >> 4, low = bytes[i] & 0xF;
            if (high > 9 || low > 9)
            {
                digits = "";
                return false;
            }

            text[2 * i] = (char)('0' + high);
            text[(2 * i) + 1] = (char)('0' + low);
        }

        digits = new string(text);
        return true;
    }

    private static void WriteBcd(string digits, Span<byte> into)
    {
        // Right-aligned, zeros in front, as terminals write a shorter number.
        var padded = digits.PadLeft(into.Length * 2, '0');
        if (padded.Length > into.Length * 2 || padded.AsSpan().IndexOfAnyExcept(Digits) >= 0)
        {
            throw new ArgumentException($"The phone number '{digits}' is not a number of at most {into.Length * 2} digits.", nameof(digits));
        }

        for (var i = 0; i < into.Length; i++)
        {
            into[i] = (byte)(((padded[2 * i] - '0') << 4) | (padded[(2 * i) + 1] - '0'));
        }
    }
}

/// <summary>Why a header was not read.</summary>
public enum Jt808HeaderError
{
    None,

    /// <summary>Shorter than the smallest header.</summary>
    TooShort,

    /// <summary>The body length in the properties leaves neither a 2011/2013 nor a 2019 header.</summary>
    BadLength,

    /// <summary>The phone number is not BCD.</summary>
    BadPhone,

    /// <summary>Sub-package fields that name no package of a message (0 packages, package 0, or beyond the count).</summary>
    BadPackage,
}

/// <summary>
/// A header's fields, read without allocating (the listener's path for every frame); the phone number stays in the
/// message as BCD (<see cref="Phone"/>). <see cref="Jt808Header"/> is the same with the phone number as text.
/// </summary>
public readonly record struct Jt808HeaderFields(ushort MessageId, ushort Properties, byte? ProtocolVersion, ushort Serial, ushort? PackageCount, ushort? PackageNumber)
{
    public int BodyLength => Properties & 0x3FF;

    public int Encryption => (Properties >> 10) & 0x7;

    public bool IsSubpackage => (Properties & 0x2000) != 0;

    public bool VersionFlag => (Properties & 0x4000) != 0;

    public bool Is2019Layout => ProtocolVersion is not null;

    public int Length => (Is2019Layout ? 17 : 12) + (IsSubpackage ? 4 : 0);

    /// <summary>The phone number's BCD bytes in <paramref name="message"/> (6, or 10 in 2019's layout).</summary>
    public ReadOnlySpan<byte> Phone(ReadOnlySpan<byte> message) => message.Slice(Is2019Layout ? 5 : 4, Is2019Layout ? 10 : 6);

    /// <summary>Reads the header of an unescaped message (header and body, no check code); its length is the message's less the body length.</summary>
    public static Jt808HeaderError TryRead(ReadOnlySpan<byte> message, out Jt808HeaderFields fields)
    {
        fields = default;
        if (message.Length < 12)
        {
            return Jt808HeaderError.TooShort;
        }

        var id = BinaryPrimitives.ReadUInt16BigEndian(message);
        var properties = BinaryPrimitives.ReadUInt16BigEndian(message[2..]);
        var sub = (properties & 0x2000) != 0;
        var headerLength = message.Length - (properties & 0x3FF);
        int expected2013 = sub ? 16 : 12, expected2019 = sub ? 21 : 17;
        if (headerLength != expected2013 && headerLength != expected2019)
        {
            return Jt808HeaderError.BadLength;
        }

        var is2019 = headerLength == expected2019;
        var at = 4;
        byte? version = null;
        if (is2019)
        {
            version = message[at++];
        }

        var phoneLength = is2019 ? 10 : 6;
        if (!Jt808Header.IsBcd(message.Slice(at, phoneLength)))
        {
            return Jt808HeaderError.BadPhone;
        }

        at += phoneLength;
        var serial = BinaryPrimitives.ReadUInt16BigEndian(message[at..]);
        at += 2;
        ushort? count = null, number = null;
        if (sub)
        {
            count = BinaryPrimitives.ReadUInt16BigEndian(message[at..]);
            number = BinaryPrimitives.ReadUInt16BigEndian(message[(at + 2)..]);
            if (count == 0 || number == 0 || number > count)
            {
                return Jt808HeaderError.BadPackage;
            }
        }

        fields = new Jt808HeaderFields(id, properties, version, serial, count, number);
        return Jt808HeaderError.None;
    }
}
