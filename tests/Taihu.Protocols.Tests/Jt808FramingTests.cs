using Taihu.Protocols.Jt808;

namespace Taihu.Protocols.Tests;

/// <summary>JT/T 808 frames from terminals and other implementations' tests, and every way a frame can be wrong.</summary>
public sealed class Jt808FramingTests
{
    /// <summary>Where each frame comes from; each check code was verified by hand against the XOR rule.</summary>
    public static TheoryData<string, string, ushort, string, int, bool> RealFrames => new()
    {
        // cuteLittleDevil/go-jt808 (Go) tests: terminal registration 0x0100, 2013 edition.
        { "go-jt808 registration 2013", "7e0100002c0123456789010000001f0073797a6800007777772e6a74743830382e636f6d0000000000003736353433323101b2e24131323334ca7e", 0x0100, "012345678901", 44, false },
        // The same project: registration in the 2019 edition (bit 14, protocol version 1, 10-byte phone number).
        { "go-jt808 registration 2019", "7e0100405301000000000172998417380000001f0073797a6800000000000000007777772e6a74743830382e636f6d0000000000000000000000000000000037363534333231000000000000000000000000000000000000000000000001b2e241313233343d7e", 0x0100, "00000000017299841738", 83, true },
        // The same project: one sub-package (1 of 2) of a 0x0801 multimedia upload.
        { "go-jt808 sub-package", "7E0801200500123456789002DE001A00022808000102537E", 0x0801, "001234567890", 5, false },
        // A Java terminal simulator on GitHub: a registration a real terminal sent ("T808" model), and its authentication 0x0102.
        { "terminal registration", "7e0100002c0200000000150025002c0133373039363054372d54383038000000000000000000000000003033323931373001d4c142383838387b7e", 0x0100, "020000000015", 44, false },
        { "terminal authentication", "7e010200060200000000150026313639333434397e", 0x0102, "020000000015", 6, false },
        // go-jt808: heartbeats 0x0002 with an empty body, 2013 and 2019.
        { "go-jt808 heartbeat 2013", "7e0002000001234567890100008a7e", 0x0002, "012345678901", 0, false },
        { "go-jt808 heartbeat 2019", "7e0002400001000000000172998417380000027e", 0x0002, "00000000017299841738", 0, true },
    };

    [Theory]
    [MemberData(nameof(RealFrames))]
    public void RealFrames_Decode_AndEncodeBackToTheSameBytes(string source, string hex, ushort id, string phone, int bodyLength, bool is2019)
    {
        var bytes = Convert.FromHexString(hex);
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        var status = Jt808Framing.TryRead(bytes, message, out var length, out var consumed, out var error);
        Assert.True(status == Jt808ReadStatus.Frame, $"{source}: {status} {error}");
        Assert.Equal(bytes.Length, consumed);
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out var headerError), headerError);
        Assert.Equal((id, phone, bodyLength, is2019), (header!.MessageId, header.Phone, header.BodyLength, header.Is2019Layout));
        Assert.Equal(length, header.Length + header.BodyLength);

        // Header written again plus the same body, framed: the bytes the terminal sent.
        var again = header.Encode(header.BodyLength).Concat(message.AsSpan(header.Length, header.BodyLength).ToArray()).ToArray();
        Assert.Equal(bytes, Jt808Framing.Encode(again));

        // Any prefix waits for more.
        for (var cut = 0; cut < bytes.Length; cut++)
        {
            Assert.Equal(Jt808ReadStatus.NeedMore, Jt808Framing.TryRead(bytes.AsSpan(0, cut), message, out _, out _, out _));
        }
    }

    [Fact]
    public void SubPackageFields_AreRead()
    {
        var bytes = Convert.FromHexString("7E0801200500123456789002DE001A00022808000102537E");
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Jt808Framing.TryRead(bytes, message, out var length, out _, out _);
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out _));
        Assert.True(header!.IsSubpackage);
        Assert.Equal(((ushort?)26, (ushort?)2, (ushort)0x02DE), (header.PackageCount, header.PackageNumber, header.Serial));
    }

    [Fact]
    public void VersionFlagSet_WithA2013Header_IsReadByItsLength()
    {
        // A heartbeat whose properties set bit 14 but whose header is 2013's 12 bytes, as real terminals send.
        var header = new Jt808Header(0x0002, 0x4000, null, "013912345678", 7, null, null);
        var frame = Jt808Framing.Encode(header.Encode(0));
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(frame, message, out var length, out _, out _));
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var read, out _));
        Assert.True(read!.VersionFlag);
        Assert.False(read.Is2019Layout);
        Assert.Equal("013912345678", read.Phone);
    }

    [Fact]
    public void Escapes_RoundTrip()
    {
        var header = new Jt808Header(0x0200, 0, null, "013912345678", 0x7E7D, null, null);
        byte[] body = [0x7E, 0x7D, 0x01, 0x02, 0x7E];
        var frame = Jt808Framing.Encode(header.Encode(body.Length).Concat(body).ToArray());
        Assert.Equal(2, frame.Count(b => b == 0x7E));
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(frame, message, out var length, out _, out _));
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var read, out _));
        Assert.Equal(0x7E7D, read!.Serial);
        Assert.Equal(body, message.AsSpan(12, 5).ToArray());
    }

    [Theory]
    // The check code's last byte changed (go-jt808's negative case).
    [InlineData("7E0801200500123456789002DE001A00022808000102547E", Jt808FrameError.CheckCodeMismatch, 23)]
    [InlineData("0001027e", Jt808FrameError.NotAFrameStart, 3)]
    [InlineData("7e01017e", Jt808FrameError.TooShort, 3)]
    [InlineData("7e00027d037e", Jt808FrameError.BadEscape, 5)]
    [InlineData("7e00027d7e", Jt808FrameError.BadEscape, 4)]
    public void BadFrames_AreSkipped_WithTheReason(string hex, Jt808FrameError expected, int skipped)
    {
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Invalid, Jt808Framing.TryRead(Convert.FromHexString(hex), message, out _, out var consumed, out var error));
        Assert.Equal(expected, error);
        Assert.Equal(skipped, consumed);
    }

    [Theory]
    // go-jt808's negative cases: a body shorter than the properties say, and a header cut short.
    [InlineData("0801200500123456789002DE001A000228080001", "leaves 15 bytes of header")]
    [InlineData("0100002c0123454a", "at least 12 bytes")]
    [InlineData("0002000001234567890A0000", "not BCD")]
    [InlineData("0801200000123456789002DE00000001", "Sub-package 1 of 0")]
    [InlineData("0801200000123456789002DE00020003", "Sub-package 3 of 2")]
    public void BadHeaders_AreRefused(string hex, string expected)
    {
        Assert.False(Jt808Header.TryRead(Convert.FromHexString(hex), out var header, out var error));
        Assert.Null(header);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void NoClosingFlag_WithinTheLimit_IsRefusedAsTooLong()
    {
        var bytes = new byte[(2 * Jt808Framing.MaxUnescapedLength) + 10];
        bytes[0] = 0x7E;
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Invalid, Jt808Framing.TryRead(bytes, message, out _, out var consumed, out var error));
        Assert.Equal(Jt808FrameError.TooLong, error);
        Assert.Equal(1, consumed);
    }

    [Fact]
    public void RandomBytes_NeverThrow_AndAlwaysMoveOn()
    {
        var random = new Random(808);
        var buffer = new byte[120];
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        for (var round = 0; round < 20_000; round++)
        {
            random.NextBytes(buffer);
            var length = random.Next(buffer.Length);
            if (length > 2)
            {
                buffer[0] = 0x7E;
                buffer[random.Next(1, length)] = 0x7E;
            }

            var span = buffer.AsSpan(0, length);
            var status = Jt808Framing.TryRead(span, message, out var read, out var consumed, out _);
            Assert.InRange(consumed, 0, length);
            if (status == Jt808ReadStatus.Invalid)
            {
                Assert.True(consumed > 0);
            }
            else if (status == Jt808ReadStatus.Frame)
            {
                Jt808Header.TryRead(message.AsSpan(0, read), out _, out _);
            }
        }
    }
}
