using System.Text;
using System.Text.Unicode;

namespace Taihu.Mqtt;

/// <summary>The spec's rules for UTF-8 encoded strings (MQTT 5.0 section 1.5.4, 3.1.1 section 1.5.3).</summary>
public static class Utf8Validation
{
    private static readonly UTF8Encoding s_strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Well-formed UTF-8 (no surrogates, no overlongs) without U+0000.</summary>
    public static bool IsValidMqttString(ReadOnlySpan<byte> utf8) => !utf8.Contains((byte)0) && Utf8.IsValid(utf8);

    /// <summary>A .NET string that can be sent as an MQTT string: no U+0000, no lone surrogates.</summary>
    public static bool IsValidMqttString(ReadOnlySpan<char> text)
    {
        if (text.Contains('\0'))
        {
            return false;
        }

        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 >= text.Length || !char.IsLowSurrogate(text[i + 1]))
                {
                    return false;
                }

                i++;
            }
            else if (char.IsLowSurrogate(c))
            {
                return false;
            }
        }

        return true;
    }

    internal static UTF8Encoding Strict => s_strict;
}
