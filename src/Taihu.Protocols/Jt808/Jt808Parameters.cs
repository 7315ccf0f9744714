using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;

namespace Taihu.Protocols.Jt808;

/// <summary>How a terminal parameter's value is written.</summary>
public enum Jt808ParameterType
{
    Byte,
    Word,
    Dword,
    String,
}

/// <summary>One terminal parameter of 0x8103 by its name in Taihu's RPC.</summary>
public sealed record Jt808Parameter(uint Id, string Name, Jt808ParameterType Type);

/// <summary>
/// The body of set terminal parameters 0x8103 (a count, then id DWORD, length BYTE, value per parameter), built
/// from RPC params such as <c>{"heartbeatInterval":30}</c> or, for a parameter not named here, by id
/// (<c>{"0x0029":10}</c>: a number is written as a DWORD, a string in GBK).
/// </summary>
public static class Jt808Parameters
{
    /// <summary>The parameters with names (JT/T 808-2013 table 12, as kept in 2019).</summary>
    public static IReadOnlyList<Jt808Parameter> Known { get; } =
    [
        new(0x0001, "heartbeatInterval", Jt808ParameterType.Dword),
        new(0x0002, "tcpReplyTimeout", Jt808ParameterType.Dword),
        new(0x0003, "tcpRetransmissions", Jt808ParameterType.Dword),
        new(0x0004, "udpReplyTimeout", Jt808ParameterType.Dword),
        new(0x0005, "udpRetransmissions", Jt808ParameterType.Dword),
        new(0x0006, "smsReplyTimeout", Jt808ParameterType.Dword),
        new(0x0007, "smsRetransmissions", Jt808ParameterType.Dword),
        new(0x0010, "apn", Jt808ParameterType.String),
        new(0x0011, "apnUser", Jt808ParameterType.String),
        new(0x0012, "apnPassword", Jt808ParameterType.String),
        new(0x0013, "mainServerAddress", Jt808ParameterType.String),
        new(0x0017, "backupServerAddress", Jt808ParameterType.String),
        new(0x0018, "tcpPort", Jt808ParameterType.Dword),
        new(0x0019, "udpPort", Jt808ParameterType.Dword),
        new(0x0020, "reportingStrategy", Jt808ParameterType.Dword),
        new(0x0021, "reportingScheme", Jt808ParameterType.Dword),
        new(0x0022, "driverAbsentReportingInterval", Jt808ParameterType.Dword),
        new(0x0027, "sleepReportingInterval", Jt808ParameterType.Dword),
        new(0x0028, "emergencyReportingInterval", Jt808ParameterType.Dword),
        new(0x0029, "defaultReportingInterval", Jt808ParameterType.Dword),
        new(0x002C, "defaultReportingDistance", Jt808ParameterType.Dword),
        new(0x002D, "driverAbsentReportingDistance", Jt808ParameterType.Dword),
        new(0x002E, "sleepReportingDistance", Jt808ParameterType.Dword),
        new(0x002F, "emergencyReportingDistance", Jt808ParameterType.Dword),
        new(0x0030, "cornerAngle", Jt808ParameterType.Dword),
        new(0x0055, "maxSpeed", Jt808ParameterType.Dword),
        new(0x0056, "overspeedDuration", Jt808ParameterType.Dword),
        new(0x0080, "odometer", Jt808ParameterType.Dword),
        new(0x0081, "provinceId", Jt808ParameterType.Word),
        new(0x0082, "cityId", Jt808ParameterType.Word),
        new(0x0083, "plateNumber", Jt808ParameterType.String),
        new(0x0084, "plateColor", Jt808ParameterType.Byte),
    ];

    private static readonly Dictionary<string, Jt808Parameter> ByName = Known.ToDictionary(p => p.Name, StringComparer.Ordinal);
    private static readonly Dictionary<uint, Jt808Parameter> ById = Known.ToDictionary(p => p.Id);

    /// <summary>Writes the 0x8103 body for <paramref name="parameters"/> (a JSON object); false with a plain-English error when it cannot.</summary>
    public static bool TryWrite(JsonElement parameters, Span<byte> into, out int length, out string? error)
    {
        length = 0;
        if (parameters.ValueKind != JsonValueKind.Object)
        {
            error = "setParameters takes an object of parameters, such as {\"heartbeatInterval\":30} or {\"0x0029\":10}.";
            return false;
        }

        var n = 1;
        var count = 0;
        foreach (var property in parameters.EnumerateObject())
        {
            if (!TryFind(property.Name, property.Value, out var parameter))
            {
                error = $"Unknown parameter '{property.Name}': use one of {string.Join(", ", ByName.Keys)}, or an id such as \"0x0029\".";
                return false;
            }

            if (count == 255)
            {
                error = "At most 255 parameters fit in one message.";
                return false;
            }

            if (!TryWriteValue(parameter, property.Value, into[n..], out var written, out error))
            {
                return false;
            }

            n += written;
            count++;
        }

        if (count == 0)
        {
            error = "setParameters needs at least one parameter.";
            return false;
        }

        into[0] = (byte)count;
        length = n;
        error = null;
        return true;
    }

    private static bool TryFind(string name, JsonElement value, out Jt808Parameter parameter)
    {
        if (ByName.TryGetValue(name, out parameter!))
        {
            return true;
        }

        if (name.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            && uint.TryParse(name.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var id))
        {
            parameter = ById.TryGetValue(id, out var known) ? known
                : new Jt808Parameter(id, name, value.ValueKind == JsonValueKind.String ? Jt808ParameterType.String : Jt808ParameterType.Dword);
            return true;
        }

        return false;
    }

    private static bool TryWriteValue(Jt808Parameter parameter, JsonElement value, Span<byte> into, out int written, out string? error)
    {
        written = 0;
        error = null;
        var size = parameter.Type switch
        {
            Jt808ParameterType.Byte => 1,
            Jt808ParameterType.Word => 2,
            Jt808ParameterType.Dword => 4,
            _ => -1,
        };
        if (size < 0)
        {
            if (value.ValueKind != JsonValueKind.String)
            {
                error = $"Parameter '{parameter.Name}' is text.";
                return false;
            }

            var text = value.GetString()!;
            var bytes = Jt808Text.Gbk.GetByteCount(text);
            if (bytes > 255 || 5 + bytes > into.Length)
            {
                error = $"Parameter '{parameter.Name}' is too long.";
                return false;
            }

            size = Jt808Text.Gbk.GetBytes(text, into[5..]);
        }
        else
        {
            var max = size == 4 ? uint.MaxValue : size == 2 ? ushort.MaxValue : byte.MaxValue;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetUInt32(out var number) || number > max)
            {
                error = $"Parameter '{parameter.Name}' is a whole number from 0 to {max}.";
                return false;
            }

            if (5 + size > into.Length)
            {
                error = "The parameters do not fit in one message.";
                return false;
            }

            switch (size)
            {
                case 1: into[5] = (byte)number; break;
                case 2: BinaryPrimitives.WriteUInt16BigEndian(into[5..], (ushort)number); break;
                default: BinaryPrimitives.WriteUInt32BigEndian(into[5..], number); break;
            }
        }

        BinaryPrimitives.WriteUInt32BigEndian(into, parameter.Id);
        into[4] = (byte)size;
        written = 5 + size;
        return true;
    }
}
