using System.Globalization;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;
using Taihu.Protocols.Hj212;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>Settings of the HJ 212 listener, section <c>Hj212</c> (its port is <c>Listeners:Hj212Port</c>).</summary>
public sealed class Hj212Options
{
    /// <summary>The configuration section these settings are read from.</summary>
    public const string SectionName = "Hj212";

    /// <summary>
    /// A connection that brings no valid frame for this long is closed (counted as <c>timeout</c>): a station that
    /// lost power or its mobile link leaves a half-open connection behind, which would otherwise hold a socket and
    /// the station's RPC channel forever. Stations upload real-time data every 30 s to 5 min and minute data every
    /// few minutes; ten minutes is several missed uploads, and a station that keeps its connection only for hourly
    /// data simply connects again, as the standard expects.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The stations' clock, as a UTC offset (<c>+08:00</c>) or a time zone name (<c>Asia/Shanghai</c>): the standard's
    /// times (<c>DataTime</c>, <c>QN</c>, <c>SystemTime</c>) are local times without a zone, and China Standard Time
    /// (UTC+8, no daylight saving) is what stations in China keep. A device's server attribute
    /// <c>hj212TimeZone</c> overrides it for that station.
    /// </summary>
    public string TimeZone { get; set; } = "+08:00";

    /// <summary>
    /// Largest data segment accepted (characters between the length field and the CRC). HJ 212-2017 says 1,024, and
    /// longer messages should be split (PNUM/PNO); stations that report dozens of pollutants send longer unsplit
    /// frames all the same, so the default allows 4,096. The length field cannot say more than 9,999.
    /// </summary>
    public int MaxDataLength { get; set; } = 4096;

    /// <summary>
    /// Frames that are refused in a row (garbage, bad length, bad CRC, unreadable segment) before the connection is
    /// closed: a burst of line noise costs a frame or two, a peer that speaks something else is let go.
    /// </summary>
    public int MaxBadFramesInARow { get; set; } = 8;

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid.</summary>
    public IEnumerable<string> Validate()
    {
        if (IdleTimeout <= TimeSpan.Zero)
        {
            yield return $"{SectionName}:{nameof(IdleTimeout)} must be positive.";
        }

        if (!TryParseTimeZone(TimeZone, out _))
        {
            yield return $"{SectionName}:{nameof(TimeZone)} must be a UTC offset such as +08:00 or a time zone name such as Asia/Shanghai; '{TimeZone}' is neither.";
        }

        if (MaxDataLength is < 64 or > Hj212Framing.MaxDataLength)
        {
            yield return $"{SectionName}:{nameof(MaxDataLength)} must be between 64 and {Hj212Framing.MaxDataLength} characters.";
        }

        if (MaxBadFramesInARow < 1)
        {
            yield return $"{SectionName}:{nameof(MaxBadFramesInARow)} must be at least 1.";
        }
    }

    /// <summary>
    /// The UTC offset a time zone setting stands for: <c>+08:00</c>, <c>-05:30</c>, <c>UTC</c>, or a zone name (its
    /// offset now; the zones of HJ 212 stations keep no daylight saving).
    /// </summary>
    public static bool TryParseTimeZone(string? text, out TimeSpan offset)
    {
        offset = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        if (text is "UTC" or "Z")
        {
            offset = TimeSpan.Zero;
            return true;
        }

        if (text[0] is '+' or '-')
        {
            if (TimeSpan.TryParseExact(text[1..], @"hh\:mm", CultureInfo.InvariantCulture, out var parsed) && parsed <= TimeSpan.FromHours(14))
            {
                offset = text[0] == '-' ? -parsed : parsed;
                return true;
            }

            return false;
        }

        try
        {
            offset = TimeZoneInfo.FindSystemTimeZoneById(text).BaseUtcOffset;
            return true;
        }
        catch (TimeZoneNotFoundException)
        {
            return false;
        }
        catch (InvalidTimeZoneException)
        {
            return false;
        }
    }
}

/// <summary>Checks <see cref="Hj212Options"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class Hj212OptionsValidator : IValidateOptions<Hj212Options>
{
    public ValidateOptionsResult Validate(string? name, Hj212Options options) => OptionsProblems.Result(options.Validate());
}
