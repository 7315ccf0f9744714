using System.Buffers.Binary;

namespace Taihu.Protocols.Jt808;

/// <summary>Why a location body was not read.</summary>
public enum Jt808LocationError
{
    None,

    /// <summary>Shorter than the 28 bytes of the basic fields.</summary>
    TooShort,

    /// <summary>The time is not BCD, or not a date and time (an all-zero time is allowed: the terminal has no fix).</summary>
    BadTime,

    /// <summary>An extra item's length runs past the end of the body.</summary>
    BadExtra,
}

/// <summary>
/// A location report (the body of 0x0200, an item of 0x0704, the tail of 0x0201): alarm flags, status bits,
/// position, altitude, speed, direction and the terminal's time, then extra items (id, length, value). A value type
/// read straight from the body, so that decoding a report allocates nothing; extras not listed here are skipped
/// and counted in <see cref="UnknownExtras"/>.
/// </summary>
/// <remarks>
/// Units as the standard gives them: latitude and longitude in millionths of a degree, south and west from status
/// bits 2 and 3; altitude in metres; speed in tenths of a km/h; direction in degrees from north; time as BCD
/// YYMMDDhhmmss in GMT+8. Extras: 0x01 mileage (1/10 km), 0x02 fuel (1/10 L), 0x03 the tachograph's speed (1/10
/// km/h), 0x04 the id of an alarm event to be confirmed (2013), 0x06 the carriage temperature (°C, signed; 2019),
/// 0x11 overspeed alarm detail (location type, area id), 0x12 area entry/exit alarm detail (location type, area
/// id, direction), 0x13 route driving time alarm detail (route id, time s, result), 0x25 extended vehicle signals,
/// 0x2A IO status, 0x2B analog inputs (AD0 in the low word, AD1 in the high), 0x30 wireless signal strength, 0x31
/// GNSS satellites.
/// </remarks>
public struct Jt808Location
{
    /// <summary>The fixed part: alarm, status, latitude, longitude (4 bytes each), altitude, speed, direction (2 each), time (6).</summary>
    public const int BasicLength = 28;

    private static readonly long[] MonthDays = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

    public uint Alarm { get; private set; }

    public uint Status { get; private set; }

    public uint LatitudeMicrodegrees { get; private set; }

    public uint LongitudeMicrodegrees { get; private set; }

    public ushort Altitude { get; private set; }

    /// <summary>Tenths of a km/h.</summary>
    public ushort Speed { get; private set; }

    public ushort Direction { get; private set; }

    /// <summary>The report's time in ms since the Unix epoch (UTC), or 0 when the terminal sent an all-zero time.</summary>
    public long TimeMs { get; private set; }

    public readonly double Latitude => ((Status & 0x4) != 0 ? -1 : 1) * (LatitudeMicrodegrees / 1e6);

    public readonly double Longitude => ((Status & 0x8) != 0 ? -1 : 1) * (LongitudeMicrodegrees / 1e6);

    public uint? Mileage { get; private set; }

    public ushort? Fuel { get; private set; }

    public ushort? RecordedSpeed { get; private set; }

    public ushort? AlarmEventId { get; private set; }

    public short? CarriageTemperature { get; private set; }

    public byte? OverspeedLocationType { get; private set; }

    public uint? OverspeedAreaId { get; private set; }

    public byte? AreaLocationType { get; private set; }

    public uint? AreaId { get; private set; }

    public byte? AreaDirection { get; private set; }

    public uint? RouteId { get; private set; }

    public ushort? RouteDriveTime { get; private set; }

    public byte? RouteResult { get; private set; }

    public uint? VehicleSignal { get; private set; }

    public ushort? IoStatus { get; private set; }

    public ushort? Analog0 { get; private set; }

    public ushort? Analog1 { get; private set; }

    public byte? SignalStrength { get; private set; }

    public byte? Satellites { get; private set; }

    /// <summary>Extra items with ids not read here (vendor items, 0xE0 and above, among them), or of an unexpected length.</summary>
    public int UnknownExtras { get; private set; }

    public static Jt808LocationError TryRead(ReadOnlySpan<byte> body, out Jt808Location location)
    {
        location = default;
        if (body.Length < BasicLength)
        {
            return Jt808LocationError.TooShort;
        }

        location.Alarm = BinaryPrimitives.ReadUInt32BigEndian(body);
        location.Status = BinaryPrimitives.ReadUInt32BigEndian(body[4..]);
        location.LatitudeMicrodegrees = BinaryPrimitives.ReadUInt32BigEndian(body[8..]);
        location.LongitudeMicrodegrees = BinaryPrimitives.ReadUInt32BigEndian(body[12..]);
        location.Altitude = BinaryPrimitives.ReadUInt16BigEndian(body[16..]);
        location.Speed = BinaryPrimitives.ReadUInt16BigEndian(body[18..]);
        location.Direction = BinaryPrimitives.ReadUInt16BigEndian(body[20..]);
        if (!TryReadTime(body.Slice(22, 6), out var time))
        {
            return Jt808LocationError.BadTime;
        }

        location.TimeMs = time;
        var extras = body[BasicLength..];
        while (!extras.IsEmpty)
        {
            if (extras.Length < 2 || extras[1] > extras.Length - 2)
            {
                return Jt808LocationError.BadExtra;
            }

            var id = extras[0];
            var value = extras.Slice(2, extras[1]);
            extras = extras[(2 + value.Length)..];
            if (!location.TryReadExtra(id, value))
            {
                location.UnknownExtras++;
            }
        }

        return Jt808LocationError.None;
    }

    private bool TryReadExtra(byte id, ReadOnlySpan<byte> value)
    {
        switch (id, value.Length)
        {
            case (0x01, 4): Mileage = BinaryPrimitives.ReadUInt32BigEndian(value); return true;
            case (0x02, 2): Fuel = BinaryPrimitives.ReadUInt16BigEndian(value); return true;
            case (0x03, 2): RecordedSpeed = BinaryPrimitives.ReadUInt16BigEndian(value); return true;
            case (0x04, 2): AlarmEventId = BinaryPrimitives.ReadUInt16BigEndian(value); return true;
            case (0x06, 2): CarriageTemperature = BinaryPrimitives.ReadInt16BigEndian(value); return true;
            case (0x11, 1):
                OverspeedLocationType = value[0];
                return true;
            case (0x11, 5):
                OverspeedLocationType = value[0];
                OverspeedAreaId = BinaryPrimitives.ReadUInt32BigEndian(value[1..]);
                return true;
            case (0x12, 6):
                AreaLocationType = value[0];
                AreaId = BinaryPrimitives.ReadUInt32BigEndian(value[1..]);
                AreaDirection = value[5];
                return true;
            case (0x13, 7):
                RouteId = BinaryPrimitives.ReadUInt32BigEndian(value);
                RouteDriveTime = BinaryPrimitives.ReadUInt16BigEndian(value[4..]);
                RouteResult = value[6];
                return true;
            case (0x25, 4): VehicleSignal = BinaryPrimitives.ReadUInt32BigEndian(value); return true;
            case (0x2A, 2): IoStatus = BinaryPrimitives.ReadUInt16BigEndian(value); return true;
            case (0x2B, 4):
                Analog0 = BinaryPrimitives.ReadUInt16BigEndian(value[2..]);
                Analog1 = BinaryPrimitives.ReadUInt16BigEndian(value);
                return true;
            case (0x30, 1): SignalStrength = value[0]; return true;
            case (0x31, 1): Satellites = value[0]; return true;
            default: return false;
        }
    }

    /// <summary>BCD YYMMDDhhmmss in GMT+8 (years 2000 to 2099) to ms since the epoch; all zeros is 0 (no time).</summary>
    public static bool TryReadTime(ReadOnlySpan<byte> bcd, out long unixMs)
    {
        unixMs = 0;
        Span<int> parts = stackalloc int[6];
        var zero = true;
        for (var i = 0; i < 6; i++)
        {
            int high = bcd[i] >> 4, low = bcd[i] & 0xF;
            if (high > 9 || low > 9)
            {
                return false;
            }

            parts[i] = (high * 10) + low;
            zero &= bcd[i] == 0;
        }

        if (zero)
        {
            return true;
        }

        int year = 2000 + parts[0], month = parts[1], day = parts[2];
        if (month is < 1 or > 12 || day < 1 || day > MonthDays[month] || (month == 2 && day == 29 && !DateTime.IsLeapYear(year))
            || parts[3] > 23 || parts[4] > 59 || parts[5] > 59)
        {
            return false;
        }

        var local = new DateTime(year, month, day, parts[3], parts[4], parts[5], DateTimeKind.Unspecified);
        unixMs = new DateTimeOffset(local, TimeSpan.FromHours(8)).ToUnixTimeMilliseconds();
        return true;
    }
}
