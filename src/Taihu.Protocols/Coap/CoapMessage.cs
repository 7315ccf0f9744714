using System.Buffers.Binary;

namespace Taihu.Protocols.Coap;

/// <summary>The message type of RFC 7252 section 3.</summary>
public enum CoapType : byte
{
    Confirmable = 0,
    NonConfirmable = 1,
    Acknowledgement = 2,
    Reset = 3,
}

/// <summary>Codes (class &lt;&lt; 5 | detail) of RFC 7252 section 12.1, with RFC 7959's 2.31 and 4.08 and RFC 8516's 4.29.</summary>
public static class CoapCode
{
    public const byte Empty = 0x00;
    public const byte Get = 0x01;
    public const byte Post = 0x02;
    public const byte Put = 0x03;
    public const byte Delete = 0x04;
    public const byte Created = 0x41;
    public const byte Deleted = 0x42;
    public const byte Valid = 0x43;
    public const byte Changed = 0x44;
    public const byte Content = 0x45;
    public const byte Continue = 0x5F;
    public const byte BadRequest = 0x80;
    public const byte Unauthorized = 0x81;
    public const byte BadOption = 0x82;
    public const byte Forbidden = 0x83;
    public const byte NotFound = 0x84;
    public const byte MethodNotAllowed = 0x85;
    public const byte NotAcceptable = 0x86;
    public const byte RequestEntityIncomplete = 0x88;
    public const byte PreconditionFailed = 0x8C;
    public const byte RequestEntityTooLarge = 0x8D;
    public const byte UnsupportedContentFormat = 0x8F;
    public const byte TooManyRequests = 0x9D;
    public const byte InternalServerError = 0xA0;
    public const byte ServiceUnavailable = 0xA3;

    /// <summary>A request code (class 0, detail 1..31).</summary>
    public static bool IsRequest(byte code) => code is > 0 and < 0x20;

    /// <summary>A response code (classes 2, 4 and 5).</summary>
    public static bool IsResponse(byte code) => (code >> 5) is 2 or 4 or 5;

    /// <summary>"2.05" as RFC 7252 writes codes.</summary>
    public static string Format(byte code) => $"{code >> 5}.{code & 0x1F:00}";
}

/// <summary>Option numbers of RFC 7252 section 5.10, RFC 7641 (Observe) and RFC 7959 (Block1, Block2, Size2).</summary>
public static class CoapOption
{
    public const ushort IfMatch = 1;
    public const ushort UriHost = 3;
    public const ushort ETag = 4;
    public const ushort IfNoneMatch = 5;
    public const ushort Observe = 6;
    public const ushort UriPort = 7;
    public const ushort LocationPath = 8;
    public const ushort UriPath = 11;
    public const ushort ContentFormat = 12;
    public const ushort MaxAge = 14;
    public const ushort UriQuery = 15;
    public const ushort Accept = 17;
    public const ushort LocationQuery = 20;
    public const ushort Block2 = 23;
    public const ushort Block1 = 27;
    public const ushort Size2 = 28;
    public const ushort ProxyUri = 35;
    public const ushort ProxyScheme = 39;
    public const ushort Size1 = 60;

    /// <summary>Critical options (odd numbers) that a recipient must understand or refuse (RFC 7252 section 5.4.1).</summary>
    public static bool IsCritical(ushort number) => (number & 1) != 0;

    /// <summary>Content-Format 50, application/json.</summary>
    public const ushort FormatJson = 50;

    /// <summary>Content-Format 0, text/plain; charset=utf-8 (diagnostic payloads of error responses).</summary>
    public const ushort FormatText = 0;
}

/// <summary>Where one option's value lies in the datagram.</summary>
public readonly record struct CoapOptionRef(ushort Number, int Offset, int Length);

/// <summary>What <see cref="CoapParser.TryParse"/> found.</summary>
public enum CoapParseStatus
{
    /// <summary>A well-formed message.</summary>
    Ok,

    /// <summary>Fewer than 4 bytes: there is not even a message id; silently ignored (RFC 7252 section 4.2).</summary>
    TooShort,

    /// <summary>A version other than 1: silently ignored (RFC 7252 section 3).</summary>
    UnknownVersion,

    /// <summary>A message format error (token length 9..15, option nibble 15, an option past the end, a payload marker with no payload, an Empty message with content): a CON gets RST, anything else is ignored (section 4.2, 4.3).</summary>
    FormatError,

    /// <summary>More options than the caller's table holds: answered as a format error too.</summary>
    TooManyOptions,
}

/// <summary>The fixed part of a parsed message; token, options and payload are positions in the datagram.</summary>
public readonly record struct CoapHeader(CoapType Type, byte Code, ushort MessageId, int TokenLength, int OptionCount, int PayloadOffset, int PayloadLength)
{
    public ReadOnlySpan<byte> Token(ReadOnlySpan<byte> datagram) => datagram.Slice(4, TokenLength);

    public ReadOnlySpan<byte> Payload(ReadOnlySpan<byte> datagram) => datagram.Slice(PayloadOffset, PayloadLength);
}

/// <summary>A Block1 or Block2 value (RFC 7959 section 2.2): block number, more flag, size exponent.</summary>
public readonly record struct CoapBlock(uint Number, bool More, int SizeExponent)
{
    /// <summary>The block size, 16 to 1024 bytes.</summary>
    public int Size => 1 << (SizeExponent + 4);

    /// <summary>Where the block starts in the whole body.</summary>
    public long Offset => (long)Number * Size;

    public uint Encode() => (Number << 4) | (More ? 8u : 0u) | (uint)SizeExponent;

    /// <summary>Decodes a block option value; false for size exponent 7 (reserved) or a value over 3 bytes.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> value, out CoapBlock block)
    {
        block = default;
        if (value.Length > 3)
        {
            return false;
        }

        var v = CoapParser.ReadUInt(value);
        if ((v & 7) == 7)
        {
            return false;
        }

        block = new CoapBlock(v >> 4, (v & 8) != 0, (int)(v & 7));
        return true;
    }

    /// <summary>The size exponent of the largest block not over <paramref name="bytes"/> (at least 16).</summary>
    public static int ExponentFor(int bytes)
    {
        var exponent = 6;
        while (exponent > 0 && 1 << (exponent + 4) > bytes)
        {
            exponent--;
        }

        return exponent;
    }
}

/// <summary>
/// Parses one CoAP datagram (RFC 7252 section 3) in place: the header, and the positions of the token, each option
/// (delta and length with their 13/14 extensions) and the payload, into a table the caller provides. Nothing is
/// copied or allocated.
/// </summary>
public static class CoapParser
{
    private const byte PayloadMarker = 0xFF;

    /// <summary>
    /// Parses <paramref name="datagram"/>; on <see cref="CoapParseStatus.Ok"/> the options are the first
    /// <see cref="CoapHeader.OptionCount"/> entries of <paramref name="options"/>, in order. On a format error the
    /// header still carries the type and message id (to answer a CON with RST).
    /// </summary>
    public static CoapParseStatus TryParse(ReadOnlySpan<byte> datagram, Span<CoapOptionRef> options, out CoapHeader header)
    {
        header = default;
        if (datagram.Length < 4)
        {
            return CoapParseStatus.TooShort;
        }

        var first = datagram[0];
        var type = (CoapType)((first >> 4) & 3);
        var tokenLength = first & 0x0F;
        var code = datagram[1];
        var messageId = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        header = new CoapHeader(type, code, messageId, 0, 0, datagram.Length, 0);
        if (first >> 6 != 1)
        {
            return CoapParseStatus.UnknownVersion;
        }

        if (tokenLength > 8 || 4 + tokenLength > datagram.Length)
        {
            return CoapParseStatus.FormatError;
        }

        if (code == CoapCode.Empty && (tokenLength != 0 || datagram.Length != 4))
        {
            // An Empty message is the 4-byte header alone (section 4.1).
            return CoapParseStatus.FormatError;
        }

        var position = 4 + tokenLength;
        var number = 0;
        var count = 0;
        while (position < datagram.Length)
        {
            var b = datagram[position++];
            if (b == PayloadMarker)
            {
                if (position == datagram.Length)
                {
                    // A marker followed by a zero-length payload is a format error (section 3).
                    return CoapParseStatus.FormatError;
                }

                header = new CoapHeader(type, code, messageId, tokenLength, count, position, datagram.Length - position);
                return CoapParseStatus.Ok;
            }

            if (!TryExtended(datagram, ref position, b >> 4, out var delta) || !TryExtended(datagram, ref position, b & 0x0F, out var length))
            {
                return CoapParseStatus.FormatError;
            }

            number += delta;
            if (number > ushort.MaxValue || length > datagram.Length - position)
            {
                return CoapParseStatus.FormatError;
            }

            if (count == options.Length)
            {
                return CoapParseStatus.TooManyOptions;
            }

            options[count++] = new CoapOptionRef((ushort)number, position, length);
            position += length;
        }

        header = new CoapHeader(type, code, messageId, tokenLength, count, datagram.Length, 0);
        return CoapParseStatus.Ok;
    }

    /// <summary>A 4-bit delta or length with its extension bytes (13: one byte + 13, 14: two bytes + 269, 15: reserved).</summary>
    private static bool TryExtended(ReadOnlySpan<byte> datagram, ref int position, int nibble, out int value)
    {
        switch (nibble)
        {
            case < 13:
                value = nibble;
                return true;
            case 13 when position < datagram.Length:
                value = datagram[position++] + 13;
                return true;
            case 14 when position + 1 < datagram.Length:
                value = BinaryPrimitives.ReadUInt16BigEndian(datagram[position..]) + 269;
                position += 2;
                return true;
            default:
                value = 0;
                return false;
        }
    }

    /// <summary>An unsigned integer option value (0 to 4 bytes, big-endian, leading zeros allowed).</summary>
    public static uint ReadUInt(ReadOnlySpan<byte> value)
    {
        uint v = 0;
        foreach (var b in value)
        {
            v = (v << 8) | b;
        }

        return v;
    }

    /// <summary>The index of the first option <paramref name="number"/> among <paramref name="options"/>, or -1.</summary>
    public static int Find(ReadOnlySpan<CoapOptionRef> options, ushort number)
    {
        for (var i = 0; i < options.Length; i++)
        {
            if (options[i].Number == number)
            {
                return i;
            }
        }

        return -1;
    }
}

/// <summary>
/// Writes a CoAP message into a span: header, token, options in ascending order (the delta encoding needs them
/// so), then the payload. <see cref="Length"/> is how much was written; a span too small throws.
/// </summary>
public ref struct CoapWriter
{
    private readonly Span<byte> _buffer;
    private int _position;
    private int _lastOption;

    public CoapWriter(Span<byte> buffer, CoapType type, byte code, ushort messageId, ReadOnlySpan<byte> token)
    {
        if (token.Length > 8)
        {
            throw new ArgumentException("A CoAP token is at most 8 bytes.", nameof(token));
        }

        _buffer = buffer;
        buffer[0] = (byte)(0x40 | ((int)type << 4) | token.Length);
        buffer[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], messageId);
        token.CopyTo(buffer[4..]);
        _position = 4 + token.Length;
    }

    public readonly int Length => _position;

    public readonly ReadOnlySpan<byte> Written => _buffer[.._position];

    public void Option(ushort number, scoped ReadOnlySpan<byte> value)
    {
        if (number < _lastOption)
        {
            throw new InvalidOperationException("CoAP options are written in ascending order of their numbers.");
        }

        var delta = number - _lastOption;
        _lastOption = number;
        var head = _position++;
        var deltaNibble = Extend(delta);
        var lengthNibble = Extend(value.Length);
        _buffer[head] = (byte)((deltaNibble << 4) | lengthNibble);
        value.CopyTo(_buffer[_position..]);
        _position += value.Length;
    }

    /// <summary>An unsigned integer option in the fewest bytes (0 is zero bytes).</summary>
    public void UIntOption(ushort number, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        var skip = 0;
        while (skip < 4 && bytes[skip] == 0)
        {
            skip++;
        }

        Option(number, bytes[skip..]);
    }

    /// <summary>Writes the payload marker and the payload (nothing for an empty payload).</summary>
    public void Payload(scoped ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty)
        {
            return;
        }

        _buffer[_position++] = 0xFF;
        payload.CopyTo(_buffer[_position..]);
        _position += payload.Length;
    }

    private int Extend(int value)
    {
        if (value < 13)
        {
            return value;
        }

        if (value < 269)
        {
            _buffer[_position++] = (byte)(value - 13);
            return 13;
        }

        BinaryPrimitives.WriteUInt16BigEndian(_buffer[_position..], (ushort)(value - 269));
        _position += 2;
        return 14;
    }
}
