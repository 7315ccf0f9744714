using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Taihu.Protocols.Jt808;

namespace Taihu.Protocols.Tests;

/// <summary>
/// JT/T 808 message bodies on published frames: each frame is from cuteLittleDevil/go-jt808's tests
/// (protocol/model/parse_test.go and t_0x0200_addition_test.go; the case name is given), decoded with the framing
/// and header codec first, so escapes and check codes are exercised too.
/// </summary>
public sealed class Jt808MessageTests
{
    private static (Jt808Header Header, byte[] Body) Read(string hex)
    {
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(Convert.FromHexString(hex), message, out var length, out _, out var error));
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out var headerError), headerError);
        return (header!, message.AsSpan(header!.Length, header.BodyLength).ToArray());
    }

    [Theory]
    // "T0x0100 终端注册 2011版本", "... 2013版本", "... 2019版本"
    [InlineData("7e010000200123456789010000001f007363640000007777772e3830382e3736353433323101b2e24131323334a17e", Jt808Version.V2011, "www.808.")]
    [InlineData("7e0100002c0123456789010000001f007363640000007777772e3830382e636f6d0000000000000000003736353433323101b2e24131323334cc7e", Jt808Version.V2013, "www.808.com")]
    [InlineData("7e0100405301000000000172998417380000001f007363640000000000000000007777772e3830382e636f6d0000000000000000000000000000000000000037363534333231000000000000000000000000000000000000000000000001b2e241313233343b7e", Jt808Version.V2019, "www.808.com")]
    public void Registration_IsReadInEachEdition_WithItsGbkPlate(string hex, Jt808Version version, string model)
    {
        var (header, body) = Read(hex);
        var guessed = Jt808Registration.Guess(header.Is2019Layout || header.VersionFlag, body.Length);
        Assert.Equal(version, guessed);
        Assert.True(Jt808Registration.TryRead(body, guessed, out var registration, out var error), error);
        Assert.Equal(new Jt808Registration(31, 115, "cd", model, "7654321", 1, "测A1234", version), registration);
    }

    [Fact]
    public void Registration_TooShortForItsEdition_IsRefused()
    {
        Assert.False(Jt808Registration.TryRead(new byte[36], Jt808Version.V2013, out _, out var error));
        Assert.Contains("at least 37 bytes", error, StringComparison.Ordinal);
    }

    [Theory]
    // "T0x0102 注册-鉴权 2013版本" and "... 2019版本"
    [InlineData("7e0102000b01234567890100003137323939383431373338b57e", null, null)]
    [InlineData("7e0102402f010000000001729984173800000b3137323939383431373338313233343536373839303132333435332e372e31350000000000000000000000000000227e", "123456789012345", "3.7.15")]
    public void Authentication_IsReadInBothLayouts(string hex, string? imei, string? software)
    {
        var (_, body) = Read(hex);
        Assert.True(Jt808Authentication.TryRead(body, out var authentication, out _));
        Assert.Equal(new Jt808Authentication("17299841738", imei, software), authentication);
    }

    [Fact]
    public void Location_WithEveryKnownExtra_IsRead()
    {
        // "包含全部已知附加信息的"
        var (_, body) = Read("7e020000800123456789017fff000004000000080006eeb6ad02633df701380003006320070719235901040000000b02020016030200210402002c051e3737370000000000000000000000000000000000000000000000000000001105420000004212064d0000004d4d1307000000580058582504000000632a02000a2b040000001430011e31012806020001927e");
        Assert.Equal(Jt808LocationError.None, Jt808Location.TryRead(body, out var l));
        Assert.Equal((1024u, 2048u, 116.307629, 40.058359, (ushort)312, (ushort)3, (ushort)99), (l.Alarm, l.Status, l.Latitude, l.Longitude, l.Altitude, l.Speed, l.Direction));
        Assert.Equal(new DateTimeOffset(2020, 7, 7, 11, 23, 59, TimeSpan.Zero).ToUnixTimeMilliseconds(), l.TimeMs);
        Assert.Equal((11u, (ushort)22, (ushort)33, (ushort)44, (short)1), (l.Mileage, l.Fuel, l.RecordedSpeed, l.AlarmEventId, l.CarriageTemperature));
        Assert.Equal(((byte)0x42, 0x42u), (l.OverspeedLocationType, l.OverspeedAreaId));
        Assert.Equal(((byte)0x4d, 0x4du, (byte)0x4d), (l.AreaLocationType, l.AreaId, l.AreaDirection));
        Assert.Equal((0x58u, (ushort)0x58, (byte)0x58), (l.RouteId, l.RouteDriveTime, l.RouteResult));
        Assert.Equal((99u, (ushort)10, (ushort)20, (ushort)0, (byte)30, (byte)40), (l.VehicleSignal, l.IoStatus, l.Analog0, l.Analog1, l.SignalStrength, l.Satellites));
        // The tyre pressures (0x05, 30 bytes) are not read.
        Assert.Equal(1, l.UnknownExtras);
    }

    [Theory]
    [InlineData("7e0100405301000000000172998417380000001f007363640000000000000000007777772e3830382e636f6d0000000000000000000000000000000000000037363534333231000000000000000000000000000000000000000000000001b2e241313233343b7e")]
    [InlineData("7E0801200500123456789002DE001A00022808000102537E")]
    [InlineData("7e0200001c0123456789010000000004000000080007203b7d0202633df70138000300632410012359591c7e")]
    public void HeaderFields_ReadInPlace_AgreeWithTheHeader(string hex)
    {
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Jt808Framing.TryRead(Convert.FromHexString(hex), message, out var length, out _, out _);
        var span = message.AsSpan(0, length);
        Assert.Equal(Jt808HeaderError.None, Jt808HeaderFields.TryRead(span, out var fields));
        Assert.True(Jt808Header.TryRead(span, out var header, out _));
        Assert.Equal((header!.MessageId, header.Properties, header.ProtocolVersion, header.Serial, header.PackageCount, header.PackageNumber, header.Length),
            (fields.MessageId, fields.Properties, fields.ProtocolVersion, fields.Serial, fields.PackageCount, fields.PackageNumber, fields.Length));
        Assert.Equal(header.Phone, Jt808Header.PhoneDigits(fields.Phone(span)));
    }

    [Fact]
    public void Location_SouthAndWest_ComeFromTheStatusBits()
    {
        var (_, body) = Read("7e0200001c0123456789010000000004000000080007203b7d0202633df70138000300632410012359591c7e");
        body[7] |= 0x0C;
        Assert.Equal(Jt808LocationError.None, Jt808Location.TryRead(body, out var l));
        Assert.Equal((-119.552894, -40.058359), (l.Latitude, l.Longitude));
    }

    [Fact]
    public void Location_WithAKnownItemOfTheWrongLength_SkipsThatItem()
    {
        // go-jt808's "错误的数据 和协议规定的长度不符合": item 0x11 with length 0. go-jt808 refuses the report; Taihu keeps
        // the rest of it and counts the item as unknown (with the tyre pressures and the vendor item 0x33).
        var (_, body) = Read("7E0200007A0123456789017FFF000004000000080006EEB6AD02633DF701380003006320070719235901040000000B02020016030200210402002C051E373737000000000000000000000000000000000000000000000000000000110012064D0000004D4D1307000000580058582504000000632A02000A2B040000001430011E3101283301207A7E");
        Assert.Equal(Jt808LocationError.None, Jt808Location.TryRead(body, out var l));
        Assert.Equal((3, (byte?)null, (byte)40), (l.UnknownExtras, l.OverspeedLocationType, l.Satellites));
    }

    [Theory]
    // go-jt808's negative case "错误的数据 body达不到数据预期长度": the last item's length runs past the end.
    [InlineData("7E0200007F0123456789017FFF000004000000080006EEB6AD02633DF701380003006320070719235901040000000B02020016030200210402002C051E3737370000000000000000000000000000000000000000000000000000001105420000004212064D0000004D4D1307000000580058582504000000632A02000A2B040000001430011E310128330301597E", Jt808LocationError.BadExtra)]
    public void Location_WithBrokenExtras_IsRefused(string hex, Jt808LocationError expected)
    {
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        var status = Jt808Framing.TryRead(Convert.FromHexString(hex), message, out var length, out _, out _);
        // Some of these frames also carry a check code that no longer matches; the body is judged all the same.
        Assert.True(status == Jt808ReadStatus.Frame || length > 0);
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out _));
        Assert.Equal(expected, Jt808Location.TryRead(message.AsSpan(header!.Length, header.BodyLength), out _));
    }

    [Theory]
    [InlineData("000000000000", true, 0L)]
    [InlineData("241001235959", true, 1727798399000L)]
    [InlineData("240230120000", false, 0L)]
    [InlineData("230229120000", false, 0L)]
    [InlineData("241301000000", false, 0L)]
    [InlineData("2410012360AA", false, 0L)]
    public void Time_IsBcdInGmtPlus8(string bcd, bool valid, long expected)
    {
        Assert.Equal(valid, Jt808Location.TryReadTime(Convert.FromHexString(bcd), out var ms));
        Assert.Equal(expected, ms);
    }

    [Fact]
    public void Location_ShorterThanItsFields_IsRefused() =>
        Assert.Equal(Jt808LocationError.TooShort, Jt808Location.TryRead(new byte[27], out _));

    [Fact]
    public void Replies_AreWrittenByteForByte_AsPublished()
    {
        // "P0x8001 平台-通用应答" (serial 0, answering serial 32767, id 2, result 0) and "P0x8100 终端-注册消息应答".
        var (terminal, _) = Read("7e0002000001234567890100008a7e");
        var form = new Jt808HeaderForm(terminal);
        var output = new ArrayBufferWriter<byte>();
        var body = new byte[64];
        var n = new Jt808GeneralReply(32767, 2, 0).Write(body);
        Jt808Writer.WriteFrame(output, form, Jt808MessageIds.PlatformReply, 0, body.AsSpan(0, n));
        Assert.Equal("7e8001000501234567890100007fff0002008e7e", Convert.ToHexStringLower(output.WrittenSpan));

        output.Clear();
        n = Jt808Bodies.RegistrationReply(body, 0, Jt808RegistrationResults.Ok, "12345678901");
        Jt808Writer.WriteFrame(output, form, Jt808MessageIds.RegistrationReply, 0, body.AsSpan(0, n));
        Assert.Equal("7e8100000e01234567890100000000003132333435363738393031377e", Convert.ToHexStringLower(output.WrittenSpan));

        // "T0x0001 终端-通用应答": serial 123 answered, id 456, result 3.
        var (_, reply) = Read("7e000100050123456789017fff007b01c803bd7e");
        Assert.True(Jt808GeneralReply.TryRead(reply, out var general));
        Assert.Equal(new Jt808GeneralReply(123, 456, 3), general);
    }

    [Fact]
    public void Frames_To2019Terminals_UseTheirHeaderForm_AndEscape()
    {
        var (terminal, _) = Read("7e0002400001000000000172998417380000027e");
        var output = new ArrayBufferWriter<byte>();
        Jt808Writer.WriteFrame(output, new Jt808HeaderForm(terminal), Jt808MessageIds.PlatformReply, 0x7E7D, [0x7E, 0x7D, 0x00, 0x02, 0x00]);
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(output.WrittenSpan, message, out var length, out var consumed, out _));
        Assert.Equal(output.WrittenCount, consumed);
        Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out _));
        Assert.Equal((true, true, "00000000017299841738", (ushort)0x7E7D), (header!.Is2019Layout, header.VersionFlag, header.Phone, header.Serial));
        Assert.Equal(new byte[] { 0x7E, 0x7D, 0x00, 0x02, 0x00 }, message.AsSpan(header.Length, 5).ToArray());
    }

    [Fact]
    public void Parameters_ByNameAndById_AreWrittenWithTheirTypes()
    {
        using var json = JsonDocument.Parse("{\"heartbeatInterval\":30,\"0x0029\":10,\"mainServerAddress\":\"iot.example.cn\",\"provinceId\":32,\"plateColor\":2,\"0xF001\":\"x\"}");
        var body = new byte[1023];
        Assert.True(Jt808Parameters.TryWrite(json.RootElement, body, out var n, out var error), error);
        Assert.Equal("06" + "00000001040000001E" + "00000029040000000A" + "000000130E" + Convert.ToHexString("iot.example.cn"u8)
            + "00000081020020" + "000000840102" + "0000F0010178", Convert.ToHexString(body.AsSpan(0, n)));
    }

    [Theory]
    [InlineData("{\"nope\":1}", "Unknown parameter 'nope'")]
    [InlineData("{\"heartbeatInterval\":\"30\"}", "whole number")]
    [InlineData("{\"plateColor\":256}", "from 0 to 255")]
    [InlineData("{\"apn\":5}", "is text")]
    [InlineData("{}", "at least one")]
    [InlineData("[1]", "object of parameters")]
    public void Parameters_ThatCannotBeWritten_SayWhy(string text, string expected)
    {
        using var json = JsonDocument.Parse(text);
        Assert.False(Jt808Parameters.TryWrite(json.RootElement, new byte[1023], out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void TextMessage_Has2019sTextType_AndGbkText()
    {
        var body = new byte[1023];
        Assert.True(Jt808Bodies.TryTextMessage(body, Jt808Version.V2013, 0x0C, 1, "前方拥堵", out var n));
        Assert.Equal("0C" + "C7B0B7BDD3B5B6C2", Convert.ToHexString(body.AsSpan(0, n)));
        Assert.True(Jt808Bodies.TryTextMessage(body, Jt808Version.V2019, 0x0C, 2, "ok", out n));
        Assert.Equal("0C026F6B", Convert.ToHexString(body.AsSpan(0, n)));
        Assert.False(Jt808Bodies.TryTextMessage(body, Jt808Version.V2013, 0, 1, new string('x', 1023), out _));
    }

    [Fact]
    public void SubPackages_InAnyOrder_MakeTheWholeBody_AndLimitsHold()
    {
        var time = new FakeTimeProvider();
        var reassembly = new Jt808Reassembly(time) { MaxPending = 1, MaxPackages = 3, Timeout = TimeSpan.FromMinutes(1) };
        Jt808Header Package(ushort serial, ushort count, ushort number) => new(0x0801, 0x2000, null, "013912345678", serial, count, number);

        Assert.Equal(Jt808PackageOutcome.Waiting, reassembly.Add(Package(12, 3, 3), [5, 6], out _, out _));
        Assert.Equal(Jt808PackageOutcome.Waiting, reassembly.Add(Package(10, 3, 1), [1, 2], out _, out _));
        Assert.Equal(Jt808PackageOutcome.Waiting, reassembly.Add(Package(10, 3, 1), [9, 9], out _, out _));
        Assert.Equal(Jt808PackageOutcome.Refused, reassembly.Add(Package(40, 2, 1), [1], out _, out var reason));
        Assert.Contains("More than 1", reason, StringComparison.Ordinal);
        Assert.Equal(Jt808PackageOutcome.Whole, reassembly.Add(Package(11, 3, 2), [3, 4], out var whole, out _));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6 }, whole);
        Assert.Equal(0, reassembly.PendingCount);

        Assert.Equal(Jt808PackageOutcome.Refused, reassembly.Add(Package(50, 4, 1), [1], out _, out reason));
        Assert.Contains("4 packages", reason, StringComparison.Ordinal);

        Assert.Equal(Jt808PackageOutcome.Waiting, reassembly.Add(Package(60, 2, 1), [1], out _, out _));
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(Jt808PackageOutcome.Waiting, reassembly.Add(Package(71, 2, 2), [2], out _, out _));
        Assert.Equal(1, reassembly.Expired);
    }

    /// <summary>
    /// A stream of frames (a registration, a location with escapes, a heartbeat) split into two TCP reads at every
    /// byte position, read the way the listener reads (keep what was not consumed, append the next read): the same
    /// frames come out every time.
    /// </summary>
    [Fact]
    public void FramesSplitAtEveryBytePosition_AreReadTheSame()
    {
        var stream = Convert.FromHexString(
            "7e0100002c0123456789010000001f007363640000007777772e3830382e636f6d0000000000000000003736353433323101b2e24131323334cc7e"
            + "7e0200001c0123456789010000000004000000080007203b7d0202633df70138000300632410012359591c7e"
            + "7e0002000001234567890100008a7e");
        var expected = new ushort[] { 0x0100, 0x0200, 0x0002 };
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        for (var cut = 0; cut <= stream.Length; cut++)
        {
            var ids = new List<ushort>();
            var pending = new List<byte>();
            foreach (var read in new[] { stream[..cut], stream[cut..] })
            {
                pending.AddRange(read);
                while (true)
                {
                    var buffer = pending.ToArray();
                    var status = Jt808Framing.TryRead(buffer, message, out var length, out var consumed, out var error);
                    pending.RemoveRange(0, consumed);
                    if (status == Jt808ReadStatus.NeedMore)
                    {
                        break;
                    }

                    Assert.True(status == Jt808ReadStatus.Frame, $"cut {cut}: {error}");
                    Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out _));
                    ids.Add(header!.MessageId);
                }
            }

            Assert.Equal(expected, ids);
        }
    }
}
