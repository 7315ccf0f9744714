using System.Text;
using Taihu.Protocols.Hj212;

namespace Taihu.Protocols.Tests;

/// <summary>HJ 212 frames: the standard's example, frames stations sent, and every way a frame can be wrong.</summary>
public sealed class Hj212FramingTests
{
    /// <summary>Where each frame comes from, with its check as the sender wrote it.</summary>
    public static TheoryData<string, string> RealFrames => new()
    {
        // HJ 212-2017's own example (set the real-time upload interval, CN 1062).
        { "standard example 1062", "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n" },
        // The README of liruoyu2008/HJ212Interpreter (C#): real-time water data with a sample time.
        { "HJ212Interpreter README 2011", "##0162QN=20231008123340461;ST=22;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20231008123340;w01008-SampleTime=20231008123340,w01008-Rtd=123.456&&F441\r\n" },
        // A noise monitor's log printed on GitHub: empty MN, data flag B, no line end in the log.
        { "noise monitor log 2011", "##0116QN=20220814021304000;ST=22;CN=2011;PW=123456;MN=;Flag=5;CP=&&DataTime=20220814021304;a50001-Rtd=0.00,a50001-Flag=B&&06C0" },
        // A Java parser's example: a weather station's real-time data, six factors with flags.
        { "weather station 2011", "##0275QN=20190814170100001;ST=22;CN=2011;PW=123456;MN=2019031801100018;Flag=5;CP=&&DataTime=20190814170100;a01007-Rtd=1.7,a01007-Flag=N;a01008-Rtd=199.1,a01008-Flag=N;a01001-Rtd=22.9,a01001-Flag=N;a01002-Rtd=85.8,a01002-Flag=N;a01006-Rtd=98.7,a01006-Flag=N;R01-Rtd=0.0,R01-Flag=N&&9301\r\n" },
    };

    [Theory]
    [MemberData(nameof(RealFrames))]
    public void RealFrames_AreRead_WholeAndInEveryPiece(string source, string frame)
    {
        var bytes = Encoding.ASCII.GetBytes(frame);
        var status = Hj212Framing.TryRead(bytes, Hj212Framing.StandardMaxDataLength, Hj212CrcKind.Standard, out var segment, out var consumed, out var error);
        Assert.True(status == Hj212ReadStatus.Frame, $"{source}: {status} {error}");
        Assert.Equal(bytes.Length, consumed);
        var length = int.Parse(frame.AsSpan(2, 4), System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(frame.Substring(6, length), Encoding.ASCII.GetString(bytes[segment]));

        // Any prefix is not yet a frame, and nothing of it is consumed.
        for (var cut = 0; cut < 6 + length + 4; cut++)
        {
            Assert.Equal(Hj212ReadStatus.NeedMore, Hj212Framing.TryRead(bytes.AsSpan(0, cut), 1024, Hj212CrcKind.Standard, out _, out var taken, out _));
            Assert.Equal(0, taken);
        }
    }

    [Fact]
    public void Check_InEitherLetterCase_AndWithoutLineEnd()
    {
        var upper = "##0116QN=20220814021304000;ST=22;CN=2011;PW=123456;MN=;Flag=5;CP=&&DataTime=20220814021304;a50001-Rtd=0.00,a50001-Flag=B&&06C0";
        var lower = upper.Replace("&&06C0", "&&06c0", StringComparison.Ordinal);
        foreach (var frame in new[] { upper, lower, upper + "\r\n", upper + "\n" })
        {
            var bytes = Encoding.ASCII.GetBytes(frame);
            Assert.Equal(Hj212ReadStatus.Frame, Hj212Framing.TryRead(bytes, 1024, Hj212CrcKind.Standard, out _, out var consumed, out _));
            Assert.Equal(bytes.Length, consumed);
        }
    }

    [Fact]
    public void Encode_WritesTheStandardsExample()
    {
        var frame = Hj212Framing.Encode("QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&");
        Assert.Equal("##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n", Encoding.ASCII.GetString(frame));
    }

    [Fact]
    public void ModbusCheck_IsAcceptedOnlyWhenAskedFor()
    {
        const string Segment = "QN=20231008123340461;ST=22;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20231008123340;w01008-Rtd=1.5&&";
        var frame = Hj212Framing.Encode(Segment, Hj212CrcKind.Modbus);
        Assert.Equal(Hj212ReadStatus.Invalid, Hj212Framing.TryRead(frame, 1024, Hj212CrcKind.Standard, out _, out _, out var error));
        Assert.Equal(Hj212FrameError.CrcMismatch, error);
        Assert.Equal(Hj212ReadStatus.Frame, Hj212Framing.TryRead(frame, 1024, Hj212CrcKind.Modbus, out _, out _, out _));
        Assert.NotEqual(Hj212Crc.Compute(Encoding.ASCII.GetBytes(Segment)), Hj212Crc.Compute(Encoding.ASCII.GetBytes(Segment), Hj212CrcKind.Modbus));
    }

    [Theory]
    [InlineData("xx##0005", Hj212FrameError.NotAFrameStart, 2)]
    [InlineData("garbage without a start", Hj212FrameError.NotAFrameStart, 23)]
    [InlineData("abc#", Hj212FrameError.NotAFrameStart, 3)] // the last '#' may begin a frame
    [InlineData("##00a5QN=1", Hj212FrameError.BadLength, 2)]
    [InlineData("##-005QN=1", Hj212FrameError.BadLength, 2)]
    [InlineData("## 005QN=1", Hj212FrameError.BadLength, 2)]
    [InlineData("##1025", Hj212FrameError.TooLong, 2)]
    [InlineData("##9999", Hj212FrameError.TooLong, 2)]
    [InlineData("##0003abcXYZ1", Hj212FrameError.BadCrcText, 2)]
    [InlineData("##0003abc0000", Hj212FrameError.CrcMismatch, 2)]
    [InlineData("\r\n\r\n##0003abc0000", Hj212FrameError.CrcMismatch, 6)]
    public void BadBytes_AreSkippedToTheNextStart_WithTheReason(string input, Hj212FrameError expected, int skipped)
    {
        var status = Hj212Framing.TryRead(Encoding.ASCII.GetBytes(input), 1024, Hj212CrcKind.Standard, out _, out var consumed, out var error);
        Assert.Equal(Hj212ReadStatus.Invalid, status);
        Assert.Equal(expected, error);
        Assert.Equal(skipped, consumed);
    }

    [Fact]
    public void AFrameAfterGarbageAndABrokenFrame_IsStillFound()
    {
        var good = Hj212Framing.Encode("QN=1;ST=22;CN=2011;PW=1;MN=A;Flag=4;CP=&&DataTime=20240101000000;a1-Rtd=1&&");
        var stream = Encoding.ASCII.GetBytes("noise##0003abc0000\r\n").Concat(good).ToArray();
        var errors = new List<Hj212FrameError>();
        var at = 0;
        while (true)
        {
            var status = Hj212Framing.TryRead(stream.AsSpan(at), 1024, Hj212CrcKind.Standard, out var segment, out var consumed, out var error);
            if (status == Hj212ReadStatus.Frame)
            {
                Assert.StartsWith("QN=1;", Encoding.ASCII.GetString(stream.AsSpan(at)[segment]), StringComparison.Ordinal);
                at += consumed;
                break;
            }

            Assert.Equal(Hj212ReadStatus.Invalid, status);
            errors.Add(error);
            at += consumed;
        }

        Assert.Equal(stream.Length, at);
        // The broken frame's "##" is skipped, then its text up to the good frame.
        Assert.Equal([Hj212FrameError.NotAFrameStart, Hj212FrameError.CrcMismatch, Hj212FrameError.NotAFrameStart], errors);
    }

    [Fact]
    public void RandomBytes_NeverThrow_AndAlwaysMoveOn()
    {
        var random = new Random(212);
        var buffer = new byte[300];
        for (var round = 0; round < 20_000; round++)
        {
            random.NextBytes(buffer);
            var length = random.Next(buffer.Length);
            // Often a plausible start, so the later checks are reached too.
            if (length > 6 && random.Next(2) == 0)
            {
                "##00"u8.CopyTo(buffer);
                buffer[4] = (byte)('0' + random.Next(10));
                buffer[5] = (byte)('0' + random.Next(10));
            }

            var span = buffer.AsSpan(0, length);
            var status = Hj212Framing.TryRead(span, 1024, Hj212CrcKind.Standard, out var segment, out var consumed, out _);
            Assert.InRange(consumed, 0, length);
            if (status == Hj212ReadStatus.Invalid)
            {
                Assert.True(consumed > 0, "An invalid start is always skipped.");
            }
            else if (status == Hj212ReadStatus.Frame)
            {
                Assert.InRange(segment.End.Value, 0, length);
            }
        }
    }

    [Theory]
    [InlineData(Hj212CrcKind.Standard)]
    [InlineData(Hj212CrcKind.Modbus)]
    public void Write_IntoABufferWriter_IsEncodeByteForByte_AndReadsBack(Hj212CrcKind kind)
    {
        const string Segment = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
        var output = new System.Buffers.ArrayBufferWriter<byte>();
        Hj212Framing.Write(output, Segment, kind);
        Assert.Equal(Hj212Framing.Encode(Segment, kind), output.WrittenSpan.ToArray());
        Assert.Equal(Hj212ReadStatus.Frame, Hj212Framing.TryRead(output.WrittenSpan, 1024, kind, out _, out var consumed, out _));
        Assert.Equal(output.WrittenCount, consumed);
    }
}
