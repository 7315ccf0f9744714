namespace Taihu.Server.Protocols.Jt808;

/// <summary>Settings of the JT/T 808 listener (section <c>Jt808</c>; its port is <c>Listeners:Jt808Port</c>).</summary>
public sealed class Jt808Options
{
    public const string SectionName = "Jt808";

    /// <summary>
    /// A connection that sends no valid frame for this long is closed (a half-open connection: a terminal that lost
    /// its network without a FIN). Terminals send a heartbeat every 60 s by default (parameter 0x0001), so three
    /// minutes allow two lost heartbeats; garbage and broken frames do not count as activity.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(3);

    public IEnumerable<string> Validate()
    {
        if (IdleTimeout <= TimeSpan.Zero)
        {
            yield return $"{SectionName}:{nameof(IdleTimeout)} must be more than zero (for example 00:03:00).";
        }
    }
}
