using System.Text;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// Payloads the parser must refuse: each throws <see cref="PayloadException"/> with a message that says what is
/// wrong, and leaves the list it was given exactly as it was.
/// </summary>
public sealed class TelemetryParserHostileInputTests
{
    private const long Now = 1_700_000_000_000;

    private static readonly TelemetryPoint s_sentinel = new("already-there", 1, KvValue.Of(1L));
    private static readonly AttributeEntry s_sentinelEntry = new("already-there", 1, KvValue.Of(1L));

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    private static byte[] Bytes(params object[] parts) => parts.SelectMany(p => p switch
    {
        string s => Encoding.UTF8.GetBytes(s),
        byte[] b => b,
        int i => [(byte)i],
        _ => throw new ArgumentException("string, byte[] or byte", nameof(parts)),
    }).ToArray();

    private static string Keys(int count, string prefix = "k") => string.Join(',', Enumerable.Range(0, count).Select(i => $"\"{prefix}{i}\":{i}"));

    /// <summary>Case name, payload, a piece of the message it must give.</summary>
    public static TheoryData<string, byte[], string> BadTelemetry() => new()
    {
        // Empty and not JSON.
        { "empty", [], "empty" },
        { "whitespace only", Utf8(" \r\n\t "), "empty" },
        { "plain text", Utf8("temperature=21"), "Invalid JSON" },
        { "xml", Utf8("<t>21</t>"), "Invalid JSON" },
        { "single quotes", Utf8("{'a':1}"), "Invalid JSON" },
        { "unquoted key", Utf8("{a:1}"), "Invalid JSON" },
        { "comment", Utf8("{\"a\":1 /* c */}"), "Invalid JSON" },
        { "NaN literal", Utf8("{\"a\":NaN}"), "Invalid JSON" },
        { "Infinity literal", Utf8("{\"a\":Infinity}"), "Invalid JSON" },
        { "leading zero", Utf8("{\"a\":01}"), "Invalid JSON" },
        { "plus sign", Utf8("{\"a\":+1}"), "Invalid JSON" },
        { "bare fraction", Utf8("{\"a\":.5}"), "Invalid JSON" },
        { "raw control character in string", Utf8("{\"a\":\"x\ny\"}"), "Invalid JSON" },
        { "bad escape", Utf8("{\"a\":\"\\x\"}"), "Invalid JSON" },
        // Truncated.
        { "truncated object", Utf8("{\"a\":1"), "Invalid JSON" },
        { "truncated after colon", Utf8("{\"a\":"), "Invalid JSON" },
        { "truncated string", Utf8("{\"a\":\"unterminated"), "Invalid JSON" },
        { "truncated number", Utf8("[{\"a\":1},{\"b\":-"), "Invalid JSON" },
        { "truncated array", Utf8("[{\"a\":1},"), "Invalid JSON" },
        { "truncated values", Utf8("{\"ts\":1,\"values\":{\"a\":"), "Invalid JSON" },
        { "open brace only", Utf8("{"), "Invalid JSON" },
        // JSON of the wrong shape.
        { "number", Utf8("42"), "JSON object or array" },
        { "string", Utf8("\"a\""), "JSON object or array" },
        { "null", Utf8("null"), "JSON object or array" },
        { "true", Utf8("true"), "JSON object or array" },
        { "array of numbers", Utf8("[1,2]"), "JSON object in the array" },
        { "array of arrays", Utf8("[[{\"a\":1}]]"), "JSON object in the array" },
        { "array with null", Utf8("[{\"a\":1},null]"), "JSON object in the array" },
        { "empty object", Utf8("{}"), "no keys" },
        { "empty array", Utf8("[]"), "no keys" },
        { "array of empty objects", Utf8("[{},{}]"), "no keys" },
        // Wrong types for ts and values.
        { "ts as string", Utf8("{\"ts\":\"1451649600512\",\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts as double", Utf8("{\"ts\":1451649600512.5,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts in exponent form", Utf8("{\"ts\":1e12,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts negative", Utf8("{\"ts\":-1,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts null", Utf8("{\"ts\":null,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts true", Utf8("{\"ts\":true,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts object", Utf8("{\"ts\":{},\"values\":{\"a\":1}}"), "\"ts\"" },
        { "ts past 64 bits", Utf8("{\"ts\":99999999999999999999,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "values as number", Utf8("{\"ts\":1,\"values\":5}"), "\"values\"" },
        { "values as string", Utf8("{\"ts\":1,\"values\":\"a=1\"}"), "\"values\"" },
        { "values as array", Utf8("{\"ts\":1,\"values\":[{\"a\":1}]}"), "\"values\"" },
        { "values null", Utf8("{\"ts\":1,\"values\":null}"), "\"values\"" },
        { "values without ts", Utf8("{\"values\":{\"a\":1}}"), "needs a \"ts\"" },
        { "values empty", Utf8("{\"ts\":1,\"values\":{}}"), "no keys" },
        { "ts and values with another key", Utf8("{\"ts\":1,\"values\":{\"a\":1},\"b\":2}"), "other keys" },
        { "bad ts in the second array item", Utf8("[{\"ts\":1,\"values\":{\"a\":1}},{\"ts\":\"x\",\"values\":{\"a\":1}}]"), "\"ts\"" },
        // Null values.
        { "null value", Utf8("{\"a\":null}"), "'a'" },
        { "null value in values", Utf8("{\"ts\":1,\"values\":{\"a\":1,\"b\":null}}"), "'b'" },
        { "null after good keys", Utf8("[{\"a\":1},{\"b\":2,\"c\":null}]"), "'c'" },
        // Duplicate keys: JSON leaves their meaning open, so they are refused rather than guessed at.
        { "duplicate key", Utf8("{\"a\":1,\"a\":2}"), "'a'" },
        { "duplicate key in values", Utf8("{\"ts\":1,\"values\":{\"a\":1,\"a\":2}}"), "'a'" },
        { "duplicate key, one escaped", Utf8("{\"a\":1,\"\\u0061\":2}"), "'a'" },
        { "duplicate ts", Utf8("{\"ts\":1,\"ts\":2,\"values\":{\"a\":1}}"), "\"ts\"" },
        { "duplicate values", Utf8("{\"ts\":1,\"values\":{\"a\":1},\"values\":{\"b\":2}}"), "\"values\"" },
        { "duplicate among many keys", Utf8("{" + Keys(500) + ",\"k250\":0}"), "'k250'" },
        // Too many keys.
        { "too many keys", Utf8("{" + Keys(TelemetryParser.MaxKeys + 1) + "}"), "More than 1000 keys" },
        { "too many keys in values", Utf8("{\"ts\":1,\"values\":{" + Keys(TelemetryParser.MaxKeys + 1) + "}}"), "More than 1000 keys" },
        // Keys: empty, too long, not storable.
        { "empty key", Utf8("{\"\":1}"), "empty" },
        { "key one too long", Utf8("{\"" + new string('k', TelemetryParser.MaxKeyLength + 1) + "\":1}"), "longer than 255" },
        { "key far too long", Utf8("{\"" + new string('k', 100_000) + "\":1}"), "longer than 255" },
        { "long key of wide characters", Utf8("{\"" + new string('é', TelemetryParser.MaxKeyLength + 1) + "\":1}"), "longer than 255" },
        { "long escaped key", Utf8("{\"" + string.Concat(Enumerable.Repeat("\\u0041", TelemetryParser.MaxKeyLength + 1)) + "\":1}"), "longer than 255" },
        { "long key in values", Utf8("{\"ts\":1,\"values\":{\"" + new string('k', 300) + "\":1}}"), "longer than 255" },
        { "NUL in key", Utf8("{\"a\\u0000b\":1}"), "NUL" },
        { "NUL in string value", Utf8("{\"a\":\"x\\u0000y\"}"), "NUL" },
        { "lone surrogate in string value", Utf8("{\"a\":\"\\ud800\"}"), "'a'" },
        { "lone surrogate in key", Utf8("{\"\\udc00\":1}"), "key" },
        // Deep nesting.
        { "nesting past the limit", Utf8("{\"k\":" + new string('[', 40) + new string(']', 40) + "}"), "Invalid JSON" },
        { "nesting ten thousand deep", Utf8("{\"k\":" + string.Concat(Enumerable.Repeat("{\"a\":", 10_000)) + "1" + new string('}', 10_001)), "Invalid JSON" },
        { "deep arrays at the top", Utf8(new string('[', 10_000) + new string(']', 10_000)), "JSON object in the array" },
        // Numbers out of range.
        { "number past double range", Utf8("{\"a\":1e400}"), "'a'" },
        { "negative number past double range", Utf8("{\"a\":-1e400}"), "'a'" },
        { "huge integer digits", Utf8("{\"a\":" + new string('9', 400) + "}"), "'a'" },
        // Invalid UTF-8.
        { "invalid byte in string value", Bytes("{\"a\":\"", 0xFF, "\"}"), "UTF-8" },
        { "invalid byte in key", Bytes("{\"", 0xC3, 0x28, "\":1}"), "UTF-8" },
        { "lone continuation byte", Bytes("{\"a\":\"", 0x80, "\"}"), "UTF-8" },
        { "overlong slash", Bytes("{\"a\":\"", 0xC0, 0xAF, "\"}"), "UTF-8" },
        { "UTF-16 surrogate in UTF-8", Bytes("{\"a\":\"", 0xED, 0xA0, 0x80, "\"}"), "UTF-8" },
        { "truncated sequence at the end", Bytes("{\"a\":\"", 0xE2, 0x82), "UTF-8" },
        { "invalid byte inside a nested value", Bytes("{\"a\":{\"b\":\"", 0xFE, "\"}}"), "UTF-8" },
        { "invalid byte outside strings", Bytes("{\"a\":1}", 0xFF), "UTF-8" },
        // Trailing garbage.
        { "text after the object", Utf8("{\"a\":1}x"), "Invalid JSON" },
        { "second object", Utf8("{\"a\":1}{\"b\":2}"), "Invalid JSON" },
        { "trailing comma", Utf8("{\"a\":1},"), "Invalid JSON" },
        { "trailing comma inside", Utf8("{\"a\":1,}"), "Invalid JSON" },
        { "extra bracket", Utf8("[{\"a\":1}]]"), "Invalid JSON" },
        { "trailing comment", Utf8("{\"a\":1} // more"), "Invalid JSON" },
        { "NUL byte after the object", Bytes("{\"a\":1}", 0x00), "Invalid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadTelemetry))]
    public void Telemetry_IsRefused_AndNothingIsAdded(string name, byte[] payload, string message)
    {
        var points = new List<TelemetryPoint> { s_sentinel };
        var e = Assert.Throws<PayloadException>(() => TelemetryParser.ParseTelemetry(payload, Now, points));
        Assert.True(e.Message.Contains(message, StringComparison.Ordinal), $"{name}: '{e.Message}' does not mention '{message}'.");
        Assert.Equal([s_sentinel], points);
    }

    /// <summary>Case name, payload, a piece of the message it must give.</summary>
    public static TheoryData<string, byte[], string> BadAttributes() => new()
    {
        { "empty", [], "empty" },
        { "not JSON", Utf8("fw=1.2"), "Invalid JSON" },
        { "array", Utf8("[{\"a\":1}]"), "JSON object" },
        { "number", Utf8("1"), "JSON object" },
        { "truncated", Utf8("{\"a\":1,\"b\":"), "Invalid JSON" },
        { "null value", Utf8("{\"a\":1,\"b\":null}"), "'b'" },
        { "duplicate key", Utf8("{\"a\":1,\"b\":2,\"a\":3}"), "'a'" },
        { "too many keys", Utf8("{" + Keys(TelemetryParser.MaxKeys + 1) + "}"), "More than 1000 keys" },
        { "key too long", Utf8("{\"" + new string('k', 256) + "\":1}"), "longer than 255" },
        { "empty key", Utf8("{\"\":1}"), "empty" },
        { "NUL in value", Utf8("{\"a\":\"\\u0000\"}"), "NUL" },
        { "deep nesting", Utf8("{\"a\":" + new string('[', 100) + new string(']', 100) + "}"), "Invalid JSON" },
        { "invalid UTF-8", Bytes("{\"a\":\"", 0xFF, "\"}"), "UTF-8" },
        { "number past double range", Utf8("{\"a\":1e999}"), "'a'" },
        { "trailing garbage", Utf8("{\"a\":1} x"), "Invalid JSON" },
        { "second object", Utf8("{\"a\":1}{\"b\":1}"), "Invalid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadAttributes))]
    public void Attributes_AreRefused_AndNothingIsAdded(string name, byte[] payload, string message)
    {
        var entries = new List<AttributeEntry> { s_sentinelEntry };
        var e = Assert.Throws<PayloadException>(() => TelemetryParser.ParseAttributes(payload, Now, entries));
        Assert.True(e.Message.Contains(message, StringComparison.Ordinal), $"{name}: '{e.Message}' does not mention '{message}'.");
        Assert.Equal([s_sentinelEntry], entries);
    }

    [Fact]
    public void RandomBytes_NeverEscapeAsAnythingButPayloadException()
    {
        // A fixed seed: the same thousand payloads every run.
        var random = new Random(20240611);
        var fragments = new[] { "{", "}", "[", "]", ":", ",", "\"ts\"", "\"values\"", "\"k\"", "1", "-1.5e3", "true", "null", "\"\\u00", "\\", " ", "\"" };
        for (var i = 0; i < 1000; i++)
        {
            var payload = i % 2 == 0
                ? Utf8(string.Concat(Enumerable.Range(0, random.Next(1, 40)).Select(_ => fragments[random.Next(fragments.Length)])))
                : Enumerable.Range(0, random.Next(0, 64)).Select(_ => (byte)random.Next(256)).ToArray();
            var points = new List<TelemetryPoint> { s_sentinel };
            try
            {
                TelemetryParser.ParseTelemetry(payload, Now, points);
                Assert.True(points.Count > 1, $"Accepted without points: {Convert.ToHexString(payload)}");
            }
            catch (PayloadException)
            {
                Assert.Equal([s_sentinel], points);
            }
        }
    }
}
