using System.Text;

namespace Taihu.Broker.Logging;

/// <summary>
/// Makes a string a client chose (a client id, a user name, a topic, a device name from a request) safe to log:
/// at most <see cref="MaximumLength"/> characters of it, with a marker saying how many were left out, and every
/// control character escaped (<c>\n</c>, <c>\r</c>, <c>\t</c>, or <c>\uXXXX</c>; a backslash is doubled so that
/// an escape cannot be forged either). A newline in a client id must never start a log line of its own, and a
/// 60,000-character client id must not cost 60,000 characters per line.
/// </summary>
public static class LogText
{
    /// <summary>Characters of a client-supplied string kept in a log line: longer than any real client id, device name or topic worth reading.</summary>
    public const int MaximumLength = 128;

    /// <summary>The string as it may be logged; the same instance when it is short and has nothing to escape.</summary>
    public static string Clean(string? value)
    {
        if (value is null)
        {
            return "(none)";
        }

        if (value.Length <= MaximumLength && !NeedsEscaping(value))
        {
            return value;
        }

        return Escape(value);
    }

    private static bool NeedsEscaping(string value)
    {
        foreach (var c in value)
        {
            if (IsEscaped(c))
            {
                return true;
            }
        }

        return false;
    }

    // C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the backslash itself.
    private static bool IsEscaped(char c) => c < 0x20 || c is (>= '\u007F' and <= '\u009F') or '\u2028' or '\u2029' or '\\';

    private static string Escape(string value)
    {
        var kept = Math.Min(value.Length, MaximumLength);
        if (kept < value.Length && char.IsHighSurrogate(value[kept - 1]))
        {
            kept--;
        }

        var builder = new StringBuilder(kept + 32);
        for (var i = 0; i < kept; i++)
        {
            var c = value[i];
            switch (c)
            {
                case '\n':
                    builder.Append("\\n");
                    break;
                case '\r':
                    builder.Append("\\r");
                    break;
                case '\t':
                    builder.Append("\\t");
                    break;
                case '\\':
                    builder.Append("\\\\");
                    break;
                default:
                    if (IsEscaped(c))
                    {
                        builder.Append("\\u").Append(((int)c).ToString("X4", System.Globalization.CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        builder.Append(c);
                    }

                    break;
            }
        }

        if (kept < value.Length)
        {
            builder.Append("...(").Append(value.Length - kept).Append(" more characters)");
        }

        return builder.ToString();
    }
}
