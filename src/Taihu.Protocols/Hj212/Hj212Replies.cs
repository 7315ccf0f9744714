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
}
