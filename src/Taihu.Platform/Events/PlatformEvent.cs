using System.Buffers.Binary;
using System.Text.Json;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Events;

/// <summary>What happened to a device, as rules and integrations see it.</summary>
public enum PlatformEventType
{
    Telemetry,
    Attributes,
    Connect,
    Disconnect,
    AlarmCreated,
    AlarmUpdated,
    AlarmCleared,
    RpcRequest,
}

public static class PlatformEventTypes
{
    /// <summary>The names used in the API, in integrations' filters and in the events sent out.</summary>
    public static string Name(PlatformEventType type) => type switch
    {
        PlatformEventType.Telemetry => "TELEMETRY",
        PlatformEventType.Attributes => "ATTRIBUTES",
        PlatformEventType.Connect => "CONNECT",
        PlatformEventType.Disconnect => "DISCONNECT",
        PlatformEventType.AlarmCreated => "ALARM_CREATED",
        PlatformEventType.AlarmUpdated => "ALARM_UPDATED",
        PlatformEventType.AlarmCleared => "ALARM_CLEARED",
        _ => "RPC_REQUEST",
    };

    public static bool TryParse(string? name, out PlatformEventType type)
    {
        foreach (var candidate in Enum.GetValues<PlatformEventType>())
        {
            if (string.Equals(Name(candidate), name, StringComparison.Ordinal))
            {
                type = candidate;
                return true;
            }
        }

        type = default;
        return false;
    }
}

/// <summary>
/// One event from the event log: a device's telemetry message (its points), an attribute change of one scope, a
/// connect or disconnect, an alarm change or a client-side RPC request. <see cref="Position"/> is the event log
/// row it came from and <see cref="Index"/> its place in that row, so <see cref="Id"/> is the same every time the
/// event is read (a retried webhook carries the same id). Events of one device come in the order they committed.
/// </summary>
public sealed class PlatformEvent
{
    public required long Position { get; init; }

    public required int Index { get; init; }

    public required PlatformEventType Type { get; init; }

    public required Device Device { get; init; }

    /// <summary>When it happened: the points' newest ts, the attributes' update time, the connect time, ...</summary>
    public required long Ts { get; init; }

    /// <summary>When the row holding it was written (ms, the writer's clock, just before the commit).</summary>
    public long Committed { get; init; }

    /// <summary>Telemetry: the points, in the order they came.</summary>
    public IReadOnlyList<TelemetryPoint> Points { get; init; } = [];

    /// <summary>Attributes: the scope and the entries written.</summary>
    public AttributeScope Scope { get; init; }

    public IReadOnlyList<AttributeEntry> Attributes { get; init; } = [];

    /// <summary>Alarm changes and RPC requests: the data as JSON (the alarm, or the request's method and params).</summary>
    public string? DataJson { get; init; }

    /// <summary>A stable id derived from the position: the same on every read and every retry.</summary>
    public Guid Id => IdOf(Position, Index);

    public static Guid IdOf(long position, int index)
    {
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteInt64BigEndian(bytes, position);
        BinaryPrimitives.WriteInt32BigEndian(bytes[8..], index);
        // Version 8 (custom) and the RFC 4122 variant, so that it reads as a well-formed UUID.
        BinaryPrimitives.WriteInt32BigEndian(bytes[12..], 0x7A1B_0000);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x80);
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);
        return new Guid(bytes, bigEndian: true);
    }

    /// <summary>
    /// Writes the event's data as integrations send it: telemetry as ThingsBoard's <c>[{"ts","values"}]</c> grouped by
    /// ts, attributes as <c>{"scope","values"}</c>, connect and disconnect as <c>{"ts"}</c>, the rest as stored.
    /// </summary>
    public void WriteData(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        switch (Type)
        {
            case PlatformEventType.Telemetry:
                writer.WriteStartArray();
                var i = 0;
                while (i < Points.Count)
                {
                    var ts = Points[i].Ts;
                    writer.WriteStartObject();
                    writer.WriteNumber("ts", ts);
                    writer.WriteStartObject("values");
                    for (var j = i; j < Points.Count; j++)
                    {
                        if (Points[j].Ts == ts && !SeenLater(Points, j, ts))
                        {
                            writer.WritePropertyName(Points[j].Key);
                            Points[j].Value.WriteTo(writer);
                        }
                    }

                    writer.WriteEndObject();
                    writer.WriteEndObject();
                    // The next ts not yet written.
                    i++;
                    while (i < Points.Count && WrittenAlready(Points, i))
                    {
                        i++;
                    }
                }

                writer.WriteEndArray();
                break;
            case PlatformEventType.Attributes:
                writer.WriteStartObject();
                writer.WriteString("scope", SqlAttributeStore.ScopeName(Scope));
                writer.WriteStartObject("values");
                foreach (var entry in Attributes)
                {
                    writer.WritePropertyName(entry.Key);
                    entry.Value.WriteTo(writer);
                }

                writer.WriteEndObject();
                writer.WriteEndObject();
                break;
            case PlatformEventType.Connect or PlatformEventType.Disconnect:
                writer.WriteStartObject();
                writer.WriteNumber("ts", Ts);
                writer.WriteEndObject();
                break;
            default:
                if (DataJson is null)
                {
                    writer.WriteNullValue();
                }
                else
                {
                    writer.WriteRawValue(DataJson, skipInputValidation: true);
                }

                break;
        }

        // A key sent twice at one ts in one message: the last value is the one stored, so only it is written.
        static bool SeenLater(IReadOnlyList<TelemetryPoint> points, int j, long ts)
        {
            for (var k = j + 1; k < points.Count; k++)
            {
                if (points[k].Ts == ts && points[k].Key == points[j].Key)
                {
                    return true;
                }
            }

            return false;
        }

        static bool WrittenAlready(IReadOnlyList<TelemetryPoint> points, int i)
        {
            for (var k = 0; k < i; k++)
            {
                if (points[k].Ts == points[i].Ts)
                {
                    return true;
                }
            }

            return false;
        }
    }
}
