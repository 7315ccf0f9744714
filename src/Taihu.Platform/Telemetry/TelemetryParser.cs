using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// Parses ThingsBoard's telemetry and attribute payloads into typed points, straight from the UTF-8 bytes.
/// Telemetry: <c>{"k":v,..}</c> (stamped with the arrival time), <c>{"ts":ms,"values":{"k":v,..}}</c>, or a JSON
/// array of either. Attributes: <c>{"k":v,..}</c>. Values: true/false, integers (64-bit), other numbers (double),
/// strings, and objects or arrays (kept as JSON text). Anything else is a <see cref="PayloadException"/> that says
/// where and why, and nothing of that payload is kept: bytes that are not UTF-8, a key given twice in one object
/// (JSON leaves its meaning open), null, numbers past the range of a double, and text no database can store (NUL).
/// </summary>
/// <remarks>
/// Keys repeat endlessly (a meter sends the same five keys forever), so key strings are interned in a bounded
/// table looked up by the key's characters: a known key costs no allocation.
/// </remarks>
public static class TelemetryParser
{
    /// <summary>Longest key accepted, in characters (ThingsBoard stores keys in a 255-character column).</summary>
    public const int MaxKeyLength = 255;

    /// <summary>Most keys in one JSON object (one point in time).</summary>
    public const int MaxKeys = 1000;

    /// <summary>Objects with up to this many keys are checked for a repeated key by a scan; larger ones by a set.</summary>
    private const int KeyScanLimit = 16;

    private const int MaxInternedKeys = 100_000;
    private static readonly ConcurrentDictionary<string, string> s_keys = new(StringComparer.Ordinal);
    private static readonly JsonReaderOptions s_options = new() { MaxDepth = 32 };

    /// <summary>Adds the points of a telemetry payload to <paramref name="points"/>; <paramref name="now"/> stamps points without "ts".</summary>
    public static void ParseTelemetry(ReadOnlySpan<byte> payload, long now, List<TelemetryPoint> points)
    {
        var start = points.Count;
        try
        {
            CheckText(payload, "a JSON object or array");
            var reader = new Utf8JsonReader(payload, s_options);
            reader.Read();
            if (reader.TokenType == JsonTokenType.StartArray)
            {
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.StartObject)
                    {
                        throw new PayloadException($"Expected a JSON object in the array at byte {reader.TokenStartIndex}.");
                    }

                    ReadTelemetryObject(ref reader, payload, now, points);
                }

                if (points.Count == start)
                {
                    throw new PayloadException("The payload holds no keys.");
                }
            }
            else if (reader.TokenType == JsonTokenType.StartObject)
            {
                ReadTelemetryObject(ref reader, payload, now, points);
            }
            else
            {
                throw new PayloadException("Expected a JSON object or array.");
            }

            EnsureEnd(ref reader);
        }
        catch (JsonException e)
        {
            points.RemoveRange(start, points.Count - start);
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            // The reader's way of refusing text it cannot decode (an unpaired surrogate escape).
            points.RemoveRange(start, points.Count - start);
            throw new PayloadException($"Invalid text in the payload: {e.Message}");
        }
        catch
        {
            points.RemoveRange(start, points.Count - start);
            throw;
        }
    }

    /// <summary>Adds the entries of an attributes payload (<c>{"k":v,..}</c>) to <paramref name="entries"/>.</summary>
    public static void ParseAttributes(ReadOnlySpan<byte> payload, long now, List<AttributeEntry> entries)
    {
        var start = entries.Count;
        try
        {
            CheckText(payload, "a JSON object of attribute names and values");
            var reader = new Utf8JsonReader(payload, s_options);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new PayloadException("Expected a JSON object of attribute names and values.");
            }

            HashSet<string>? seen = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var key = ReadKey(ref reader);
                CheckNewKey(CollectionsMarshal.AsSpan(entries)[start..], key, ref seen);
                reader.Read();
                entries.Add(new AttributeEntry(key, now, ReadValue(ref reader, payload, key)));
                CheckCount(entries.Count - start);
            }

            EnsureEnd(ref reader);
        }
        catch (JsonException e)
        {
            entries.RemoveRange(start, entries.Count - start);
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            // The reader's way of refusing text it cannot decode (an unpaired surrogate escape).
            entries.RemoveRange(start, entries.Count - start);
            throw new PayloadException($"Invalid text in the payload: {e.Message}");
        }
        catch
        {
            entries.RemoveRange(start, entries.Count - start);
            throw;
        }
    }

    /// <summary>Reads one JSON value (the reader on its first token) as a typed value.</summary>
    public static KvValue ReadValue(ref Utf8JsonReader reader, ReadOnlySpan<byte> payload, string key)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.True:
                return KvValue.Of(true);
            case JsonTokenType.False:
                return KvValue.Of(false);
            case JsonTokenType.String:
                return KvValue.Of(ReadString(ref reader, key));
            case JsonTokenType.Number:
                var raw = reader.HasValueSequence ? reader.ValueSequence.ToArray() : reader.ValueSpan;
                if (raw.IndexOfAny((byte)'.', (byte)'e', (byte)'E') < 0 && Utf8Parser.TryParse(raw, out long integer, out var used) && used == raw.Length)
                {
                    return KvValue.Of(integer);
                }

                if (!reader.TryGetDouble(out var number) || !double.IsFinite(number))
                {
                    throw new PayloadException($"The number of key '{key}' is out of range.");
                }

                return KvValue.Of(number);
            case JsonTokenType.StartObject:
            case JsonTokenType.StartArray:
                var begin = (int)reader.TokenStartIndex;
                reader.Skip();
                var end = (int)reader.BytesConsumed;
                return KvValue.OfJson(Encoding.UTF8.GetString(payload[begin..end]));
            case JsonTokenType.Null:
                throw new PayloadException($"The value of key '{key}' is null; send a boolean, number, string or JSON object.");
            default:
                throw new PayloadException($"Unexpected {reader.TokenType} for key '{key}'.");
        }
    }

    private static void ReadTelemetryObject(ref Utf8JsonReader reader, ReadOnlySpan<byte> payload, long now, List<TelemetryPoint> points)
    {
        // Either {"ts":..,"values":{..}} or a flat {"k":v}. A flat object may legitimately contain a key "ts"
        // without "values" (ThingsBoard treats it as the timestamped form only when both are present), so the
        // flat keys are collected first and stamped once the object is closed.
        var flatStart = points.Count;
        long? ts = null;
        var sawValues = false;
        var valuesStart = -1;
        var valuesEnd = -1;
        HashSet<string>? seen = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            // An escaped name is unescaped (and checked) once; a plain one is compared as it stands.
            var escaped = reader.ValueIsEscaped ? ReadKey(ref reader) : null;
            if (escaped is null ? reader.ValueTextEquals("ts"u8) : escaped == "ts")
            {
                if (ts is not null)
                {
                    throw new PayloadException("\"ts\" appears twice in one object.");
                }

                reader.Read();
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var stamp) || stamp < 0)
                {
                    throw new PayloadException("\"ts\" must be a non-negative integer: milliseconds since 1970-01-01 UTC.");
                }

                ts = stamp;
                continue;
            }

            if (escaped is null ? reader.ValueTextEquals("values"u8) : escaped == "values")
            {
                if (sawValues)
                {
                    throw new PayloadException("\"values\" appears twice in one object.");
                }

                reader.Read();
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    throw new PayloadException("\"values\" must be a JSON object of keys and values.");
                }

                sawValues = true;
                valuesStart = points.Count;
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var key = ReadKey(ref reader);
                    CheckNewKey(CollectionsMarshal.AsSpan(points)[flatStart..], key, ref seen);
                    reader.Read();
                    points.Add(new TelemetryPoint(key, 0, ReadValue(ref reader, payload, key)));
                    CheckCount(points.Count - flatStart);
                }

                valuesEnd = points.Count;
                continue;
            }

            var flatKey = escaped ?? ReadKey(ref reader);
            CheckNewKey(CollectionsMarshal.AsSpan(points)[flatStart..], flatKey, ref seen);
            reader.Read();
            points.Add(new TelemetryPoint(flatKey, 0, ReadValue(ref reader, payload, flatKey)));
            CheckCount(points.Count - flatStart);
        }

        if (sawValues)
        {
            if (ts is null)
            {
                throw new PayloadException("An object with \"values\" needs a \"ts\" beside it.");
            }

            if (valuesEnd - valuesStart != points.Count - flatStart)
            {
                throw new PayloadException("An object with \"ts\" and \"values\" may not hold other keys.");
            }

            if (points.Count == flatStart)
            {
                throw new PayloadException("The payload holds no keys: \"values\" is empty.");
            }

            Stamp(points, flatStart, ts.Value);
            return;
        }

        if (ts is { } flatTs)
        {
            // {"ts":..} without "values": ThingsBoard stores "ts" as an ordinary key.
            points.Add(new TelemetryPoint(Intern("ts"u8), 0, KvValue.Of(flatTs)));
        }

        if (points.Count == flatStart)
        {
            throw new PayloadException("The payload holds no keys.");
        }

        Stamp(points, flatStart, now);
    }

    private static void Stamp(List<TelemetryPoint> points, int from, long ts)
    {
        for (var i = from; i < points.Count; i++)
        {
            points[i] = points[i] with { Ts = ts };
        }
    }

    private static void CheckCount(int count)
    {
        if (count > MaxKeys)
        {
            throw new PayloadException($"More than {MaxKeys} keys in one payload.");
        }
    }

    private static void EnsureEnd(ref Utf8JsonReader reader)
    {
        if (reader.Read())
        {
            throw new PayloadException("Unexpected data after the JSON value.");
        }
    }

    private static string ReadKey(ref Utf8JsonReader reader)
    {
        if (reader.HasValueSequence || reader.ValueIsEscaped)
        {
            string key;
            try
            {
                key = reader.GetString()!;
            }
            catch (InvalidOperationException)
            {
                throw new PayloadException("A key is not valid text: it holds an unpaired surrogate escape.");
            }

            return CheckKey(key);
        }

        // Unescaped, so already valid UTF-8 (checked up front) without NUL (a raw control character is not JSON).
        return Intern(reader.ValueSpan);
    }

    private static string CheckKey(string key)
    {
        CheckKeyLength(key.Length);
        if (key.Contains('\0', StringComparison.Ordinal))
        {
            throw new PayloadException("A key holds a NUL character (\\u0000), which cannot be stored.");
        }

        return key;
    }

    private static string ReadString(ref Utf8JsonReader reader, string key)
    {
        string value;
        try
        {
            value = reader.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw new PayloadException($"The string of key '{key}' is not valid text: it holds an unpaired surrogate escape.");
        }

        if (value.Contains('\0', StringComparison.Ordinal))
        {
            throw new PayloadException($"The string of key '{key}' holds a NUL character (\\u0000), which cannot be stored.");
        }

        return value;
    }

    /// <summary>Refuses a key already given in the same object (<paramref name="keys"/> holds that object's so far).</summary>
    private static void CheckNewKey(ReadOnlySpan<TelemetryPoint> keys, string key, ref HashSet<string>? seen)
    {
        if (seen is null && keys.Length < KeyScanLimit)
        {
            foreach (var point in keys)
            {
                if (string.Equals(point.Key, key, StringComparison.Ordinal))
                {
                    ThrowDuplicate(key);
                }
            }

            return;
        }

        if (seen is null)
        {
            seen = new HashSet<string>(keys.Length * 2, StringComparer.Ordinal);
            foreach (var point in keys)
            {
                seen.Add(point.Key);
            }
        }

        if (!seen.Add(key))
        {
            ThrowDuplicate(key);
        }
    }

    private static void CheckNewKey(ReadOnlySpan<AttributeEntry> keys, string key, ref HashSet<string>? seen)
    {
        if (seen is null && keys.Length < KeyScanLimit)
        {
            foreach (var entry in keys)
            {
                if (string.Equals(entry.Key, key, StringComparison.Ordinal))
                {
                    ThrowDuplicate(key);
                }
            }

            return;
        }

        if (seen is null)
        {
            seen = new HashSet<string>(keys.Length * 2, StringComparer.Ordinal);
            foreach (var entry in keys)
            {
                seen.Add(entry.Key);
            }
        }

        if (!seen.Add(key))
        {
            ThrowDuplicate(key);
        }
    }

    [DoesNotReturn]
    private static void ThrowDuplicate(string key) => throw new PayloadException($"Key '{key}' appears twice in one object.");

    /// <summary>
    /// Refuses a payload that is empty or not UTF-8 before the JSON reader sees it: the reader checks the bytes of
    /// a string only when asked for its value, and a key or nested value would otherwise be decoded with
    /// replacement characters.
    /// </summary>
    private static void CheckText(ReadOnlySpan<byte> payload, string expected)
    {
        if (payload.Trim(" \t\r\n"u8).IsEmpty)
        {
            throw new PayloadException($"The payload is empty; expected {expected}.");
        }

        if (!Utf8.IsValid(payload))
        {
            var index = 0;
            while (Rune.DecodeFromUtf8(payload[index..], out _, out var consumed) == OperationStatus.Done)
            {
                index += consumed;
            }

            throw new PayloadException($"The payload is not valid UTF-8 (at byte {index}).");
        }
    }

    /// <summary>The interned string for a UTF-8 key; a known key allocates nothing.</summary>
    public static string Intern(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length > MaxKeyLength * 3)
        {
            throw new PayloadException($"A key is longer than {MaxKeyLength} characters.");
        }

        Span<char> chars = stackalloc char[utf8.Length];
        var count = Encoding.UTF8.GetChars(utf8, chars);
        CheckKeyLength(count);
        var lookup = s_keys.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(chars[..count], out var known))
        {
            return known;
        }

        var key = new string(chars[..count]);
        if (s_keys.Count < MaxInternedKeys)
        {
            s_keys.TryAdd(key, key);
        }

        return key;
    }

    private static void CheckKeyLength(int length)
    {
        if (length == 0)
        {
            throw new PayloadException("A key may not be empty.");
        }

        if (length > MaxKeyLength)
        {
            throw new PayloadException($"A key is longer than {MaxKeyLength} characters.");
        }
    }
}
