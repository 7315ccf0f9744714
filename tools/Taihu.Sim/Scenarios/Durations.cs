using System.Globalization;

namespace Taihu.Sim.Scenarios;

/// <summary>Durations as scenario files write them: <c>250ms</c>, <c>10s</c>, <c>5m</c>, <c>1h</c>, <c>2d</c>, combinations such as <c>1h30m</c>, or a bare number of seconds.</summary>
public static class Durations
{
    /// <summary>Parses <paramref name="text"/>; false with a reason when it is not a duration.</summary>
    public static bool TryParse(string? text, out TimeSpan value, out string? problem)
    {
        value = TimeSpan.Zero;
        problem = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            problem = "a duration is empty";
            return false;
        }

        var span = text.AsSpan().Trim();
        if (double.TryParse(span, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
        {
            return Check(TimeSpan.FromSeconds(seconds), text, out value, out problem);
        }

        var total = 0.0;
        var i = 0;
        while (i < span.Length)
        {
            var start = i;
            while (i < span.Length && (char.IsAsciiDigit(span[i]) || span[i] == '.'))
            {
                i++;
            }

            if (start == i || !double.TryParse(span[start..i], NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
            {
                problem = $"'{text}' is not a duration (write it as 250ms, 10s, 5m, 1h, 2d or 1h30m)";
                return false;
            }

            var unitStart = i;
            while (i < span.Length && char.IsAsciiLetter(span[i]))
            {
                i++;
            }

            double? unit = span[unitStart..i] switch
            {
                "ms" => 0.001,
                "s" => 1,
                "m" or "min" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => null,
            };
            if (unit is null)
            {
                problem = $"'{text}' has the unit '{span[unitStart..i]}'; a duration's units are ms, s, m, h and d";
                return false;
            }

            total += number * unit.Value;
        }

        return Check(TimeSpan.FromSeconds(total), text, out value, out problem);
    }

    private static bool Check(TimeSpan parsed, string text, out TimeSpan value, out string? problem)
    {
        value = parsed;
        problem = parsed < TimeSpan.Zero ? $"'{text}' is negative; a duration is zero or more" : null;
        return problem is null;
    }

    /// <summary>The shortest way to write <paramref name="value"/> in a report: <c>1h30m</c>, <c>45s</c>, <c>250ms</c>.</summary>
    public static string Format(TimeSpan value)
    {
        if (value < TimeSpan.FromSeconds(1))
        {
            return ((int)Math.Round(value.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture) + "ms";
        }

        var parts = new List<string>(4);
        if (value.Days > 0)
        {
            parts.Add(value.Days.ToString(CultureInfo.InvariantCulture) + "d");
        }

        if (value.Hours > 0)
        {
            parts.Add(value.Hours.ToString(CultureInfo.InvariantCulture) + "h");
        }

        if (value.Minutes > 0)
        {
            parts.Add(value.Minutes.ToString(CultureInfo.InvariantCulture) + "m");
        }

        var seconds = value.Seconds + (value.Milliseconds / 1000.0);
        if (seconds > 0)
        {
            parts.Add(seconds.ToString("0.###", CultureInfo.InvariantCulture) + "s");
        }

        return string.Concat(parts);
    }
}
