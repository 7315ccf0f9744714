using System.Globalization;

namespace Taihu.Bench.Measurement;

/// <summary>
/// .NET's runtime counters as a .NET server exports them on its Prometheus endpoint (the <c>System.Runtime</c>
/// meter: Taihu's /metrics): what it allocated, its collections by generation and their pauses, its CPU time
/// split into user and system, its thread pool, lock contentions and exceptions thrown. Two snapshots around a
/// measurement window give what the window cost, in numbers that a loaded machine changes far less than the
/// latency (bytes, CPU and collections per call).
/// </summary>
public readonly record struct RuntimeCounters(
    double AllocatedBytes, double Gen0, double Gen1, double Gen2, double PauseSeconds, double CpuUserSeconds, double CpuSystemSeconds,
    double ThreadPoolThreads, double LockContentions, double Exceptions)
{
    /// <summary>A snapshot from <paramref name="url"/>, or null when it cannot be read or lacks the allocation counter.</summary>
    public static async Task<RuntimeCounters?> ReadAsync(string? url, CancellationToken cancellationToken) =>
        url is null ? null : Parse(await MetricsScraper.ReadTextAsync(url, cancellationToken));

    /// <summary>Parses Prometheus text (split out for tests); null without the allocation counter.</summary>
    public static RuntimeCounters? Parse(string? text)
    {
        if (text is null || MetricsScraper.Find(text, MetricsScraper.AllocatedBytesMetric) is not { } allocated)
        {
            return null;
        }

        double Get(string metric, string? label = null) => MetricsScraper.Find(text, metric, label) ?? 0;
        return new RuntimeCounters(allocated,
            Get("dotnet_gc_collections_total", "\"gen0\""), Get("dotnet_gc_collections_total", "\"gen1\""), Get("dotnet_gc_collections_total", "\"gen2\""),
            Get("dotnet_gc_pause_time_seconds_total"),
            Get("dotnet_process_cpu_time_seconds_total", "\"user\""), Get("dotnet_process_cpu_time_seconds_total", "\"system\""),
            Get("dotnet_thread_pool_thread_count_total"), Get("dotnet_monitor_lock_contentions_total"), Get("dotnet_exceptions_total"));
    }

    /// <summary>
    /// What happened between <paramref name="start"/> and this snapshot, per <paramref name="operations"/>
    /// (calls, messages): allocations, CPU (user and system), collections and their pause time, lock contentions.
    /// </summary>
    public string Describe(RuntimeCounters start, long operations, string unit)
    {
        var n = Math.Max(1, operations);
        var user = CpuUserSeconds - start.CpuUserSeconds;
        var system = CpuSystemSeconds - start.CpuSystemSeconds;
        return string.Create(CultureInfo.InvariantCulture,
            $"server per {unit}: {(AllocatedBytes - start.AllocatedBytes) / n:F0} B allocated, {(user + system) * 1e6 / n:F0} µs CPU ({user * 1e6 / n:F0} user, {system * 1e6 / n:F0} system); " +
            $"collections gen0 {Gen0 - start.Gen0:F0}, gen1 {Gen1 - start.Gen1:F0}, gen2 {Gen2 - start.Gen2:F0}, paused {(PauseSeconds - start.PauseSeconds) * 1000:F0} ms in all; " +
            $"thread pool {ThreadPoolThreads:F0} threads at the end; {LockContentions - start.LockContentions:F0} lock contentions, {Exceptions - start.Exceptions:F0} exceptions thrown");
    }
}
