using Taihu.Protocols.Hj212;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>
/// The frame a connection is handling, kept from its <see cref="Hj212Segment"/> past the receive loop's awaits: one
/// per connection, filled again for every frame, so that a data upload allocates no message. Its names (ST, CN, PW,
/// MN) are the station's cached strings and its QN is copied into a buffer of its own, formatted only into the 9014
/// answer (or made a string for a command's answers). One owner: the connection's receive loop.
/// </summary>
internal sealed class Hj212Frame
{
    private readonly char[] _qn = new char[Hj212Segment.MaxQnLength];
    private int _qnLength = -1;

    /// <summary>The frame's QN (empty when it has none; see <see cref="HasQn"/>).</summary>
    public ReadOnlySpan<char> Qn => _qnLength < 0 ? [] : _qn.AsSpan(0, _qnLength);

    public bool HasQn => _qnLength >= 0;

    public string? St { get; private set; }

    public string Cn { get; private set; } = "";

    public string? Pw { get; private set; }

    public string Mn { get; private set; } = "";

    public int? Flag { get; private set; }

    public int? PacketCount { get; private set; }

    public int? PacketNumber { get; private set; }

    /// <summary>The CP text; empty for a data upload whose points were read from the frame's characters.</summary>
    public string Cp { get; private set; } = "";

    /// <summary>The station asks for an answer (Flag bit 0).</summary>
    public bool AnswerRequested => Flag is { } flag && (flag & 1) != 0;

    /// <summary>One packet of a split message (Flag bit 1, with PNUM and PNO).</summary>
    public bool IsSplit => Flag is { } flag && (flag & 2) != 0 && PacketCount is > 1;

    /// <summary>The edition from Flag's bits 2 to 7: 1 for HJ 212-2017, 0 for the 2005 edition (and when there is no Flag).</summary>
    public int Edition => Flag is { } flag ? flag >> 2 : 0;

    /// <summary>The QN as text (for a command's answers, which are rare), or null when the frame has none.</summary>
    public string? QnText() => HasQn ? new string(Qn) : null;

    /// <summary>Takes the fields of a segment just read; <paramref name="cp"/> is its CP text, or empty when its points were read in place.</summary>
    public void Set(scoped in Hj212Segment segment, Hj212NameCache names, string cp)
    {
        SetQn(segment.HasQn, segment.Qn);
        St = segment.HasSt ? names.Get(segment.St) : null;
        Cn = names.Get(segment.Cn);
        Pw = segment.HasPw ? names.Get(segment.Pw) : null;
        Mn = names.Get(segment.Mn);
        Flag = segment.Flag;
        PacketCount = segment.PacketCount;
        PacketNumber = segment.PacketNumber;
        Cp = cp;
    }

    /// <summary>Takes the fields of a split message put back together (the first packet's, with the packets' CP joined).</summary>
    public void Set(Hj212Message message)
    {
        SetQn(message.Qn is not null, message.Qn);
        St = message.St;
        Cn = message.Cn ?? "";
        Pw = message.Pw;
        Mn = message.Mn ?? "";
        Flag = message.Flag;
        PacketCount = message.PacketCount;
        PacketNumber = message.PacketNumber;
        Cp = message.Cp;
    }

    /// <summary>This frame as a message, for what outlives it (a split message's packets wait for the others).</summary>
    public Hj212Message ToMessage() => new(QnText(), St, Cn, Pw, Mn, Flag, PacketCount, PacketNumber, Cp);

    private void SetQn(bool present, ReadOnlySpan<char> qn)
    {
        _qnLength = present ? Math.Min(qn.Length, _qn.Length) : -1;
        qn[..Math.Max(_qnLength, 0)].CopyTo(_qn);
    }
}
