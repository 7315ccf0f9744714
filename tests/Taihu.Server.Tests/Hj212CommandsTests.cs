using Taihu.Server.Protocols.Hj212;

namespace Taihu.Server.Tests;

/// <summary>RPC methods as HJ 212 commands (CN and CP), in the station's time zone, and the refusals of bad parameters.</summary>
public sealed class Hj212CommandsTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 4, 0, 30, 15, TimeSpan.Zero);
    private static readonly TimeSpan Cst = TimeSpan.FromHours(8);

    [Theory]
    [InlineData("getTime", "{}", "1011", "")]
    [InlineData("getTime", "{\"polId\":\"w01018\"}", "1011", "PolId=w01018")]
    [InlineData("setTime", "{}", "1012", "SystemTime=20261204083015")]
    [InlineData("setTime", "{\"time\":\"20260102030405\",\"polId\":\"a34004\"}", "1012", "PolId=a34004;SystemTime=20260102030405")]
    [InlineData("setTime", "{\"time\":1767294245000}", "1012", "SystemTime=20260102030405")]
    [InlineData("getRealtimeInterval", "", "1061", "")]
    [InlineData("setRealtimeInterval", "{\"seconds\":30}", "1062", "RtdInterval=30")]
    [InlineData("getMinuteInterval", "{}", "1063", "")]
    [InlineData("setMinuteInterval", "{\"minutes\":10}", "1064", "MinInterval=10")]
    [InlineData("getMinuteHistory", "{\"begin\":\"20261201000000\",\"end\":\"20261201010000\"}", "2051", "BeginTime=20261201000000;EndTime=20261201010000")]
    [InlineData("getHourHistory", "{\"begin\":\"20251201000000\",\"end\":1764550800000}", "2061", "BeginTime=20251201000000;EndTime=20251201090000")]
    [InlineData("getDayHistory", "{\"begin\":\"20261101000000\",\"end\":\"20261201000000\"}", "2031", "BeginTime=20261101000000;EndTime=20261201000000")]
    public void Methods_BecomeTheStandardsCommands(string method, string parameters, string cn, string cp)
    {
        Assert.True(Hj212Commands.TryBuild(method, parameters, Cst, Now, out var builtCn, out var builtCp, out var error), error);
        Assert.Equal((cn, cp), (builtCn, builtCp));
    }

    [Theory]
    [InlineData("reboot", "{}", "HJ 212 stations know the methods")]
    [InlineData("setTime", "{\"time\":\"2026-01-02\"}", "yyyyMMddHHmmss")]
    [InlineData("setTime", "not json", "params must be JSON.")]
    [InlineData("getTime", "{\"polId\":\"w01;018\"}", "pollutant code")]
    [InlineData("setRealtimeInterval", "{\"seconds\":29}", "from 30 to 3600")]
    [InlineData("setRealtimeInterval", "{\"seconds\":\"60\"}", "from 30 to 3600")]
    [InlineData("setMinuteInterval", "{}", "from 1 to 60")]
    [InlineData("getMinuteHistory", "{\"begin\":\"20261201000000\"}", "needs \"begin\" and \"end\"")]
    [InlineData("getMinuteHistory", "{\"begin\":\"20261202000000\",\"end\":\"20261201000000\"}", "must not be after")]
    public void BadMethodsAndParameters_AreRefused_InPlainEnglish(string method, string parameters, string expected)
    {
        Assert.False(Hj212Commands.TryBuild(method, parameters, Cst, Now, out _, out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Items_AreFoundInACp()
    {
        Assert.Equal("1", Hj212Commands.Item("QnRtn=1", "QnRtn"));
        Assert.Equal("20260102030405", Hj212Commands.Item("PolId=w01018;SystemTime=20260102030405", "SystemTime"));
        Assert.Null(Hj212Commands.Item("ExeRtn=1", "QnRtn"));
    }

    [Theory]
    [InlineData("+08:00", 8 * 60)]
    [InlineData("-05:30", -(5 * 60) - 30)]
    [InlineData("UTC", 0)]
    [InlineData("Asia/Shanghai", 8 * 60)]
    public void TimeZones_AreOffsetsOrNames(string text, int minutes)
    {
        Assert.True(Hj212Options.TryParseTimeZone(text, out var offset));
        Assert.Equal(TimeSpan.FromMinutes(minutes), offset);
    }

    [Fact]
    public void BadSettings_AreNamed()
    {
        var problems = new Hj212Options { IdleTimeout = TimeSpan.Zero, TimeZone = "Mars/Olympus", MaxDataLength = 10, MaxBadFramesInARow = 0 }.Validate().ToList();
        Assert.Equal(4, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("Hj212:TimeZone", StringComparison.Ordinal));
    }
}
