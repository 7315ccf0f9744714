using System.Globalization;

namespace Taihu.Protocols.Hj212;

/// <summary>The platform's answers to a station, as HJ 212-2017 writes them (system code 91).</summary>
public static class Hj212Replies
{
    /// <summary>Data answer (CN 9014) to an upload whose Flag asked for one: its QN, PW and MN, <c>CP=&amp;&amp;&amp;&amp;</c>.</summary>
    public static Hj212Message DataAnswer(Hj212Message upload)
    {
        ArgumentNullException.ThrowIfNull(upload);
        return new Hj212Message(upload.Qn, "91", "9014", upload.Pw, upload.Mn, AnswerFlag(upload), null, null, "");
    }

    /// <summary>Characters a data answer to a parsed upload takes at most (QN, PW and MN at their widths in HJ 212-2017).</summary>
    public const int MaxDataAnswerLength = 128;

    /// <summary>
    /// The data answer (CN 9014) to an upload, as <see cref="DataAnswer"/> formats it, written into
    /// <paramref name="destination"/> without allocating: for a listener that kept the upload's QN in a buffer of its
    /// own (absent when <paramref name="hasQn"/> is false) and its PW and MN as the station's cached strings. False
    /// when it does not fit.
    /// </summary>
    public static bool TryWriteDataAnswer(Span<char> destination, scoped ReadOnlySpan<char> qn, bool hasQn, string? pw, string? mn, int? flag, out int written)
    {
        var text = new SpanText(destination);
        if (hasQn)
        {
            text.Field("QN", qn);
        }

        text.Field("ST", "91");
        text.Field("CN", "9014");
        if (pw is not null)
        {
            text.Field("PW", pw);
        }

        if (mn is not null)
        {
            text.Field("MN", mn);
        }

        Span<char> digits = stackalloc char[11];
        ((flag ?? 0) & ~3).TryFormat(digits, out var length, default, CultureInfo.InvariantCulture);
        text.Field("Flag", digits[..length]);
        text.Append("CP=&&&&");
        written = text.Length;
        return !text.Overflowed;
    }

    /// <summary>Request answer (CN 9011): <c>QnRtn</c> 1 when the request is taken, 2 refused, 3 wrong PW, 4 wrong MN, ...</summary>
    public static Hj212Message RequestAnswer(Hj212Message request, int qnRtn)
    {
        ArgumentNullException.ThrowIfNull(request);
        return new Hj212Message(request.Qn, "91", "9011", request.Pw, request.Mn, AnswerFlag(request), null, null,
            "QnRtn=" + qnRtn.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Result (CN 9012): <c>ExeRtn</c> 1 done, 2 failed, 3 no data, ...</summary>
    public static Hj212Message Result(Hj212Message request, int exeRtn)
    {
        ArgumentNullException.ThrowIfNull(request);
        return new Hj212Message(request.Qn, "91", "9012", request.Pw, request.Mn, AnswerFlag(request), null, null,
            "ExeRtn=" + exeRtn.ToString(CultureInfo.InvariantCulture));
    }

    // The station's edition, and no answer asked for in return.
    private static int AnswerFlag(Hj212Message to) => (to.Flag ?? 0) & ~3;

    /// <summary>Appends to a span; remembers when it ran out of room instead of throwing.</summary>
    private ref struct SpanText(Span<char> destination)
    {
        private readonly Span<char> _destination = destination;

        public int Length { get; private set; }

        public bool Overflowed { get; private set; }

        public void Field(string name, scoped ReadOnlySpan<char> value)
        {
            Append(name);
            Append("=");
            Append(value);
            Append(";");
        }

        public void Append(scoped ReadOnlySpan<char> text)
        {
            if (Overflowed || !text.TryCopyTo(_destination[Length..]))
            {
                Overflowed = true;
                return;
            }

            Length += text.Length;
        }
    }
}
