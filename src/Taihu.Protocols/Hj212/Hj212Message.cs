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
        if (!Hj212Segment.TryParse(segment, out var read, out error))
        {
            return false;
        }

        cp = read.CpRange;
        message = new Hj212Message(
            read.HasQn ? read.Qn.ToString() : null, read.HasSt ? Text(read.St, names) : null, read.HasCn ? Text(read.Cn, names) : null,
            read.HasPw ? Text(read.Pw, names) : null, read.HasMn ? Text(read.Mn, names) : null, read.Flag, read.PacketCount, read.PacketNumber,
            copyCp ? read.Cp.ToString() : "");
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

    internal static string Shorten(ReadOnlySpan<char> text) => text.Length <= 40 ? text.ToString() : string.Concat(text[..40], "...");
}
