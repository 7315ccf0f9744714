using System.Buffers.Text;

namespace Taihu.Protocols.Hj212;

/// <summary>What <see cref="Hj212Framing.TryRead"/> found at the start of a buffer.</summary>
public enum Hj212ReadStatus
{
    /// <summary>A whole frame whose check matched: its data segment is <c>segment</c>.</summary>
    Frame,

    /// <summary>The frame is not all there yet: read more and try again (nothing consumed).</summary>
    NeedMore,

    /// <summary>Bytes that are not a valid frame: skip <c>consumed</c> bytes (to the next <c>##</c>) and go on; <c>error</c> says why.</summary>
    Invalid,
}

/// <summary>Why bytes were not taken as a frame.</summary>
public enum Hj212FrameError
{
    None,

    /// <summary>Bytes before the next <c>##</c> (line ends between frames are skipped silently).</summary>
    NotAFrameStart,

    /// <summary>The four characters after <c>##</c> are not a decimal length.</summary>
    BadLength,

    /// <summary>The data segment is longer than the limit.</summary>
    TooLong,

    /// <summary>The four characters after the data segment are not hexadecimal.</summary>
    BadCrcText,

    /// <summary>The check does not match the data segment.</summary>
    CrcMismatch,
}

/// <summary>
/// HJ 212 framing: <c>##</c>, the data segment's length as four decimal digits, the data segment, its CRC16 as four
/// hexadecimal digits (either letter case), then <c>\r\n</c>, which stations sometimes leave out. Works on the
/// bytes as received, without copying or allocating.
/// </summary>
public static class Hj212Framing
{
    /// <summary>HJ 212-2017 limits the data segment to 1,024 characters (the 2005 edition too).</summary>
    public const int StandardMaxDataLength = 1024;

    /// <summary>The length field's four digits cannot say more.</summary>
    public const int MaxDataLength = 9999;

    private const int HeaderLength = 6; // "##" + 4 digits
    private const int CrcLength = 4;

    /// <summary>
    /// Tries to take one frame from the start of <paramref name="buffer"/>. On <see cref="Hj212ReadStatus.Frame"/>,
    /// <paramref name="segment"/> is where the data segment lies in the buffer and <paramref name="consumed"/> how
    /// much the frame took (its line end too, when it came); on <see cref="Hj212ReadStatus.Invalid"/>,
    /// <paramref name="consumed"/> is how much to skip; on <see cref="Hj212ReadStatus.NeedMore"/>, nothing is
    /// consumed, unless line ends before the frame were skipped.
    /// </summary>
    public static Hj212ReadStatus TryRead(ReadOnlySpan<byte> buffer, int maxDataLength, Hj212CrcKind crcKind, out Range segment, out int consumed, out Hj212FrameError error)
    {
        segment = default;
        error = Hj212FrameError.None;
        consumed = 0;

        // Line ends left from the frame before (or sent alone) are not an error.
        var start = 0;
        while (start < buffer.Length && buffer[start] is (byte)'\r' or (byte)'\n')
        {
            start++;
        }

        var rest = buffer[start..];
        if (rest.Length == 0 || (rest.Length == 1 && rest[0] == '#'))
        {
            consumed = start;
            return Hj212ReadStatus.NeedMore;
        }

        if (rest[0] != '#' || rest[1] != '#')
        {
            // Skip to the next "##" (or keep a last '#' that may begin one).
            var next = rest.IndexOf("##"u8);
            if (next < 0)
            {
                next = rest[^1] == '#' ? rest.Length - 1 : rest.Length;
            }

            consumed = start + next;
            error = Hj212FrameError.NotAFrameStart;
            return Hj212ReadStatus.Invalid;
        }

        if (rest.Length < HeaderLength)
        {
            consumed = start;
            return Hj212ReadStatus.NeedMore;
        }

        var lengthText = rest.Slice(2, 4);
        if (!AllDigits(lengthText) || !Utf8Parser.TryParse(lengthText, out int length, out var used) || used != 4)
        {
            consumed = start + 2;
            error = Hj212FrameError.BadLength;
            return Hj212ReadStatus.Invalid;
        }

        if (length > Math.Min(maxDataLength, MaxDataLength))
        {
            consumed = start + 2;
            error = Hj212FrameError.TooLong;
            return Hj212ReadStatus.Invalid;
        }

        var frameLength = HeaderLength + length + CrcLength;
        if (rest.Length < frameLength)
        {
            consumed = start;
            return Hj212ReadStatus.NeedMore;
        }

        var data = rest.Slice(HeaderLength, length);
        if (!TryParseHex(rest.Slice(HeaderLength + length, CrcLength), out var sent))
        {
            consumed = start + 2;
            error = Hj212FrameError.BadCrcText;
            return Hj212ReadStatus.Invalid;
        }

        if (Hj212Crc.Compute(data, crcKind) != sent)
        {
            consumed = start + 2;
            error = Hj212FrameError.CrcMismatch;
            return Hj212ReadStatus.Invalid;
        }

        // "\r\n" after the check when it is there; a frame without it is taken as it is.
        var end = frameLength;
        if (end < rest.Length && rest[end] == '\r')
        {
            end++;
        }

        if (end < rest.Length && rest[end] == '\n')
        {
            end++;
        }

        segment = new Range(start + HeaderLength, start + HeaderLength + length);
        consumed = start + end;
        return Hj212ReadStatus.Frame;
    }

    /// <summary>Writes <c>##</c>, the length, <paramref name="segment"/>, its standard CRC and <c>\r\n</c>.</summary>
    public static byte[] Encode(string segment, Hj212CrcKind crcKind = Hj212CrcKind.Standard)
    {
        ArgumentNullException.ThrowIfNull(segment);
        var data = System.Text.Encoding.ASCII.GetBytes(segment);
        if (data.Length > MaxDataLength)
        {
            throw new ArgumentException($"An HJ 212 data segment holds at most {MaxDataLength} characters; this one has {data.Length}.", nameof(segment));
        }

        var frame = new byte[HeaderLength + data.Length + CrcLength + 2];
        frame[0] = (byte)'#';
        frame[1] = (byte)'#';
        WriteDigits(frame.AsSpan(2, 4), data.Length);
        data.CopyTo(frame.AsSpan(HeaderLength));
        var crc = Hj212Crc.Compute(data, crcKind);
        const string Hex = "0123456789ABCDEF";
        var at = HeaderLength + data.Length;
        for (var i = 0; i < 4; i++)
        {
            frame[at + i] = (byte)Hex[(crc >> (12 - (4 * i))) & 0xF];
        }

        frame[^2] = (byte)'\r';
        frame[^1] = (byte)'\n';
        return frame;
    }

    /// <summary>
    /// Writes <c>##</c>, the length, <paramref name="segment"/> (ASCII), its CRC of <paramref name="crcKind"/> and
    /// <c>\r\n</c> into <paramref name="output"/>, without an intermediate array.
    /// </summary>
    public static void Write(System.Buffers.IBufferWriter<byte> output, ReadOnlySpan<char> segment, Hj212CrcKind crcKind = Hj212CrcKind.Standard)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (segment.Length > MaxDataLength)
        {
            throw new ArgumentException($"An HJ 212 data segment holds at most {MaxDataLength} characters; this one has {segment.Length}.", nameof(segment));
        }

        var total = HeaderLength + segment.Length + CrcLength + 2;
        var frame = output.GetSpan(total)[..total];
        frame[0] = (byte)'#';
        frame[1] = (byte)'#';
        WriteDigits(frame.Slice(2, 4), segment.Length);
        var data = frame.Slice(HeaderLength, segment.Length);
        for (var i = 0; i < segment.Length; i++)
        {
            data[i] = segment[i] < 0x80 ? (byte)segment[i] : (byte)'?';
        }

        var crc = Hj212Crc.Compute(data, crcKind);
        const string Hex = "0123456789ABCDEF";
        var at = HeaderLength + segment.Length;
        for (var i = 0; i < 4; i++)
        {
            frame[at + i] = (byte)Hex[(crc >> (12 - (4 * i))) & 0xF];
        }

        frame[^2] = (byte)'\r';
        frame[^1] = (byte)'\n';
        output.Advance(total);
    }

    private static void WriteDigits(Span<byte> into, int value)
    {
        for (var i = into.Length - 1; i >= 0; i--)
        {
            into[i] = (byte)('0' + (value % 10));
            value /= 10;
        }
    }

    private static bool AllDigits(ReadOnlySpan<byte> text)
    {
        foreach (var c in text)
        {
            if (c is < (byte)'0' or > (byte)'9')
            {
                return false;
            }
        }

        return true;
    }

    private static bool TryParseHex(ReadOnlySpan<byte> text, out ushort value)
    {
        value = 0;
        foreach (var c in text)
        {
            int digit = c switch
            {
                >= (byte)'0' and <= (byte)'9' => c - '0',
                >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
                >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
                _ => -1,
            };
            if (digit < 0)
            {
                return false;
            }

            value = (ushort)((value << 4) | digit);
        }

        return true;
    }
}
