using System.Globalization;
using System.Text.RegularExpressions;

namespace Taihu.Sim.Scenarios;

/// <summary>Device name patterns: <c>aq-{n}</c> gives aq-1, aq-2, ...; <c>aq-{n:000}</c> gives aq-001.</summary>
public static partial class DeviceNames
{
    public static string Format(string pattern, int number) =>
        Placeholder().Replace(pattern, m => number.ToString(m.Groups["format"].Success ? m.Groups["format"].Value : "0", CultureInfo.InvariantCulture));

    /// <summary>Whether the pattern numbers its devices (a fleet of more than one needs that, or names would repeat).</summary>
    public static bool HasNumber(string pattern) => Placeholder().IsMatch(pattern);

    [GeneratedRegex(@"\{n(:(?<format>0+))?\}")]
    private static partial Regex Placeholder();
}
