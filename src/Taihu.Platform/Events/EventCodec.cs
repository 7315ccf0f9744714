using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Events;

/// <summary>What an event log row holds.</summary>
public enum EventLogKind
{
    /// <summary>One telemetry batch: every point of it, each with its device.</summary>
    Telemetry = 1,

    /// <summary>Attribute changes of one transaction, and the device events recorded with them.</summary>
    Attributes = 2,

    /// <summary>Device events alone (alarm changes, RPC requests, ...).</summary>
    Device = 3,
}

/// <summary>A device event to record: a connect, a disconnect, an alarm change, a client-side RPC request.</summary>
public readonly record struct DeviceEventRecord(long DeviceSeq, PlatformEventType Type, long Ts, string? DataJson = null);

/// <summary>A decoded row, before its devices are looked up.</summary>
public sealed class DecodedRow
{
    public List<DevicePoint> Points { get; } = [];

    public List<AttributeChange> Changes { get; } = [];

    public List<DeviceEventRecord> Events { get; } = [];
}

/// <summary>
/// The compact binary form of event log rows: varints, length-prefixed UTF-8. A row that does not decode (a newer
/// version's, or damaged) throws <see cref="FormatException"/>; the reader skips it and says so.
/// </summary>
public static class EventCodec
{
    private const byte Version = 1;

    public static byte[] EncodeTelemetry(IReadOnlyList<DevicePoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        // Keys are written once, in a table, and named by their index; each ts is the difference from the previous
        // point's (the points of a message share one), so a point takes about half the bytes.
        var output = new ArrayBufferWriter<byte>(64 + (points.Count * 12));
        WriteByte(output, Version);
        var keys = new Dictionary<string, int>(StringComparer.Ordinal);
        var order = new List<string>();
        for (var i = 0; i < points.Count; i++)
        {
            if (keys.TryAdd(points[i].Point.Key, order.Count))
            {
                order.Add(points[i].Point.Key);
            }
        }

        WriteVarint(output, (ulong)order.Count);
        foreach (var key in order)
        {
            WriteString(output, key);
        }

        WriteVarint(output, (ulong)points.Count);
        var previous = 0L;
        for (var i = 0; i < points.Count; i++)
        {
            WriteVarint(output, (ulong)points[i].DeviceSeq);
            WriteVarint(output, (ulong)keys[points[i].Point.Key]);
            WriteSigned(output, unchecked(points[i].Point.Ts - previous));
            previous = points[i].Point.Ts;
            WriteValue(output, points[i].Point.Value);
        }

        return output.WrittenSpan.ToArray();
    }

    public static byte[] EncodeAttributes(IReadOnlyList<AttributeChange> changes, IReadOnlyList<DeviceEventRecord>? events)
    {
        ArgumentNullException.ThrowIfNull(changes);
        var output = new ArrayBufferWriter<byte>(64);
        WriteByte(output, Version);
        WriteVarint(output, (ulong)changes.Count);
        foreach (var change in changes)
        {
            WriteVarint(output, (ulong)change.DeviceSeq);
            WriteByte(output, (byte)change.Scope);
            WriteVarint(output, (ulong)change.Entries.Count);
            foreach (var entry in change.Entries)
            {
                WriteString(output, entry.Key);
                WriteSigned(output, entry.LastUpdateTs);
                WriteValue(output, entry.Value);
            }
        }

        WriteEvents(output, events ?? []);
        return output.WrittenSpan.ToArray();
    }

    public static byte[] EncodeEvents(IReadOnlyList<DeviceEventRecord> events)
    {
        ArgumentNullException.ThrowIfNull(events);
        var output = new ArrayBufferWriter<byte>(64);
        WriteByte(output, Version);
        WriteEvents(output, events);
        return output.WrittenSpan.ToArray();
    }

    public static void Decode(EventLogKind kind, ReadOnlySpan<byte> body, DecodedRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var reader = new Reader(body);
        if (reader.Byte() != Version)
        {
            throw new FormatException("The event log row has an unknown version.");
        }

        switch (kind)
        {
            case EventLogKind.Telemetry:
                var keys = new string[reader.Count()];
                for (var k = 0; k < keys.Length; k++)
                {
                    keys[k] = reader.String();
                }

                var count = reader.Count();
                var stamp = 0L;
                for (var i = 0; i < count; i++)
                {
                    var device = (long)reader.Varint();
                    var index = reader.Varint();
                    if (index >= (ulong)keys.Length)
                    {
                        throw new FormatException("The event log row names a key it does not have.");
                    }

                    stamp = unchecked(stamp + reader.Signed());
                    row.Points.Add(new DevicePoint(device, new TelemetryPoint(keys[index], stamp, reader.Value())));
                }

                break;
            case EventLogKind.Attributes:
                var changes = reader.Count();
                for (var i = 0; i < changes; i++)
                {
                    var device = (long)reader.Varint();
                    var scope = (AttributeScope)reader.Byte();
                    if (!Enum.IsDefined(scope))
                    {
                        throw new FormatException("The event log row has an unknown attribute scope.");
                    }

                    var n = reader.Count();
                    var entries = new AttributeEntry[n];
                    for (var j = 0; j < n; j++)
                    {
                        var key = reader.String();
                        var ts = reader.Signed();
                        entries[j] = new AttributeEntry(key, ts, reader.Value());
                    }

                    row.Changes.Add(new AttributeChange(device, scope, entries));
                }

                ReadEvents(ref reader, row);
                break;
            case EventLogKind.Device:
                ReadEvents(ref reader, row);
                break;
            default:
                throw new FormatException($"The event log row has an unknown kind {(int)kind}.");
        }

        if (!reader.End)
        {
            throw new FormatException("The event log row has bytes after its end.");
        }
    }

    private static void WriteEvents(ArrayBufferWriter<byte> output, IReadOnlyList<DeviceEventRecord> events)
    {
        WriteVarint(output, (ulong)events.Count);
        foreach (var e in events)
        {
            WriteVarint(output, (ulong)e.DeviceSeq);
            WriteByte(output, (byte)e.Type);
            WriteSigned(output, e.Ts);
            WriteByte(output, e.DataJson is null ? (byte)0 : (byte)1);
            if (e.DataJson is not null)
            {
                WriteString(output, e.DataJson);
            }
        }
    }

    private static void ReadEvents(ref Reader reader, DecodedRow row)
    {
        var count = reader.Count();
        for (var i = 0; i < count; i++)
        {
            var device = (long)reader.Varint();
            var type = (PlatformEventType)reader.Byte();
            if (!Enum.IsDefined(type))
            {
                throw new FormatException("The event log row has an unknown event type.");
            }

            var ts = reader.Signed();
            var json = reader.Byte() == 1 ? reader.String() : null;
            row.Events.Add(new DeviceEventRecord(device, type, ts, json));
        }
    }

    private static void WriteValue(ArrayBufferWriter<byte> output, in KvValue value)
    {
        WriteByte(output, (byte)value.Type);
        switch (value.Type)
        {
            case DataType.Boolean:
                WriteByte(output, value.Boolean ? (byte)1 : (byte)0);
                break;
            case DataType.Long:
                WriteSigned(output, value.Long);
                break;
            case DataType.Double:
                var span = output.GetSpan(8);
                BinaryPrimitives.WriteDoubleLittleEndian(span, value.Double);
                output.Advance(8);
                break;
            default:
                WriteString(output, value.Text ?? "");
                break;
        }
    }

    private static void WriteByte(ArrayBufferWriter<byte> output, byte value)
    {
        output.GetSpan(1)[0] = value;
        output.Advance(1);
    }

    private static void WriteSigned(ArrayBufferWriter<byte> output, long value) => WriteVarint(output, (ulong)((value << 1) ^ (value >> 63)));

    private static void WriteVarint(ArrayBufferWriter<byte> output, ulong value)
    {
        var span = output.GetSpan(10);
        var i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        span[i++] = (byte)value;
        output.Advance(i);
    }

    private static void WriteString(ArrayBufferWriter<byte> output, string text)
    {
        var length = Encoding.UTF8.GetByteCount(text);
        WriteVarint(output, (ulong)length);
        var span = output.GetSpan(length);
        Encoding.UTF8.GetBytes(text, span);
        output.Advance(length);
    }

    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _at;

        public readonly bool End => _at == _data.Length;

        public byte Byte()
        {
            if (_at >= _data.Length)
            {
                throw new FormatException("The event log row ends too soon.");
            }

            return _data[_at++];
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 70; shift += 7)
            {
                var b = Byte();
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw new FormatException("The event log row has a number that is too long.");
        }

        public long Signed()
        {
            var raw = Varint();
            return (long)(raw >> 1) ^ -(long)(raw & 1);
        }

        /// <summary>A count, which cannot be more than the bytes left (every item takes at least one).</summary>
        public int Count()
        {
            var count = Varint();
            if (count > (ulong)(_data.Length - _at))
            {
                throw new FormatException("The event log row has a count larger than its data.");
            }

            return (int)count;
        }

        public string String()
        {
            var length = Count();
            var text = Encoding.UTF8.GetString(_data.Slice(_at, length));
            _at += length;
            return text;
        }

        public KvValue Value()
        {
            var type = (DataType)Byte();
            switch (type)
            {
                case DataType.Boolean:
                    return KvValue.Of(Byte() != 0);
                case DataType.Long:
                    return KvValue.Of(Signed());
                case DataType.Double:
                    if (_data.Length - _at < 8)
                    {
                        throw new FormatException("The event log row ends too soon.");
                    }

                    var d = BinaryPrimitives.ReadDoubleLittleEndian(_data.Slice(_at, 8));
                    _at += 8;
                    return KvValue.Of(d);
                case DataType.String:
                    return KvValue.Of(String());
                case DataType.Json:
                    return KvValue.OfJson(String());
                default:
                    throw new FormatException("The event log row has an unknown value type.");
            }
        }
    }
}
