using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;

namespace Taihu.Server;

/// <summary>Limits of the live WebSocket API (<c>/api/ws</c>, <c>/api/ws/plugins/telemetry</c>), section <c>Live</c>.</summary>
public sealed class LiveOptions
{
    /// <summary>The configuration section these settings are read from.</summary>
    public const string SectionName = "Live";

    /// <summary>
    /// Largest command frame a client may send (bytes). A dashboard's subscription frame is a few hundred bytes;
    /// 64 KiB leaves room for hundreds of commands in one frame while a client cannot make the server buffer
    /// megabytes. A larger frame is read to its end, dropped and answered with errorCode 2.
    /// </summary>
    public int MaxFrameBytes { get; set; } = 64 * 1024;

    /// <summary>Subscriptions one socket may hold; a dashboard of many widgets stays far below.</summary>
    public int MaxSubscriptionsPerSocket { get; set; } = 1_000;

    /// <summary>
    /// Updates that may wait for one socket. Updates are queued per committed batch and subscription, so at 10
    /// commits a second this is a minute and a half of a busy device. A client that lets more pile up reads too
    /// slowly: its socket is closed (1008, with the reason) so that neither ingest nor memory waits for it.
    /// </summary>
    public int OutboundQueueLimit { get; set; } = 1_000;

    /// <summary>
    /// How long a socket of <c>/api/ws</c> may stay open before its first frame has authenticated. A script sends
    /// its authCmd at once; a socket that never does would otherwise hold a connection forever.
    /// </summary>
    public TimeSpan AuthenticationTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a socket being closed (too slow, token expired, bad JWT, server stopping) gets to take its close frame and answer it before it is aborted.</summary>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid.</summary>
    public IEnumerable<string> Validate()
    {
        if (MaxFrameBytes is < 1024 or > 16 * 1024 * 1024)
        {
            yield return $"{SectionName}:{nameof(MaxFrameBytes)} must be between 1024 and 16777216 bytes.";
        }

        if (MaxSubscriptionsPerSocket < 1)
        {
            yield return $"{SectionName}:{nameof(MaxSubscriptionsPerSocket)} must be at least 1.";
        }

        if (OutboundQueueLimit < 1)
        {
            yield return $"{SectionName}:{nameof(OutboundQueueLimit)} must be at least 1.";
        }

        if (AuthenticationTimeout <= TimeSpan.Zero)
        {
            yield return $"{SectionName}:{nameof(AuthenticationTimeout)} must be positive.";
        }

        if (CloseTimeout <= TimeSpan.Zero)
        {
            yield return $"{SectionName}:{nameof(CloseTimeout)} must be positive.";
        }
    }
}

/// <summary>Checks <see cref="LiveOptions"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class LiveOptionsValidator : IValidateOptions<LiveOptions>
{
    public ValidateOptionsResult Validate(string? name, LiveOptions options) => OptionsProblems.Result(options.Validate());
}
