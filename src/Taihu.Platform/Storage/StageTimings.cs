using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Taihu.Platform.Storage;

/// <summary>
/// For diagnosis: how long each stage of an alarm's way and of the database writers it meets takes, as one histogram
/// with a <c>stage</c> tag on /metrics (<c>taihu_stage_duration_milliseconds</c>; bench/rules.sh prints it). The
/// stages: <c>rules.decided</c> (from the commit of the data to the rules' decision), <c>rules.chain</c>,
/// <c>rules.service.*</c> (the alarm service's whole change), <c>owner.*</c>, <c>writer.*</c> (the alarm writer's
/// queue, write turn, BEGIN, statements, commit), <c>ingest.*</c>, <c>outbox.*</c>, <c>attributes.*</c>,
/// <c>prune</c>, <c>checkpoint</c> and <c>rules.save.*</c> (<c>prune.rows</c> and <c>rules.save.rows</c> count rows, not
/// milliseconds); and per MQTT CONNECT, <c>connect.permit</c> (the wait for the source address's authentication
/// allowance), <c>connect.credentials</c> (the device's credentials checked) and, on a cluster node, <c>connect.claim</c>
/// (the session claimed cluster-wide) and <c>connect.session</c> (its stored copy read). Recorded per batch, per alarm
/// change or per connection, never per message.
/// Found where the slow alarms of issue 12 waited (docs/benchmarks.md).
/// </summary>
public static class StageTimings
{
    private static readonly double[] s_buckets = [0.1, 0.5, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 500, 1000, 2000, 5000];
    private static readonly Meter s_meter = new(Telemetry.PlatformMetrics.MeterName);
    private static readonly Histogram<double> s_stage = s_meter.CreateHistogram("taihu.stage.duration", "ms",
        "Diagnosis: duration of each stage of the alarm path and of the write transactions it meets.", tags: null,
        new InstrumentAdvice<double> { HistogramBucketBoundaries = s_buckets });

    /// <summary>Records the time since <paramref name="start"/> (a <see cref="Stopwatch"/> timestamp); returns now.</summary>
    public static long Since(string stage, long start)
    {
        var now = Stopwatch.GetTimestamp();
        s_stage.Record(Stopwatch.GetElapsedTime(start, now).TotalMilliseconds, new KeyValuePair<string, object?>("stage", stage));
        return now;
    }

    public static void Record(string stage, double milliseconds) =>
        s_stage.Record(milliseconds, new KeyValuePair<string, object?>("stage", stage));
}
