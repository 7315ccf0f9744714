namespace Taihu.Protocols.Hj212;

/// <summary>
/// One HJ 212 data segment read in place: its fields are spans of the characters it was parsed from, so reading a
/// frame allocates nothing (a listener keeps what it needs: the station's repeated names from its
/// <see cref="Hj212NameCache"/>, the QN copied into a buffer of its own, the CP's points). <see cref="Hj212Message"/>
/// is the same segment as an object, for what outlives the frame (split packets, commands).
/// </summary>
public readonly ref struct Hj212Segment
{
    // Widths from HJ 212-2017's table of the data segment (C20 QN, C5 ST, C7 CN, C9 PW, C27 MN, N3 Flag, N4 PNUM/PNO).
    public const int MaxQnLength = 20;
    private const int MaxStLength = 5;
    private const int MaxCnLength = 7;
    private const int MaxPwLength = 9;
    private const int MaxMnLength = 27;

    private readonly ReadOnlySpan<char> _text;
    private readonly Range _qn, _st, _cn, _pw, _mn;
    private readonly Fields _present;

    private Hj212Segment(ReadOnlySpan<char> text, Range qn, Range st, Range cn, Range pw, Range mn, Fields present, int? flag, int? pnum, int? pno, Range cp)
    {
        _text = text;
        (_qn, _st, _cn, _pw, _mn, _present) = (qn, st, cn, pw, mn, present);
        Flag = flag;
        PacketCount = pnum;
        PacketNumber = pno;
        CpRange = cp;
    }

    [Flags]
    private enum Fields
    {
        None = 0,
        Qn = 1,
        St = 2,
        Cn = 4,
        Pw = 8,
        Mn = 16,
    }

    /// <summary>Request number (empty when absent; see <see cref="HasQn"/>).</summary>
    public ReadOnlySpan<char> Qn => _text[_qn];

    public bool HasQn => (_present & Fields.Qn) != 0;

    /// <summary>System code (empty when absent; see <see cref="HasSt"/>).</summary>
    public ReadOnlySpan<char> St => _text[_st];

    public bool HasSt => (_present & Fields.St) != 0;

    /// <summary>Command code (empty when absent).</summary>
    public ReadOnlySpan<char> Cn => _text[_cn];

    public bool HasCn => (_present & Fields.Cn) != 0;

    /// <summary>Access password (empty when absent; see <see cref="HasPw"/>).</summary>
    public ReadOnlySpan<char> Pw => _text[_pw];

    public bool HasPw => (_present & Fields.Pw) != 0;

    /// <summary>Device (station) number (empty when absent).</summary>
    public ReadOnlySpan<char> Mn => _text[_mn];

    public bool HasMn => (_present & Fields.Mn) != 0;

    public int? Flag { get; }

    public int? PacketCount { get; }

    public int? PacketNumber { get; }

    /// <summary>What stands between <c>CP=&amp;&amp;</c> and the closing <c>&amp;&amp;</c>.</summary>
    public ReadOnlySpan<char> Cp => _text[CpRange];

    /// <summary>Where <see cref="Cp"/> lies in the text the segment was parsed from.</summary>
    public Range CpRange { get; }

    /// <summary>The station asks for an answer (Flag bit 0).</summary>
    public bool AnswerRequested => Flag is { } flag && (flag & 1) != 0;

    /// <summary>One packet of a split message (Flag bit 1, with PNUM and PNO).</summary>
    public bool IsSplit => Flag is { } flag && (flag & 2) != 0 && PacketCount is > 1;

    /// <summary>Parses a data segment in place; on failure <paramref name="error"/> names the field and what is wrong with it.</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out Hj212Segment segment, out string? error)
    {
        segment = default;
        var cpAt = text.IndexOf("CP=&&", StringComparison.Ordinal);
        if (cpAt < 0)
        {
            error = "The data segment has no CP=&&...&& field.";
            return false;
        }

        if (text.Length < cpAt + 7 || !text.EndsWith("&&", StringComparison.Ordinal))
        {
            error = "CP is not closed with && at the end of the data segment.";
            return false;
        }

        var cp = new Range(cpAt + 5, text.Length - 2);
        Range qn = default, st = default, cn = default, pw = default, mn = default;
        var present = Fields.None;
        int? flag = null, pnum = null, pno = null;
        var header = text[..cpAt];
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
                error = $"The field '{Hj212Message.Shorten(field)}' has no name=value form.";
                return false;
            }

            var name = field[..eq];
            var start = range.Start.GetOffset(header.Length) + eq + 1;
            var valueRange = new Range(start, range.End.GetOffset(header.Length));
            var value = field[(eq + 1)..];
            switch (name)
            {
                case "QN": (qn, present) = (valueRange, present | Fields.Qn); break;
                case "ST": (st, present) = (valueRange, present | Fields.St); break;
                case "CN": (cn, present) = (valueRange, present | Fields.Cn); break;
                case "PW": (pw, present) = (valueRange, present | Fields.Pw); break;
                case "MN": (mn, present) = (valueRange, present | Fields.Mn); break;
                case "Flag":
                    if (!TryNumber(value, 3, out var f) || f > 255)
                    {
                        error = $"Flag must be a number from 0 to 255; got '{Hj212Message.Shorten(value)}'.";
                        return false;
                    }

                    flag = f;
                    break;
                case "PNUM":
                    if (!TryNumber(value, 4, out var n) || n < 1)
                    {
                        error = $"PNUM must be a number from 1 to 9999; got '{Hj212Message.Shorten(value)}'.";
                        return false;
                    }

                    pnum = n;
                    break;
                case "PNO":
                    if (!TryNumber(value, 4, out var p) || p < 1)
                    {
                        error = $"PNO must be a number from 1 to 9999; got '{Hj212Message.Shorten(value)}'.";
                        return false;
                    }

                    pno = p;
                    break;
                default:
                    // Fields of other editions or vendors: not needed to store the data.
                    break;
            }
        }

        if (TooLong(text, qn, MaxQnLength, "QN", out error) || TooLong(text, st, MaxStLength, "ST", out error) || TooLong(text, cn, MaxCnLength, "CN", out error)
            || TooLong(text, pw, MaxPwLength, "PW", out error) || TooLong(text, mn, MaxMnLength, "MN", out error))
        {
            return false;
        }

        if (pno > pnum)
        {
            error = $"PNO {pno} is past PNUM {pnum}.";
            return false;
        }

        segment = new Hj212Segment(text, qn, st, cn, pw, mn, present, flag, pnum, pno, cp);
        error = null;
        return true;
    }

    private static bool TooLong(ReadOnlySpan<char> text, Range value, int max, string name, out string? error)
    {
        var length = text[value].Length;
        error = length > max ? $"{name} may have at most {max} characters; got {length}." : null;
        return error is not null;
    }

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
}
