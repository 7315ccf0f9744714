using System.Buffers;
using System.Buffers.Binary;

namespace Taihu.Protocols.Jt808;

/// <summary>
/// How the platform writes its headers to one terminal: the layout the terminal itself uses (2011/2013's 12 bytes
/// or 2019's 17), its version byte and bit 14 as it sends them, and its phone number as it encodes it.
/// </summary>
public sealed class Jt808HeaderForm
{
    private readonly byte[] _phone;

    public Jt808HeaderForm(Jt808Header header)
    {
        ArgumentNullException.ThrowIfNull(header);
        ProtocolVersion = header.ProtocolVersion;
        VersionFlag = header.VersionFlag;
        _phone = new byte[header.Is2019Layout ? 10 : 6];
        Jt808Header.EncodePhone(header.Phone, _phone);
    }

    /// <summary>The form of the header of <paramref name="message"/>, its phone number copied as the terminal encoded it.</summary>
    public Jt808HeaderForm(Jt808HeaderFields header, ReadOnlySpan<byte> message)
    {
        ProtocolVersion = header.ProtocolVersion;
        VersionFlag = header.VersionFlag;
        _phone = header.Phone(message).ToArray();
    }

    /// <summary>Whether <paramref name="header"/> of <paramref name="message"/> is written in this form by the same terminal.</summary>
    public bool Matches(Jt808HeaderFields header, ReadOnlySpan<byte> message) =>
        header.ProtocolVersion == ProtocolVersion && header.VersionFlag == VersionFlag && header.Phone(message).SequenceEqual(_phone);

    public byte? ProtocolVersion { get; }

    public bool VersionFlag { get; }

    public ReadOnlySpan<byte> Phone => _phone;

    /// <summary>12 or 17 bytes (platform messages are never split here).</summary>
    public int Length => ProtocolVersion is null ? 12 : 17;
}

/// <summary>Writes platform frames straight into an <see cref="IBufferWriter{T}"/>: header, body, check code, escapes and flags in one pass.</summary>
public static class Jt808Writer
{
    /// <summary>The most bytes one frame with a body of <paramref name="bodyLength"/> can take on the wire.</summary>
    public static int MaxFrameLength(int bodyLength) => (2 * (17 + bodyLength + 1)) + 2;

    public static void WriteFrame(IBufferWriter<byte> output, Jt808HeaderForm form, ushort messageId, ushort serial, ReadOnlySpan<byte> body)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(form);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(body.Length, 1023);
        Span<byte> header = stackalloc byte[17];
        BinaryPrimitives.WriteUInt16BigEndian(header, messageId);
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)((form.VersionFlag ? 0x4000 : 0) | body.Length));
        var at = 4;
        if (form.ProtocolVersion is { } version)
        {
            header[at++] = version;
        }

        form.Phone.CopyTo(header[at..]);
        at += form.Phone.Length;
        BinaryPrimitives.WriteUInt16BigEndian(header[at..], serial);
        header = header[..(at + 2)];

        var span = output.GetSpan(MaxFrameLength(body.Length));
        var n = 0;
        byte check = 0;
        span[n++] = 0x7E;
        foreach (var b in header)
        {
            check ^= b;
            n = Put(span, n, b);
        }

        foreach (var b in body)
        {
            check ^= b;
            n = Put(span, n, b);
        }

        n = Put(span, n, check);
        span[n++] = 0x7E;
        output.Advance(n);
    }

    private static int Put(Span<byte> span, int n, byte b)
    {
        if (b is 0x7E or 0x7D)
        {
            span[n++] = 0x7D;
            span[n++] = b == 0x7E ? (byte)0x02 : (byte)0x01;
        }
        else
        {
            span[n++] = b;
        }

        return n;
    }
}
