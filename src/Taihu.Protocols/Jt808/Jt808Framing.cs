namespace Taihu.Protocols.Jt808;

/// <summary>What <see cref="Jt808Framing.TryRead"/> found at the start of a buffer.</summary>
public enum Jt808ReadStatus
{
    /// <summary>A whole frame whose check code matched; its unescaped header and body (without the check code) were written out.</summary>
    Frame,

    /// <summary>The closing 0x7E has not come yet (nothing consumed, unless bytes before a frame were skipped).</summary>
    NeedMore,

    /// <summary>Not a valid frame: skip <c>consumed</c> bytes and go on; <c>error</c> says why.</summary>
    Invalid,
}

/// <summary>Why bytes were not taken as a frame.</summary>
public enum Jt808FrameError
{
    None,

    /// <summary>Bytes before the next 0x7E.</summary>
    NotAFrameStart,

    /// <summary>0x7D followed by something other than 0x01 or 0x02.</summary>
    BadEscape,

    /// <summary>More than the largest frame the protocol allows between the two 0x7E.</summary>
    TooLong,

    /// <summary>Shorter than the smallest header and a check code.</summary>
    TooShort,

    /// <summary>
    /// The check code (XOR of the header and body) does not match. The unescaped bytes are still written out
    /// (<c>length</c> covers the header and body), so that a listener can read the header and answer with "message
    /// error", as the standard's general reply allows.
    /// </summary>
    CheckCodeMismatch,
}

/// <summary>
/// JT/T 808 framing: 0x7E, the header and body with 0x7E written as 0x7D 0x02 and 0x7D as 0x7D 0x01, a check code
/// (XOR of every unescaped header and body byte), 0x7E. The same in the 2011, 2013 and 2019 editions.
/// </summary>
public static class Jt808Framing
{
    /// <summary>A 2019 header with sub-package fields (21 bytes), the largest body the length field allows (1,023) and the check code.</summary>
    public const int MaxUnescapedLength = 21 + 1023 + 1;

    private const byte Flag = 0x7E;
    private const byte Escape = 0x7D;

    /// <summary>
    /// Tries to take one frame from the start of <paramref name="buffer"/>, unescaping what lies between the flags
    /// into <paramref name="message"/> (at least <see cref="MaxUnescapedLength"/> bytes). On
    /// <see cref="Jt808ReadStatus.Frame"/>, <paramref name="length"/> is the header and body's length (the check
    /// code verified and left out) and <paramref name="consumed"/> covers both flags.
    /// </summary>
    public static Jt808ReadStatus TryRead(ReadOnlySpan<byte> buffer, Span<byte> message, out int length, out int consumed, out Jt808FrameError error)
    {
        length = 0;
        consumed = 0;
        error = Jt808FrameError.None;
        if (buffer.IsEmpty)
        {
            return Jt808ReadStatus.NeedMore;
        }

        if (buffer[0] != Flag)
        {
            var next = buffer.IndexOf(Flag);
            consumed = next < 0 ? buffer.Length : next;
            error = Jt808FrameError.NotAFrameStart;
            return Jt808ReadStatus.Invalid;
        }

        // Two flags in a row: the first closed a frame, or stood alone; the second starts this one.
        var start = 0;
        while (start + 1 < buffer.Length && buffer[start + 1] == Flag)
        {
            start++;
        }

        var body = buffer[(start + 1)..];
        var end = body.IndexOf(Flag);
        if (end < 0)
        {
            if (body.Length > 2 * MaxUnescapedLength)
            {
                consumed = start + 1;
                error = Jt808FrameError.TooLong;
                return Jt808ReadStatus.Invalid;
            }

            consumed = start;
            return Jt808ReadStatus.NeedMore;
        }

        var escaped = body[..end];
        // Skip this frame's bytes, keeping its closing flag: it may open the next frame.
        consumed = start + 1 + end;
        var n = 0;
        for (var i = 0; i < escaped.Length; i++)
        {
            if (n == MaxUnescapedLength)
            {
                error = Jt808FrameError.TooLong;
                return Jt808ReadStatus.Invalid;
            }

            var b = escaped[i];
            if (b == Escape)
            {
                if (i + 1 >= escaped.Length || escaped[i + 1] is not (0x01 or 0x02))
                {
                    error = Jt808FrameError.BadEscape;
                    return Jt808ReadStatus.Invalid;
                }

                b = escaped[++i] == 0x02 ? Flag : Escape;
            }

            message[n++] = b;
        }

        if (n < 12 + 1)
        {
            error = Jt808FrameError.TooShort;
            return Jt808ReadStatus.Invalid;
        }

        byte check = 0;
        foreach (var b in message[..(n - 1)])
        {
            check ^= b;
        }

        if (check != message[n - 1])
        {
            length = n - 1;
            error = Jt808FrameError.CheckCodeMismatch;
            return Jt808ReadStatus.Invalid;
        }

        length = n - 1;
        consumed = start + 1 + end + 1;
        return Jt808ReadStatus.Frame;
    }

    /// <summary>Frames a header and body: the check code appended, 0x7E and 0x7D escaped, the flags around.</summary>
    public static byte[] Encode(ReadOnlySpan<byte> headerAndBody)
    {
        byte check = 0;
        var escapes = 0;
        foreach (var b in headerAndBody)
        {
            check ^= b;
            escapes += b is Flag or Escape ? 1 : 0;
        }

        escapes += check is Flag or Escape ? 1 : 0;
        var frame = new byte[headerAndBody.Length + 1 + escapes + 2];
        var at = 0;
        frame[at++] = Flag;
        foreach (var b in headerAndBody)
        {
            at = Put(frame, at, b);
        }

        at = Put(frame, at, check);
        frame[at] = Flag;
        return frame;
    }

    private static int Put(byte[] frame, int at, byte b)
    {
        if (b is Flag or Escape)
        {
            frame[at++] = Escape;
            frame[at++] = b == Flag ? (byte)0x02 : (byte)0x01;
        }
        else
        {
            frame[at++] = b;
        }

        return at;
    }
}
