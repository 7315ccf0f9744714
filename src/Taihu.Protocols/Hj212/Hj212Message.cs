using System.Globalization;

namespace Taihu.Protocols.Hj212;

/// <summary>
/// One HJ 212 data segment: <c>QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;[PNUM=..;PNO=..;]CP=&amp;&amp;...&amp;&amp;</c>.
/// </summary>
/// <param name="Qn">Request number (a timestamp to the millisecond, <c>yyyyMMddHHmmssfff</c>); answers carry it back.</param>
/// <param name="St">System code (22 air, 32 surface water, 91 system interaction, ...).</param>
/// <param name="Cn">Command code (2011 real-time data, 2051 minute, 2061 hour, 2031 day, 9014 data answer, ...).</param>
/// <param name="Pw">Access password.</param>
/// <param name="Mn">Device (station) number: identifies the device.</param>
/// <param name="Flag">Bit 0: an answer is asked for; bit 1: the message is one packet of several; bits 2 to 7: the edition (1 for HJ 212-2017, 0 for 2005).</param>
/// <param name="PacketCount">PNUM: how many packets the message was split into.</param>
/// <param name="PacketNumber">PNO: which of them this is, from 1.</param>
/// <param name="Cp">What stands between <c>CP=&amp;&amp;</c> and the closing <c>&amp;&amp;</c>.</param>
public sealed record Hj212Message(string? Qn, string? St, string? Cn, string? Pw, string? Mn, int? Flag, int? PacketCount, int? PacketNumber, string Cp)
{
    /// <summary>The station asks for an answer (Flag bit 0).</summary>
    public bool AnswerRequested => Flag is { } flag && (flag & 1) != 0;

    /// <summary>One packet of a split message (Flag bit 1, with PNUM and PNO).</summary>
    public bool IsSplit => Flag is { } flag && (flag & 2) != 0 && PacketCount is > 1;

    /// <summary>The edition from Flag's bits 2 to 7: 1 for HJ 212-2017, 0 for the 2005 edition (and when there is no Flag).</summary>
    public int Edition => Flag is { } flag ? flag >> 2 : 0;

    // Widths from HJ 212-2017's table of the data segment (C20 QN, C5 ST, C7 CN, C9 PW, C27 MN, N3 Flag, N4 PNUM/PNO).
    private static readonly (string Name, int Max)[] Limits = [("QN", 20), ("ST", 5), ("CN", 7), ("PW", 9), ("MN", 27)];

    /// <summary>Parses a data segment; on failure <paramref name="error"/> names the field and what is wrong with it.</summary>
    public static bool TryParse(ReadOnlySpan<char> segment, out Hj212Message? message, out string? error) => TryParse(segment, null, out message, out error);

    /// <summary>
    /// As <see cref="TryParse(ReadOnlySpan{char}, out Hj212Message?, out string?)"/>, taking ST, CN, PW and MN from
    /// <paramref name="names"/> (a station sends the same ones in every frame).
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> segment, Hj212NameCache? names, out Hj212Message? message, out string? error) =>
        TryParse(segment, names, copyCp: true, out message, out _, out error);

    /// <summary>
    /// As <see cref="TryParse(ReadOnlySpan{char}, Hj212NameCache?, out Hj212Message?, out string?)"/>; with
    /// <paramref name="copyCp"/> false the message's <see cref="Cp"/> is empty and the caller reads the CP from
    /// <paramref name="segment"/> at <paramref name="cp"/> instead (a data upload's points, read without copying the text).
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> segment, Hj212NameCache? names, bool copyCp, out Hj212Message? message, out Range cp, out string? error)
    {
        message = null;
        cp = default;
        var cpAt = segment.IndexOf("CP=&&", StringComparison.Ordinal);
        if (cpAt < 0)
        {
            error = "The data segment has no CP=&&...&& field.";
            return false;
        }

        if (segment.Length < cpAt + 7 || !segment.EndsWith("&&", StringComparison.Ordinal))
        {
            error = "CP is not closed with && at the end of the data segment.";
            return false;
        }

        cp = new Range(cpAt + 5, segment.Length - 2);
        string? qn = null, st = null, cn = null, pw = null, mn = null;
        int? flag = null, pnum = null, pno = null;
        var header = segment[..cpAt];
        foreach (var range in header.Split(';'))
        {
            var field = header[range];
            if (field.IsEmpty)
            {
                continue;
            }

            var eq = field.IndexOf('=');
            if (eq <= 0)
            {
                error = $"The field '{Shorten(field)}' has no name=value form.";
                return false;
            }

            var name = field[..eq];
            var value = field[(eq + 1)..];
            switch (name)
            {
                case "QN": qn = value.ToString(); break;
                case "ST": st = Text(value, names); break;
                case "CN": cn = Text(value, names); break;
                case "PW": pw = Text(value, names); break;
                case "MN": mn = Text(value, names); break;
                case "Flag":
                    if (!TryNumber(value, 3, out var f) || f > 255)
                    {
                        error = $"Flag must be a number from 0 to 255; got '{Shorten(value)}'.";
                        return false;
                    }

                    flag = f;
                    break;
                case "PNUM":
                    if (!TryNumber(value, 4, out var n) || n < 1)
                    {
                        error = $"PNUM must be a number from 1 to 9999; got '{Shorten(value)}'.";
                        return false;
                    }

                    pnum = n;
                    break;
                case "PNO":
                    if (!TryNumber(value, 4, out var p) || p < 1)
                    {
                        error = $"PNO must be a number from 1 to 9999; got '{Shorten(value)}'.";
                        return false;
                    }

                    pno = p;
                    break;
                default:
                    // Fields of other editions or vendors: not needed to store the data.
                    break;
            }
        }

        message = new Hj212Message(qn, st, cn, pw, mn, flag, pnum, pno, copyCp ? segment[cp].ToString() : "");
        foreach (var (name, max) in Limits)
        {
            var value = name switch { "QN" => qn, "ST" => st, "CN" => cn, "PW" => pw, _ => mn };
            if (value is not null && value.Length > max)
            {
                message = null;
                error = $"{name} may have at most {max} characters; got {value.Length}.";
                return false;
            }
        }

        if (pno > pnum)
        {
            message = null;
            error = $"PNO {pno} is past PNUM {pnum}.";
            return false;
        }

        error = null;
        return true;
    }

    /// <summary>The data segment of this message, as the standard orders its fields.</summary>
    public string Format()
    {
        var text = new System.Text.StringBuilder(64 + Cp.Length);
        Append(text, "QN", Qn);
        Append(text, "ST", St);
        Append(text, "CN", Cn);
        Append(text, "PW", Pw);
        Append(text, "MN", Mn);
        Append(text, "Flag", Flag?.ToString(CultureInfo.InvariantCulture));
        Append(text, "PNUM", PacketCount?.ToString(CultureInfo.InvariantCulture));
        Append(text, "PNO", PacketNumber?.ToString(CultureInfo.InvariantCulture));
        return text.Append("CP=&&").Append(Cp).Append("&&").ToString();
    }

    private static void Append(System.Text.StringBuilder text, string name, string? value)
    {
        if (value is not null)
        {
            text.Append(name).Append('=').Append(value).Append(';');
        }
    }

    private static string Text(ReadOnlySpan<char> value, Hj212NameCache? names) => names is null || value.Length > 32 ? value.ToString() : names.Get(value);

    private static bool TryNumber(ReadOnlySpan<char> text, int maxDigits, out int value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > maxDigits)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }

            value = (value * 10) + (c - '0');
        }

        return true;
    }

    internal static string Shorten(ReadOnlySpan<char> text) => text.Length <= 40 ? text.ToString() : string.Concat(text[..40], "...");
}
