using Taihu.Platform.Events;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// The event log's row format: every value type round-trips, and a damaged or foreign row fails with
/// <see cref="FormatException"/> (which the dispatcher turns into a skipped row and a log line), never with another
/// exception, an endless loop or a huge allocation.
/// </summary>
public sealed class EventCodecTests
{
    private static readonly DevicePoint[] s_points =
    [
        new(1, new TelemetryPoint("b", -5, KvValue.Of(true))),
        new(long.MaxValue, new TelemetryPoint("l", long.MinValue, KvValue.Of(long.MinValue))),
        new(3, new TelemetryPoint("d", long.MaxValue, KvValue.Of(double.NaN))),
        new(3, new TelemetryPoint("温度", 0, KvValue.Of("文字 \u0000 text"))),
        new(4, new TelemetryPoint("", 1, KvValue.OfJson("""{"a":[1,2,{"b":null}]}"""))),
    ];

    [Fact]
    public void Every_value_type_round_trips()
    {
        var row = new DecodedRow();
        EventCodec.Decode(EventLogKind.Telemetry, EventCodec.EncodeTelemetry(s_points), row);
        Assert.Equal(s_points.Length, row.Points.Count);
        for (var i = 0; i < s_points.Length; i++)
        {
            Assert.Equal(s_points[i].DeviceSeq, row.Points[i].DeviceSeq);
            Assert.Equal(s_points[i].Point.Key, row.Points[i].Point.Key);
            Assert.Equal(s_points[i].Point.Ts, row.Points[i].Point.Ts);
            Assert.Equal(s_points[i].Point.Value.ToString(), row.Points[i].Point.Value.ToString());
            Assert.Equal(s_points[i].Point.Value.Type, row.Points[i].Point.Value.Type);
        }

        var events = new[] { new DeviceEventRecord(9, PlatformEventType.AlarmCleared, 77, """{"type":"x"}"""), new DeviceEventRecord(9, PlatformEventType.Disconnect, 78) };
        row = new DecodedRow();
        EventCodec.Decode(EventLogKind.Attributes,
            EventCodec.EncodeAttributes([new AttributeChange(9, AttributeScope.Shared, [new AttributeEntry("k", 5, KvValue.Of(2.5))])], events), row);
        Assert.Equal((9L, AttributeScope.Shared, "k", 2.5), (row.Changes[0].DeviceSeq, row.Changes[0].Scope, row.Changes[0].Entries[0].Key, row.Changes[0].Entries[0].Value.Double));
        Assert.Equal(events, row.Events);

        row = new DecodedRow();
        EventCodec.Decode(EventLogKind.Device, EventCodec.EncodeEvents(events), row);
        Assert.Equal(events, row.Events);
    }

    [Fact]
    public void Every_truncation_of_a_row_is_a_format_error()
    {
        var body = EventCodec.EncodeTelemetry(s_points);
        for (var length = 0; length < body.Length; length++)
        {
            Assert.Throws<FormatException>(() => EventCodec.Decode(EventLogKind.Telemetry, body.AsSpan(0, length), new DecodedRow()));
        }
    }

    [Theory]
    [InlineData(new byte[] { 2, 0 })] // a newer version
    [InlineData(new byte[] { 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F })] // a count far beyond the data
    [InlineData(new byte[] { 1, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 })] // a varint longer than 64 bits
    [InlineData(new byte[] { 1, 1, 1, 0x6B, 1, 1, 0, 0, 9 })] // an unknown value type
    [InlineData(new byte[] { 1, 1, 1, 0x6B, 1, 1, 3, 0, 1, 1 })] // a key index beyond the key table
    [InlineData(new byte[] { 1, 0, 0, 7 })] // bytes after the end
    public void A_damaged_row_is_a_format_error(byte[] body)
    {
        Assert.Throws<FormatException>(() => EventCodec.Decode(EventLogKind.Telemetry, body, new DecodedRow()));
    }

    [Fact]
    public void An_unknown_kind_or_event_type_is_a_format_error()
    {
        Assert.Throws<FormatException>(() => EventCodec.Decode((EventLogKind)42, EventCodec.EncodeEvents([]), new DecodedRow()));
        var body = EventCodec.EncodeEvents([new DeviceEventRecord(1, PlatformEventType.Connect, 5)]);
        body[3] = 200; // the event type byte
        Assert.Throws<FormatException>(() => EventCodec.Decode(EventLogKind.Device, body, new DecodedRow()));
    }

    [Fact]
    public void Random_bytes_never_throw_anything_but_a_format_error()
    {
        var random = new Random(12345);
        var valid = EventCodec.EncodeAttributes([new AttributeChange(5, AttributeScope.Client, [new AttributeEntry("a", 1, KvValue.Of("x"))])],
            [new DeviceEventRecord(5, PlatformEventType.RpcRequest, 3, "{}")]);
        for (var i = 0; i < 5000; i++)
        {
            var body = (byte[])valid.Clone();
            body[random.Next(body.Length)] = (byte)random.Next(256);
            var noise = new byte[random.Next(0, 40)];
            random.NextBytes(noise);
            foreach (var candidate in new[] { body, noise })
            {
                foreach (var kind in new[] { EventLogKind.Telemetry, EventLogKind.Attributes, EventLogKind.Device })
                {
                    try
                    {
                        EventCodec.Decode(kind, candidate, new DecodedRow());
                    }
                    catch (FormatException)
                    {
                    }
                }
            }
        }
    }
}
