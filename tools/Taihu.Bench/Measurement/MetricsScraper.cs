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

    /// <summary>The value of the first sample of <paramref name="metric"/> in Prometheus text, summed over its label sets.</summary>
    public static double? Find(string text, string metric)
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
            var parts = rest[valueStart..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0 && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                sum = (sum ?? 0) + value;
            }
        }

        return sum;
    }
}
