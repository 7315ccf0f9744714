using Taihu.Protocols.Hj212;

namespace Taihu.Protocols.Tests;

/// <summary>HJ 212 data segments and the data commands' CP, with hostile input.</summary>
public sealed class Hj212MessageTests
{
    [Fact]
    public void DataSegment_FieldsAndCp()
    {
        Assert.True(Hj212Message.TryParse(
            "QN=20190814170100001;ST=22;CN=2011;PW=123456;MN=2019031801100018;Flag=5;CP=&&DataTime=20190814170100;a01007-Rtd=1.7,a01007-Flag=N&&",
            out var message, out var error), error);
        Assert.Equal(new Hj212Message("20190814170100001", "22", "2011", "123456", "2019031801100018", 5, null, null,
            "DataTime=20190814170100;a01007-Rtd=1.7,a01007-Flag=N"), message);
        Assert.True(message!.AnswerRequested);
        Assert.False(message.IsSplit);
        Assert.Equal(1, message.Edition);
    }

    [Fact]
    public void Edition2005_WithoutQnOrFlag_IsRead()
    {
        Assert.True(Hj212Message.TryParse("ST=22;CN=2011;PW=123456;MN=8888888826462285;CP=&&DataTime=20211006030527;TEMP-Rtd=22.0;&&", out var message, out _));
        Assert.Null(message!.Qn);
        Assert.Equal(0, message.Edition);
        Assert.False(message.AnswerRequested);
    }

    [Fact]
    public void SplitPacket_CarriesPnumAndPno()
    {
        Assert.True(Hj212Message.TryParse("QN=20240101000000000;ST=22;CN=2011;PW=1;MN=A;Flag=7;PNUM=3;PNO=2;CP=&&a1-Rtd=1&&", out var message, out _));
        Assert.True(message!.IsSplit);
        Assert.Equal((3, 2), (message.PacketCount, message.PacketNumber));
    }

    [Theory]
    [InlineData("QN=1;ST=22;CN=2011", "no CP=&&")]
    [InlineData("QN=1;CP=&&a=1", "not closed with &&")]
    [InlineData("QN=1;CP=&&&", "not closed with &&")]
    [InlineData("QN=1;garbage;CP=&&&&", "'garbage' has no name=value")]
    [InlineData("Flag=x;CP=&&&&", "Flag must be a number")]
    [InlineData("Flag=256;CP=&&&&", "Flag must be a number")]
    [InlineData("Flag=1234;CP=&&&&", "Flag must be a number")]
    [InlineData("PNUM=0;CP=&&&&", "PNUM must be")]
    [InlineData("PNUM=2;PNO=3;CP=&&&&", "PNO 3 is past PNUM 2")]
    [InlineData("PNO=-1;CP=&&&&", "PNO must be")]
    [InlineData("MN=0123456789012345678901234567;CP=&&&&", "MN may have at most 27 characters; got 28")]
    [InlineData("QN=012345678901234567890;CP=&&&&", "QN may have at most 20")]
    [InlineData("PW=0123456789;CP=&&&&", "PW may have at most 9")]
    public void BadSegments_AreRefused_NamingTheField(string segment, string expected)
    {
        Assert.False(Hj212Message.TryParse(segment, out var message, out var error));
        Assert.Null(message);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Format_RoundTrips()
    {
        const string Segment = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
        Assert.True(Hj212Message.TryParse(Segment, out var message, out _));
        Assert.Equal(Segment, message!.Format());
    }

    [Fact]
    public void DataAnswer_IsCn9014_WithTheUploadsQn()
    {
        Assert.True(Hj212Message.TryParse("QN=20190814170100001;ST=22;CN=2011;PW=123456;MN=2019031801100018;Flag=5;CP=&&DataTime=20190814170100&&", out var upload, out _));
        Assert.Equal("QN=20190814170100001;ST=91;CN=9014;PW=123456;MN=2019031801100018;Flag=4;CP=&&&&", Hj212Replies.DataAnswer(upload!).Format());
        Assert.Equal("QN=20190814170100001;ST=91;CN=9011;PW=123456;MN=2019031801100018;Flag=4;CP=&&QnRtn=1&&", Hj212Replies.RequestAnswer(upload!, 1).Format());
        Assert.Equal("QN=20190814170100001;ST=91;CN=9012;PW=123456;MN=2019031801100018;Flag=4;CP=&&ExeRtn=1&&", Hj212Replies.Result(upload!, 1).Format());
    }

    [Theory]
    [InlineData("QN=20190814170100001;ST=22;CN=2011;PW=123456;MN=2019031801100018;Flag=5;CP=&&DataTime=20190814170100&&")]
    [InlineData("ST=32;CN=2051;PW=123456;MN=88888880000001;Flag=1;CP=&&DataTime=20040516020111;w01018-Avg=1.1&&")]
    [InlineData("QN=;CN=2051;MN=88888880000001;CP=&&DataTime=20040516020111&&")]
    [InlineData("QN=1;QN=20260101000000000;CN=2061;PW=;MN=1;Flag=255;CP=&&&&")]
    public void DataAnswer_WrittenInPlace_IsTheSameAsTheFormattedOne(string upload)
    {
        Assert.True(Hj212Segment.TryParse(upload, out var segment, out var error), error);
        Assert.True(Hj212Message.TryParse(upload, out var message, out _));
        Span<char> text = stackalloc char[Hj212Replies.MaxDataAnswerLength];
        var pw = segment.HasPw ? segment.Pw.ToString() : null;
        Assert.True(Hj212Replies.TryWriteDataAnswer(text, segment.Qn, segment.HasQn, pw, segment.Mn.ToString(), segment.Flag, out var length));
        Assert.Equal(Hj212Replies.DataAnswer(message!).Format(), text[..length].ToString());

        // Too little room is refused, not overrun.
        Assert.False(Hj212Replies.TryWriteDataAnswer(text[..(length - 1)], segment.Qn, segment.HasQn, pw, segment.Mn.ToString(), segment.Flag, out _));
    }

    [Fact]
    public void Segment_ReadInPlace_HasTheMessagesFields()
    {
        const string Upload = "QN=20190814170100001;ST=22;CN=2011;PW=123456;MN=2019031801100018;Flag=7;PNUM=3;PNO=2;CP=&&DataTime=20190814170100&&";
        Assert.True(Hj212Segment.TryParse(Upload, out var segment, out var error), error);
        Assert.Equal(("20190814170100001", "22", "2011", "123456", "2019031801100018"), (segment.Qn.ToString(), segment.St.ToString(), segment.Cn.ToString(), segment.Pw.ToString(), segment.Mn.ToString()));
        Assert.Equal((7, 3, 2, true, true), (segment.Flag, segment.PacketCount, segment.PacketNumber, segment.AnswerRequested, segment.IsSplit));
        Assert.Equal("DataTime=20190814170100", segment.Cp.ToString());
        Assert.True(Hj212Segment.TryParse("CN=2011;CP=&&&&", out segment, out _));
        Assert.Equal((false, false, false, true), (segment.HasQn, segment.HasPw, segment.HasMn, segment.HasCn));
    }

    [Fact]
    public void DataCp_BecomesPointsAtDataTime_InChinaStandardTime()
    {
        var points = new List<Hj212Point>();
        Assert.True(Hj212Data.TryRead("DataTime=20260921201500;a21026-Rtd=12.5,a21026-Flag=N;a34004-Rtd=35,a34004-ZsRtd=40.2,a34004-Flag=N,a34004-SampleTime=20260921201400;w01018-Avg=-1.5e2",
            Hj212Data.ChinaStandardTime, points, out var ts, out var error), error);
        Assert.Equal(new DateTimeOffset(2026, 9, 21, 12, 15, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), ts);
        Assert.Equal(
        [
            new Hj212Point("a21026-Rtd", 12.5, null), new Hj212Point("a21026-Flag", null, "N"), new Hj212Point("a34004-Rtd", 35, null),
            new Hj212Point("a34004-ZsRtd", 40.2, null), new Hj212Point("a34004-Flag", null, "N"), new Hj212Point("a34004-SampleTime", null, "20260921201400"),
            new Hj212Point("w01018-Avg", -150, null),
        ], points);
    }

    [Fact]
    public void DataCp_OtherZone_AndTextThatIsNotANumber()
    {
        var points = new List<Hj212Point>();
        Assert.True(Hj212Data.TryRead("DataTime=20240101000000;a1-Rtd=NaN;a3-Rtd=;a4-Rtd=1e400", TimeSpan.Zero, points, out var ts, out _));
        Assert.Equal(new DateTimeOffset(2024, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), ts);
        // Not finite numbers, or none at all: kept as the text that came.
        Assert.Equal([new Hj212Point("a1-Rtd", null, "NaN"), new Hj212Point("a3-Rtd", null, ""), new Hj212Point("a4-Rtd", null, "1e400")], points);
    }

    [Theory]
    [InlineData("a1-Rtd=1", "no DataTime")]
    [InlineData("DataTime=2024010100000;a1-Rtd=1", "DataTime must be yyyyMMddHHmmss")]
    [InlineData("DataTime=20241301000000", "DataTime must be yyyyMMddHHmmss")]
    [InlineData("DataTime=2024010100000x", "DataTime must be yyyyMMddHHmmss")]
    [InlineData("DataTime=20240101000000;a1-Rtd", "'a1-Rtd' has no name=value")]
    [InlineData("DataTime=20240101000000;=1", "'=1' has no name=value")]
    [InlineData("DataTime=20240101000000;a2-Rtd=1,5", "'5' has no name=value")]
    public void BadDataCp_IsRefused_WithTheItem(string cp, string expected)
    {
        Assert.False(Hj212Data.TryRead(cp, Hj212Data.ChinaStandardTime, [], out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void RandomText_NeverThrows()
    {
        var random = new Random(2017);
        const string Alphabet = "QNSTCPWMFlag=;,&-0123456789aRtd.DataTime";
        var text = new char[200];
        for (var round = 0; round < 20_000; round++)
        {
            var length = random.Next(text.Length);
            for (var i = 0; i < length; i++)
            {
                text[i] = Alphabet[random.Next(Alphabet.Length)];
            }

            var segment = new string(text, 0, length);
            if (Hj212Message.TryParse(segment, out var message, out _))
            {
                Hj212Data.TryRead(message!.Cp, Hj212Data.ChinaStandardTime, [], out _, out _);
                Assert.True(Hj212Message.TryParse(message.Format(), out var again, out _));
                Assert.Equal(message.Cp, again!.Cp);
            }

            Hj212Data.TryRead(segment, Hj212Data.ChinaStandardTime, [], out _, out _);
        }
    }

    [Fact]
    public void NameCache_GivesTheSameStrings_ForWhatEveryFrameRepeats()
    {
        var names = new Hj212NameCache();
        const string Segment = "QN=20190814170100001;ST=22;CN=2011;PW=123456;MN=2019031801100018;Flag=5;CP=&&DataTime=20190814170100;a01007-Rtd=1.7,a01007-Flag=N&&";
        Assert.True(Hj212Message.TryParse(Segment, names, out var first, out _));
        Assert.True(Hj212Message.TryParse(Segment, names, out var second, out _));
        Assert.Equal(first, second);
        Assert.Same(first!.Mn, second!.Mn);
        Assert.Same(first.Pw, second.Pw);
        Assert.NotSame(first.Qn, second.Qn);

        List<Hj212Point> a = [], b = [];
        Assert.True(Hj212Data.TryRead(first.Cp, Hj212Data.ChinaStandardTime, a, names, out var ts, out _));
        Assert.True(Hj212Data.TryRead(second.Cp, Hj212Data.ChinaStandardTime, b, names, out _, out _));
        Assert.Equal(a, b);
        Assert.Equal(new DateTimeOffset(2019, 8, 14, 17, 1, 0, TimeSpan.FromHours(8)).ToUnixTimeMilliseconds(), ts);
        Assert.Same(a[0].Key, b[0].Key);
        Assert.Same(a[1].Text, b[1].Text);
    }

    [Fact]
    public void NameCache_StopsKeepingAtItsCapacity_AndStillAnswers()
    {
        var names = new Hj212NameCache { Capacity = 2 };
        Assert.Equal("a", names.Get("a"));
        Assert.Equal("b", names.Get("b"));
        Assert.Equal("c", names.Get("c"));
        Assert.Equal(2, names.Count);
        Assert.Same(names.Get("a"), names.Get("a".AsSpan()));
    }

    [Fact]
    public void WithoutCopyingCp_TheCpIsWhereTheRangeSays_AndReadsAsTheCopyDoes()
    {
        const string Segment = "QN=20190814170100001;ST=22;CN=2051;PW=123456;MN=2019031801100018;Flag=5;CP=&&DataTime=20190814170100;a01007-Avg=1.7,a01007-Flag=N&&";
        Assert.True(Hj212Message.TryParse(Segment, null, copyCp: false, out var inPlace, out var cp, out _));
        Assert.True(Hj212Message.TryParse(Segment, out var copied, out _));
        Assert.Equal("", inPlace!.Cp);
        Assert.Equal(copied!.Cp, Segment[cp]);
        Assert.Equal(copied, inPlace with { Cp = copied.Cp });

        List<Hj212Point> fromSpan = [], fromString = [];
        Assert.True(Hj212Data.TryRead(Segment.AsSpan()[cp], Hj212Data.ChinaStandardTime, fromSpan, null, out var a, out _));
        Assert.True(Hj212Data.TryRead(copied.Cp, Hj212Data.ChinaStandardTime, fromString, out var b, out _));
        Assert.Equal(fromString, fromSpan);
        Assert.Equal(b, a);
    }
}
