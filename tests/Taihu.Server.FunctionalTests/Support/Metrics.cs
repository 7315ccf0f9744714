using System.Globalization;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>Reads the server's Prometheus endpoint.</summary>
public static class Metrics
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    /// <summary>The sum of every sample of <paramref name="name"/> (all label sets), or null when absent.</summary>
    public static async Task<double?> ReadAsync(HttpClient http, string name)
    {
        var text = await http.GetStringAsync("/metrics");
        double? sum = null;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(name, StringComparison.Ordinal) && line.Length > name.Length && line[name.Length] is ' ' or '{')
            {
                var value = line[(line.LastIndexOf(' ') + 1)..];
                sum = (sum ?? 0) + double.Parse(value, CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    /// <summary>Reads the metric again and again (each read is a round trip, no sleeping) until it satisfies <paramref name="condition"/>.</summary>
    public static async Task WaitForAsync(ServerProcess server, string name, Func<double, bool> condition, TimeSpan? guard = null)
    {
        using var http = new HttpClient { BaseAddress = server.HttpBaseAddress };
        var limit = guard ?? Guard;
        var deadline = DateTime.UtcNow + limit;
        while (true)
        {
            var last = await ReadAsync(http, name);
            if (last is { } value && condition(value))
            {
                return;
            }

            if (DateTime.UtcNow >= deadline)
            {
                // What the server said last, to tell a slow cluster from a stuck one.
                var tail = string.Join('\n', server.Output.Split('\n').TakeLast(40));
                Assert.Fail($"{name} did not reach the expected value within {limit.TotalSeconds} s (last read: {last?.ToString(CultureInfo.InvariantCulture) ?? "none"}). The server's last lines:\n{tail}");
            }
        }
    }
}
