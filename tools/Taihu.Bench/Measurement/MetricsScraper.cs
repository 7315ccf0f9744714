using System.Globalization;

namespace Taihu.Bench.Measurement;

/// <summary>
/// Reads one counter from a Prometheus text endpoint, e.g. Taihu's /metrics
/// (<c>dotnet_gc_heap_total_allocated_bytes_total</c>), to report a broker's allocations per delivered message.
/// </summary>
public static class MetricsScraper
{
    public const string AllocatedBytesMetric = "dotnet_gc_heap_total_allocated_bytes_total";

    /// <summary>Taihu's count of messages it dropped, summed over every reason.</summary>
    public const string DroppedMessagesMetric = "taihu_mqtt_messages_dropped_total";

    private static readonly HttpClient s_http = new() { Timeout = TimeSpan.FromSeconds(5) };

    public static async Task<double?> ReadAsync(string url, string metric, CancellationToken cancellationToken)
    {
        try
        {
            var text = await s_http.GetStringAsync(new Uri(url), cancellationToken);
            return Find(text, metric);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    /// <summary>The endpoint's whole text, or null when it cannot be read.</summary>
    public static async Task<string?> ReadTextAsync(string url, CancellationToken cancellationToken)
    {
        try
        {
            return await s_http.GetStringAsync(new Uri(url), cancellationToken);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    /// <summary>
    /// The cumulative buckets of a histogram (<c>NAME_bucket{...,le="X"} COUNT</c>) summed over its label sets, in the
    /// order of their bounds; the last bound is infinity.
    /// </summary>
    public static double[][] Buckets(string text, string metric)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sums = new SortedDictionary<double, double>();
        var prefix = metric + "_bucket{";
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (!line.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var le = line.IndexOf("le=\"", StringComparison.Ordinal);
            var close = line.LastIndexOf('}');
            if (le < 0 || close < le)
            {
                continue;
            }

            var quote = line.IndexOf('"', le + 4);
            if (quote < 0 || quote > close)
            {
                continue;
            }

            var boundText = line[(le + 4)..quote];
            double bound;
            if (boundText == "+Inf")
            {
                bound = double.PositiveInfinity;
            }
            else if (!double.TryParse(boundText, NumberStyles.Float, CultureInfo.InvariantCulture, out bound))
            {
                continue;
            }

            var parts = line[(close + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var count))
            {
                sums[bound] = sums.GetValueOrDefault(bound) + count;
            }
        }

        var result = new double[sums.Count][];
        var i = 0;
        foreach (var (bound, count) in sums)
        {
            result[i++] = [bound, count];
        }

        return result;
    }

    /// <summary>
    /// The percentile of what a histogram counted between two readings of <see cref="Buckets"/>, as the upper bound
    /// of the bucket it falls in (infinity past the last bound); null when nothing was counted.
    /// </summary>
    public static double? Percentile(double[][] start, double[][] end, double percent)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        if (end.Length == 0)
        {
            return null;
        }

        // The start's count of the same bound (a bucket not there yet counted nothing).
        double Before(int i)
        {
            foreach (var bucket in start)
            {
                if (bucket[0] == end[i][0])
                {
                    return bucket[1];
                }
            }

            return 0;
        }

        var total = end[^1][1] - Before(end.Length - 1);
        if (total <= 0)
        {
            return null;
        }

        for (var i = 0; i < end.Length; i++)
        {
            if (end[i][1] - Before(i) >= total * percent / 100)
            {
                return end[i][0];
            }
        }

        return double.PositiveInfinity;
    }

    /// <summary>
    /// The value of the first sample of <paramref name="metric"/> in Prometheus text, summed over its label sets
    /// (only those whose labels hold <paramref name="label"/>, e.g. <c>gc_heap_generation="gen0"</c>, when given).
    /// </summary>
    public static double? Find(string text, string metric, string? label = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        double? sum = null;
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.StartsWith('#') || !line.StartsWith(metric, StringComparison.Ordinal))
            {
                continue;
            }

            var rest = line[metric.Length..];
            if (rest.Length > 0 && rest[0] is not ('{' or ' '))
            {
                continue; // a longer metric name that starts the same
            }

            var valueStart = rest.StartsWith('{') ? rest.IndexOf('}', StringComparison.Ordinal) + 1 : 0;
            if (label is not null && !rest.AsSpan(0, valueStart).Contains(label, StringComparison.Ordinal))
            {
                continue;
            }

            var parts = rest[valueStart..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                sum = (sum ?? 0) + value;
            }
        }

        return sum;
    }
}
