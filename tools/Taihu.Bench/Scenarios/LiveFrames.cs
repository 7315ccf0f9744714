using System.Buffers.Text;
using System.Text.Json;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// Reads a frame of ThingsBoard's live WebSocket API as a benchmark subscriber needs it:
/// <c>{"subscriptionId":1,"errorCode":0,"errorMsg":null,"data":{"k0":[[ts,"12"],..],..},"latestValues":{..}}</c>.
/// It collects the integer values of one key (the bench sends its sequence number there) and the error code.
/// Malformed frames are refused (false), never thrown.
/// </summary>
public static class LiveFrames
{
    /// <summary>
    /// Adds the values of <paramref name="key"/> that are integers to <paramref name="values"/>; returns false
    /// when the frame is not such an object. <paramref name="errorCode"/> is the frame's (0 when it has none).
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> frame, ReadOnlySpan<byte> key, List<long> values, out int subscriptionId, out int errorCode)
    {
        ArgumentNullException.ThrowIfNull(values);
        subscriptionId = 0;
        errorCode = 0;
        var added = values.Count;
        try
        {
            var reader = new Utf8JsonReader(frame, new JsonReaderOptions { MaxDepth = 16 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("subscriptionId"u8))
                {
                    if (!reader.Read() || !reader.TryGetInt32(out subscriptionId))
                    {
                        return Fail(values, added);
                    }
                }
                else if (reader.ValueTextEquals("errorCode"u8))
                {
                    if (!reader.Read() || !reader.TryGetInt32(out errorCode))
                    {
                        return Fail(values, added);
                    }
                }
                else if (reader.ValueTextEquals("data"u8))
                {
                    if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject || !ReadData(ref reader, key, values))
                    {
                        return Fail(values, added);
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            return reader.TokenType == JsonTokenType.EndObject || Fail(values, added);
        }
        catch (JsonException)
        {
            return Fail(values, added);
        }
        catch (InvalidOperationException)
        {
            return Fail(values, added); // a number read as the wrong type
        }
    }

    private static bool Fail(List<long> values, int count)
    {
        values.RemoveRange(count, values.Count - count);
        return false;
    }

    private static bool ReadData(ref Utf8JsonReader reader, ReadOnlySpan<byte> key, List<long> values)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var wanted = reader.ValueTextEquals(key);
            if (!reader.Read())
            {
                return false;
            }

            if (!wanted)
            {
                reader.Skip();
                continue;
            }

            // [[ts,"value"],..]
            if (reader.TokenType != JsonTokenType.StartArray)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.StartArray)
            {
                if (!reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.Read())
                {
                    return false;
                }

                // The value's own bytes, without a string per point: the subscriber reads 100k of them a second.
                if (reader.TokenType == JsonTokenType.String && !reader.ValueIsEscaped
                    && Utf8Parser.TryParse(reader.ValueSpan, out long value, out var consumed) && consumed == reader.ValueSpan.Length)
                {
                    values.Add(value);
                }

                if (!reader.Read() || reader.TokenType != JsonTokenType.EndArray)
                {
                    return false;
                }
            }

            if (reader.TokenType != JsonTokenType.EndArray)
            {
                return false;
            }
        }

        return reader.TokenType == JsonTokenType.EndObject;
    }
}
