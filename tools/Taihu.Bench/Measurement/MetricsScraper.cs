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
