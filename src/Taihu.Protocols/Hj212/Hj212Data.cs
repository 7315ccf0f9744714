using System.Globalization;

namespace Taihu.Protocols.Hj212;

/// <summary>One value of a data message: a number where the text is one, else the text (data flags, sample times).</summary>
public readonly record struct Hj212Point(string Key, double? Number, string? Text);

/// <summary>
/// The data commands' <c>CP</c>: <c>DataTime=yyyyMMddHHmmss;a34004-Rtd=35,a34004-Flag=N;...</c>: groups split by
/// <c>;</c>, items by <c>,</c>, each <c>name=value</c>. Each item other than <c>DataTime</c> becomes a point under its
/// own name (<c>a34004-Rtd</c>, <c>a34004-Flag</c>, <c>w01018-Avg</c>), at <c>DataTime</c> read in the station's
/// time zone.
/// </summary>
public static class Hj212Data
{
    /// <summary>Real-time data.</summary>
    public const string RealTime = "2011";

    /// <summary>Minute data.</summary>
    public const string Minute = "2051";

    /// <summary>Hour data.</summary>
    public const string Hour = "2061";

    /// <summary>Day data.</summary>
    public const string Day = "2031";

    /// <summary>China Standard Time, the stations' clock unless a device says otherwise.</summary>
    public static readonly TimeSpan ChinaStandardTime = TimeSpan.FromHours(8);

    /// <summary>Whether <paramref name="cn"/> is one of the four data uploads.</summary>
    public static bool IsData(string? cn) => cn is RealTime or Minute or Hour or Day;

    /// <summary>
    /// Reads the points of a data message's CP into <paramref name="points"/>, and its <c>DataTime</c> (in the zone
    /// <paramref name="utcOffset"/>) as Unix milliseconds. On failure, <paramref name="error"/> says what and where.
    /// </summary>
    public static bool TryRead(string cp, TimeSpan utcOffset, List<Hj212Point> points, out long timestamp, out string? error) =>
        TryRead(cp, utcOffset, points, null, out timestamp, out error);

    /// <summary>
    /// As <see cref="TryRead(string, TimeSpan, List{Hj212Point}, out long, out string?)"/>, taking the keys and short
    /// texts (flags) from <paramref name="names"/>, so that a station's repeated uploads do not allocate them again.
    /// </summary>
    public static bool TryRead(string cp, TimeSpan utcOffset, List<Hj212Point> points, Hj212NameCache? names, out long timestamp, out string? error)
    {
        ArgumentNullException.ThrowIfNull(cp);
        return TryRead(cp.AsSpan(), utcOffset, points, names, out timestamp, out error);
    }

    /// <summary>As the overloads above, from the CP's text where it lies (in the frame's characters), without a copy of it.</summary>
    public static bool TryRead(ReadOnlySpan<char> cp, TimeSpan utcOffset, List<Hj212Point> points, Hj212NameCache? names, out long timestamp, out string? error)
    {
        ArgumentNullException.ThrowIfNull(points);
        timestamp = 0;
        var haveTime = false;
        var text = cp;
        foreach (var group in text.Split(';'))
        {
            var items = text[group];
            foreach (var item in items.Split(','))
            {
                var pair = items[item];
                if (pair.IsEmpty)
                {
                    continue;
                }

                var eq = pair.IndexOf('=');
                if (eq <= 0)
                {
                    error = $"The CP item '{Hj212Message.Shorten(pair)}' has no name=value form.";
                    return false;
                }

                var name = pair[..eq];
                var value = pair[(eq + 1)..];
                if (name.SequenceEqual("DataTime"))
                {
                    if (!TryReadTime(value, utcOffset, out timestamp))
                    {
                        error = $"DataTime must be yyyyMMddHHmmss; got '{Hj212Message.Shorten(value)}'.";
                        return false;
                    }

                    haveTime = true;
                    continue;
                }

                points.Add(ToPoint(names is null ? name.ToString() : names.Get(name), value, names));
            }
        }

        if (!haveTime)
        {
            error = "The data has no DataTime.";
            return false;
        }

        error = null;
        return true;
    }

    /// <summary>
    /// A number stays a number, except the fields that are times or codes (<c>-Flag</c>, <c>-EFlag</c> of equipment
    /// flags, and times such as <c>-SampleTime</c> or 2081's <c>RestartTime</c>, which are yyyyMMddHHmmss): those keep
    /// their text, as do values that are not numbers.
    /// </summary>
    private static Hj212Point ToPoint(string key, ReadOnlySpan<char> value, Hj212NameCache? names)
    {
        var isText = key.EndsWith("-Flag", StringComparison.Ordinal) || key.EndsWith("-EFlag", StringComparison.Ordinal)
            || key.EndsWith("Time", StringComparison.Ordinal);
        if (!isText && double.TryParse(value, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
            CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
        {
            return new Hj212Point(key, number, null);
        }

        // Flags and codes are a letter or two, the same in every upload.
        return new Hj212Point(key, null, names is not null && value.Length <= 4 ? names.Get(value) : value.ToString());
    }

    private static bool TryReadTime(ReadOnlySpan<char> text, TimeSpan utcOffset, out long timestamp)
    {
        timestamp = 0;
        if (text.Length != 14 || !DateTime.TryParseExact(text, "yyyyMMddHHmmss", CultureInfo.InvariantCulture, DateTimeStyles.None, out var local))
        {
            return false;
        }

        timestamp = new DateTimeOffset(local, utcOffset).ToUnixTimeMilliseconds();
        return true;
    }
}
