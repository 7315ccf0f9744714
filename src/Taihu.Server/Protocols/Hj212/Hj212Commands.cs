using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>
/// RPC methods as HJ 212-2017 commands from the platform (the "upper computer") to a station, and the station's
/// answers as RPC replies. Methods in camelCase; times are the station's local time (<c>yyyyMMddHHmmss</c> text), or
/// Unix milliseconds, which are turned into the station's local time.
/// </summary>
/// <remarks>
/// <list type="table">
/// <item><term>getTime</term><description>CN 1011 (read the station's clock); optional <c>polId</c>. Reply <c>{"exeRtn":1,"SystemTime":"yyyyMMddHHmmss"}</c>.</description></item>
/// <item><term>setTime</term><description>CN 1012 <c>SystemTime</c>; optional <c>time</c> (default: the server's clock in the station's zone) and <c>polId</c>.</description></item>
/// <item><term>getRealtimeInterval</term><description>CN 1061. Reply carries <c>RtdInterval</c> (seconds).</description></item>
/// <item><term>setRealtimeInterval</term><description>CN 1062 <c>RtdInterval</c>; <c>seconds</c> from 30 to 3600.</description></item>
/// <item><term>getMinuteInterval</term><description>CN 1063. Reply carries <c>MinInterval</c> (minutes).</description></item>
/// <item><term>setMinuteInterval</term><description>CN 1064 <c>MinInterval</c>; <c>minutes</c> from 1 to 60.</description></item>
/// <item><term>getMinuteHistory, getHourHistory, getDayHistory</term><description>CN 2051, 2061, 2031 with <c>BeginTime</c> and <c>EndTime</c>
/// from <c>begin</c> and <c>end</c>; the data frames the station sends back are stored as telemetry at their <c>DataTime</c>, and the
/// reply counts them: <c>{"exeRtn":1,"frames":n}</c>.</description></item>
/// </list>
/// </remarks>
public static class Hj212Commands
{
    /// <summary>The methods, for the reply to a method that is not one of them.</summary>
    public const string KnownMethods = "getTime, setTime, getRealtimeInterval, setRealtimeInterval, getMinuteInterval, setMinuteInterval, getMinuteHistory, getHourHistory, getDayHistory";

    /// <summary>
    /// The command code and CP of <paramref name="method"/> with <paramref name="paramsJson"/>; false with
    /// <paramref name="error"/> (plain English) when the method is unknown or its parameters are wrong.
    /// </summary>
    public static bool TryBuild(string method, string paramsJson, TimeSpan utcOffset, DateTimeOffset now, out string cn, out string cp, out string? error)
    {
        ArgumentNullException.ThrowIfNull(method);
        cn = "";
        cp = "";
        error = null;
        JsonElement parameters;
        try
        {
            using var document = JsonDocument.Parse(string.IsNullOrWhiteSpace(paramsJson) ? "{}" : paramsJson);
            parameters = document.RootElement.Clone();
        }
        catch (JsonException)
        {
            error = "params must be JSON.";
            return false;
        }

        var text = new StringBuilder();
        switch (method)
        {
            case "getTime":
                cn = "1011";
                if (!TryPolId(parameters, text, out error))
                {
                    return false;
                }

                break;
            case "setTime":
                cn = "1012";
                if (!TryPolId(parameters, text, out error))
                {
                    return false;
                }

                var time = now.ToOffset(utcOffset).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
                if (Property(parameters, "time") is { } given && !TryTime(given, utcOffset, out time, out error))
                {
                    return false;
                }

                Append(text, "SystemTime", time);
                break;
            case "getRealtimeInterval":
                cn = "1061";
                break;
            case "setRealtimeInterval":
                cn = "1062";
                if (!TryInteger(parameters, "seconds", 30, 3600, out var seconds, out error))
                {
                    return false;
                }

                Append(text, "RtdInterval", seconds.ToString(CultureInfo.InvariantCulture));
                break;
            case "getMinuteInterval":
                cn = "1063";
                break;
            case "setMinuteInterval":
                cn = "1064";
                if (!TryInteger(parameters, "minutes", 1, 60, out var minutes, out error))
                {
                    return false;
                }

                Append(text, "MinInterval", minutes.ToString(CultureInfo.InvariantCulture));
                break;
            case "getMinuteHistory":
            case "getHourHistory":
            case "getDayHistory":
                cn = method switch { "getMinuteHistory" => "2051", "getHourHistory" => "2061", _ => "2031" };
                if (Property(parameters, "begin") is not { } begin || Property(parameters, "end") is not { } end)
                {
                    error = $"{method} needs \"begin\" and \"end\": the station's local time as yyyyMMddHHmmss, or Unix milliseconds.";
                    return false;
                }

                if (!TryTime(begin, utcOffset, out var beginText, out error) || !TryTime(end, utcOffset, out var endText, out error))
                {
                    return false;
                }

                if (string.CompareOrdinal(beginText, endText) > 0)
                {
                    error = "\"begin\" must not be after \"end\".";
                    return false;
                }

                Append(text, "BeginTime", beginText);
                Append(text, "EndTime", endText);
                break;
            default:
                error = $"HJ 212 stations know the methods {KnownMethods}; '{method}' is not one of them.";
                return false;
        }

        cp = text.ToString();
        return true;
    }

    /// <summary>What a 9011 request answer's <c>QnRtn</c> means (HJ 212-2017 table of request answers).</summary>
    public static string RequestAnswerText(int qnRtn) => qnRtn switch
    {
        1 => "ready to execute the request",
        2 => "the request was refused",
        3 => "the password (PW) is wrong",
        4 => "the station number (MN) is wrong",
        5 => "the system code (ST) is wrong",
        6 => "the Flag is wrong",
        7 => "the request number (QN) is wrong",
        8 => "the command code (CN) is wrong",
        9 => "the CRC is wrong",
        100 => "unknown error",
        _ => "an answer the standard does not define",
    };

    /// <summary>What a 9012 execution result's <c>ExeRtn</c> means (HJ 212-2017 table of execution results).</summary>
    public static string ExecutionResultText(int exeRtn) => exeRtn switch
    {
        1 => "executed successfully",
        2 => "execution failed for an unknown reason",
        3 => "the command's conditions are wrong",
        4 => "communication timed out",
        5 => "the system is busy",
        6 => "the system has a fault",
        100 => "there is no data",
        _ => "a result the standard does not define",
    };

    /// <summary>The value of <paramref name="name"/> among a CP's <c>name=value</c> items (split by <c>;</c> and <c>,</c>).</summary>
    public static string? Item(string cp, string name)
    {
        ArgumentNullException.ThrowIfNull(cp);
        foreach (var range in cp.AsSpan().SplitAny(';', ','))
        {
            var item = cp.AsSpan(range);
            var eq = item.IndexOf('=');
            if (eq > 0 && item[..eq].SequenceEqual(name))
            {
                return item[(eq + 1)..].ToString();
            }
        }

        return null;
    }

    private static JsonElement? Property(JsonElement parameters, string name) =>
        parameters.ValueKind == JsonValueKind.Object && parameters.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private static bool TryPolId(JsonElement parameters, StringBuilder text, out string? error)
    {
        error = null;
        if (Property(parameters, "polId") is not { } polId)
        {
            return true;
        }

        if (polId.ValueKind != JsonValueKind.String || !IsCode(polId.GetString()!))
        {
            error = "\"polId\" must be a pollutant code such as w01018 (letters and digits).";
            return false;
        }

        Append(text, "PolId", polId.GetString()!);
        return true;
    }

    private static bool TryInteger(JsonElement parameters, string name, int min, int max, out int value, out string? error)
    {
        value = 0;
        error = null;
        if (Property(parameters, name) is { ValueKind: JsonValueKind.Number } number && number.TryGetInt32(out value) && value >= min && value <= max)
        {
            return true;
        }

        error = $"\"{name}\" must be a whole number from {min} to {max}.";
        return false;
    }

    private static bool TryTime(JsonElement value, TimeSpan utcOffset, out string text, out string? error)
    {
        error = null;
        text = "";
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var ms) && ms is >= 0 and <= 253_402_300_799_999)
        {
            text = DateTimeOffset.FromUnixTimeMilliseconds(ms).ToOffset(utcOffset).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
            return true;
        }

        if (value.ValueKind == JsonValueKind.String && value.GetString() is { Length: 14 } s
            && DateTime.TryParseExact(s, "yyyyMMddHHmmss", CultureInfo.InvariantCulture, DateTimeStyles.None, out _))
        {
            text = s;
            return true;
        }

        error = "Times must be the station's local time as yyyyMMddHHmmss text, or Unix milliseconds.";
        return false;
    }

    private static bool IsCode(string text)
    {
        if (text.Length is 0 or > 20)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!char.IsAsciiLetterOrDigit(c))
            {
                return false;
            }
        }

        return true;
    }

    private static void Append(StringBuilder text, string name, string value)
    {
        if (text.Length > 0)
        {
            text.Append(';');
        }

        text.Append(name).Append('=').Append(value);
    }
}
