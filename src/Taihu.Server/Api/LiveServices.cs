using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;

namespace Taihu.Server.Api;

/// <summary>ThingsBoard's subscription error codes, as sent in <c>errorCode</c>.</summary>
internal static class LiveErrorCode
{
    public const int None = 0;
    public const int Internal = 1;
    public const int BadRequest = 2;
    public const int Unauthorized = 3;
}

/// <summary>What the live sockets share: stores, the feed, limits, clock, metrics.</summary>
internal sealed class LiveServices(
    JwtTokens tokens, IDeviceStore devices, ITelemetryStore telemetry, IAttributeStore attributes, LiveFeed feed,
    IAlarmStore alarms, AlarmFeed alarmFeed, IOptions<LiveOptions> options, TimeProvider time, ILogger<LiveSocket> logger, IMeterFactory meters)
{
    public JwtTokens Tokens => tokens;

    public IDeviceStore Devices => devices;

    public ITelemetryStore Telemetry => telemetry;

    public IAttributeStore Attributes => attributes;

    public LiveFeed Feed => feed;

    public IAlarmStore Alarms => alarms;

    public AlarmFeed AlarmFeed => alarmFeed;

    public LiveOptions Options => options.Value;

    public TimeProvider Time => time;

    public ILogger<LiveSocket> Logger => logger;

    // IMeterFactory hands out one Meter per name: these all sit on the platform's meter, which /metrics exports.
    public UpDownCounter<long> Sockets { get; } = meters.Create(PlatformMetrics.MeterName)
        .CreateUpDownCounter<long>("taihu.live.sockets", "{socket}", "Open live WebSocket API sockets.");

    public UpDownCounter<long> Subscriptions { get; } = meters.Create(PlatformMetrics.MeterName)
        .CreateUpDownCounter<long>("taihu.live.subscriptions", "{subscription}", "Live subscriptions held by open sockets.");

    public Counter<long> UpdatesSent { get; } = meters.Create(PlatformMetrics.MeterName)
        .CreateCounter<long>("taihu.live.updates.sent", "{frame}", "Frames sent on live sockets.");

    public Counter<long> SlowConsumers { get; } = meters.Create(PlatformMetrics.MeterName)
        .CreateCounter<long>("taihu.live.slow_consumers", "{socket}", "Live sockets closed because their client read too slowly (outbound queue full).");

    /// <summary>
    /// From a committed change handed to a subscription to the frame that carries it written to the socket, counted
    /// once per change (one commit's points for one subscription) at the wait of the frame's oldest change, so an
    /// upper bound for each. Buckets fine enough below 100 ms to tell the 50 ms target (the exporter's default has
    /// 75 and 100 only).
    /// </summary>
    public Histogram<double> CommitToFrame { get; } = meters.Create(PlatformMetrics.MeterName)
        .CreateHistogram("taihu.live.commit_to_frame", "ms", "From a committed change handed to a live subscription to its frame written to the socket (each change at its frame's oldest change's wait).",
            tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = [1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 500, 1000, 2000, 5000] });

    public Counter<long> UpdatesDropped { get; } = meters.Create(PlatformMetrics.MeterName)
        .CreateCounter<long>("taihu.live.updates.dropped", "{update}", "Updates discarded with a socket closed for reading too slowly.");
}
