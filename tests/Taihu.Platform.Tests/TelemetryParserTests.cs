using System.Text;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>Every shape of ThingsBoard telemetry and attributes the parser accepts, and how it types the values.</summary>
public sealed class TelemetryParserTests
{
    private const long Now = 1_700_000_000_000;

    private static List<TelemetryPoint> Telemetry(string json)
    {
        var points = new List<TelemetryPoint>();
        TelemetryParser.ParseTelemetry(Encoding.UTF8.GetBytes(json), Now, points);
        return points;
    }

    private static KvValue Value(string json) => Assert.Single(Telemetry($$"""{"k":{{json}}}""")).Value;

    [Fact]
    public void Flat_Object_IsStampedWithArrivalTime()
    {
        Assert.Equal(
            [new TelemetryPoint("temperature", Now, KvValue.Of(42L)), new TelemetryPoint("humidity", Now, KvValue.Of(73.5))],
            Telemetry("""{"temperature":42,"humidity":73.5}"""));
    }

    [Fact]
    public void Timestamped_Object_UsesItsTs_InEitherOrder()
    {
        TelemetryPoint[] expected = [new("a", 1451649600512, KvValue.Of(1L)), new("b", 1451649600512, KvValue.Of("x"))];
        Assert.Equal(expected, Telemetry("""{"ts":1451649600512,"values":{"a":1,"b":"x"}}"""));
        Assert.Equal(expected, Telemetry("""{"values":{"a":1,"b":"x"},"ts":1451649600512}"""));
        Assert.Equal([new TelemetryPoint("a", 0, KvValue.Of(1L))], Telemetry("""{"ts":0,"values":{"a":1}}"""));
    }

    [Fact]
    public void Arrays_OfEitherShape_AndMixed()
    {
        Assert.Equal(
            [new TelemetryPoint("a", Now, KvValue.Of(1L)), new TelemetryPoint("b", Now, KvValue.Of(2L))],
            Telemetry("""[{"a":1},{"b":2}]"""));
        Assert.Equal(
            [new TelemetryPoint("a", 1000, KvValue.Of(1L)), new TelemetryPoint("a", 2000, KvValue.Of(2L))],
            Telemetry("""[{"ts":1000,"values":{"a":1}},{"ts":2000,"values":{"a":2}}]"""));
        Assert.Equal(
            [new TelemetryPoint("a", 1000, KvValue.Of(1L)), new TelemetryPoint("b", Now, KvValue.Of(true))],
            Telemetry("""[{"ts":1000,"values":{"a":1}},{"b":true}]"""));
        // The same key at the same time in two objects is two writes of one point (the store keeps the last).
        Assert.Equal(2, Telemetry("""[{"ts":1,"values":{"a":1}},{"ts":1,"values":{"a":2}}]""").Count);
    }

    [Fact]
    public void Whitespace_AroundAndBetweenTokens_IsFine()
    {
        Assert.Equal([new TelemetryPoint("a", Now, KvValue.Of(1L))], Telemetry(" \r\n\t{ \"a\" :\n 1 }\n "));
    }

    [Fact]
    public void NestedValues_AreKeptAsTheirJsonText()
    {
        var points = Telemetry("""{"obj":{"x":[1, 2,{"y":null}],"z":"\u00e9"},"arr":[1,"two",null,[]],"empty":{}}""");
        Assert.Equal(KvValue.OfJson("""{"x":[1, 2,{"y":null}],"z":"\u00e9"}"""), points[0].Value);
        Assert.Equal(KvValue.OfJson("""[1,"two",null,[]]"""), points[1].Value);
        Assert.Equal(KvValue.OfJson("{}"), points[2].Value);
    }

    [Theory]
    [InlineData("0", 0L)]
    [InlineData("-0", 0L)]
    [InlineData("7", 7L)]
    [InlineData("-42", -42L)]
    [InlineData("9223372036854775807", long.MaxValue)]
    [InlineData("-9223372036854775808", long.MinValue)]
    public void Integers_AreLongs(string json, long expected) => Assert.Equal(KvValue.Of(expected), Value(json));

    [Theory]
    [InlineData("1.0", 1.0)]
    [InlineData("0.1", 0.1)]
    [InlineData("-2.5", -2.5)]
    [InlineData("1e3", 1000.0)]
    [InlineData("1E-3", 0.001)]
    [InlineData("2.5e+2", 250.0)]
    [InlineData("1.7976931348623157e308", double.MaxValue)]
    [InlineData("5e-324", double.Epsilon)]
    // Past the 64-bit range an integer is kept as a double, as ThingsBoard does.
    [InlineData("9223372036854775808", 9223372036854775808.0)]
    [InlineData("-9223372036854775809", -9223372036854775809.0)]
    [InlineData("123456789012345678901234567890", 1.2345678901234568E+29)]
    public void OtherNumbers_AreDoubles(string json, double expected) => Assert.Equal(KvValue.Of(expected), Value(json));

    [Fact]
    public void Booleans_AndStrings()
    {
        Assert.Equal(KvValue.Of(true), Value("true"));
        Assert.Equal(KvValue.Of(false), Value("false"));
        Assert.Equal(KvValue.Of(""), Value("\"\""));
        Assert.Equal(KvValue.Of("42"), Value("\"42\""));
        Assert.Equal(KvValue.Of("true"), Value("\"true\""));
        Assert.Equal(KvValue.Of("line\nbreak \"quoted\" é ☃ 𝄞"), Value("\"line\\nbreak \\\"quoted\\\" \\u00e9 ☃ \\ud834\\udd1e\""));
        Assert.Equal(KvValue.Of("x'); DROP TABLE devices;--"), Value("\"x'); DROP TABLE devices;--\""));
        Assert.Equal(KvValue.Of(new string('s', 100_000)), Value("\"" + new string('s', 100_000) + "\""));
    }

    [Fact]
    public void Keys_AreUnescaped_AndMayBeAnyText()
    {
        Assert.Equal(["ab", "température", "a b/c.d", "x'); DROP TABLE devices;--", "ts"],
            Telemetry("""{"a\u0062":1,"température":2,"a b/c.d":3,"x'); DROP TABLE devices;--":4,"values_not":5}""")
                .Select(p => p.Key).Take(4).Append(Assert.Single(Telemetry("""{"ts":5}""")).Key));
    }

    [Fact]
    public void TsWithoutValues_IsAnOrdinaryKey_AsInThingsBoard()
    {
        // ThingsBoard reads {"ts":..} as the timestamped form only when "values" is there too.
        Assert.Equal([new TelemetryPoint("ts", Now, KvValue.Of(1451649600512L))], Telemetry("""{"ts":1451649600512}"""));
        Assert.Equal(
            [new TelemetryPoint("temp", Now, KvValue.Of(20L)), new TelemetryPoint("ts", Now, KvValue.Of(5L))],
            Telemetry("""{"ts":5,"temp":20}"""));
    }

    [Fact]
    public void Limits_AreInclusive()
    {
        var key = new string('k', TelemetryParser.MaxKeyLength);
        Assert.Equal(key, Assert.Single(Telemetry($$"""{"{{key}}":1}""")).Key);
        var wide = new string('é', TelemetryParser.MaxKeyLength);
        Assert.Equal(wide, Assert.Single(Telemetry($$"""{"{{wide}}":1}""")).Key);

        var many = "{" + string.Join(',', Enumerable.Range(0, TelemetryParser.MaxKeys).Select(i => $"\"k{i}\":{i}")) + "}";
        Assert.Equal(TelemetryParser.MaxKeys, Telemetry(many).Count);
        Assert.Equal(TelemetryParser.MaxKeys, Telemetry($$"""{"ts":1,"values":{{many}}}""").Count);

        var nested = "{\"k\":" + new string('[', 30) + new string(']', 30) + "}";
        Assert.Equal(DataType.Json, Assert.Single(Telemetry(nested)).Value.Type);
    }

    [Fact]
    public void Points_AreAppended_AfterWhatTheListHolds()
    {
        var existing = new TelemetryPoint("old", 1, KvValue.Of(1L));
        var points = new List<TelemetryPoint> { existing };
        TelemetryParser.ParseTelemetry("""{"a":1}"""u8, Now, points);
        Assert.Equal([existing, new TelemetryPoint("a", Now, KvValue.Of(1L))], points);
    }

    [Fact]
    public void Attributes_FlatObject_WithEveryType()
    {
        var entries = new List<AttributeEntry>();
        TelemetryParser.ParseAttributes("""{"fw":"1.2.3","battery":87,"ratio":0.5,"active":true,"config":{"a":[1]}}"""u8, Now, entries);
        Assert.Equal(
        [
            new AttributeEntry("fw", Now, KvValue.Of("1.2.3")),
            new AttributeEntry("battery", Now, KvValue.Of(87L)),
            new AttributeEntry("ratio", Now, KvValue.Of(0.5)),
            new AttributeEntry("active", Now, KvValue.Of(true)),
            new AttributeEntry("config", Now, KvValue.OfJson("""{"a":[1]}""")),
        ], entries);
    }

    [Fact]
    public void Attributes_TsAndValues_AreOrdinaryNames()
    {
        var entries = new List<AttributeEntry>();
        TelemetryParser.ParseAttributes("""{"ts":1,"values":{"a":1}}"""u8, Now, entries);
        Assert.Equal([new AttributeEntry("ts", Now, KvValue.Of(1L)), new AttributeEntry("values", Now, KvValue.OfJson("""{"a":1}"""))], entries);
    }

    [Fact]
    public void Keys_AreShared_NotCopied()
    {
        // Keys repeat endlessly, so the parser hands out one string per key name.
        var first = Assert.Single(Telemetry("""{"shared-key-name":1}""")).Key;
        var second = Assert.Single(Telemetry("""{"shared-key-name":2}""")).Key;
        Assert.Same(first, second);
    }
}
