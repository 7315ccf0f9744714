using System.Diagnostics;
using System.Globalization;

namespace Taihu.Sim.Running;

/// <summary>
/// The server's CPU and memory once a second during the run, from its Prometheus endpoint (<c>/metrics</c>: the
/// .NET runtime's <c>dotnet_process_cpu_time_seconds_total</c> and <c>dotnet_process_memory_working_set_bytes</c>,
/// as Taihu exposes them), or from <c>/proc</c> for a local process given by id (any server, Mosquitto included).
/// </summary>
/// <param name="points">Whether to read the points the server committed (Taihu's <c>taihu_ingest_points_total</c>) each second too.</param>
public sealed class ServerSampler(HttpClient http, int? pid, bool points = true)
{
    private readonly List<(double Seconds, double? CpuPercent, double? MemoryMb)> _samples = [];
    private readonly List<(double Seconds, double PointsPerSecond)> _stored = [];

    /// <summary>Points the server committed per second (all tenants: the server's own count), each second of the run.</summary>
    public IReadOnlyList<(double Seconds, double PointsPerSecond)> Stored => _stored;

    public IReadOnlyList<(double Seconds, double? CpuPercent, double? MemoryMb)> Samples => _samples;

    /// <summary>Where the numbers came from, for the report; null when there were none.</summary>
    public string? Source { get; private set; }

    public async Task RunAsync(long startTimestamp, CancellationToken cancellationToken)
    {
        double? lastCpu = null;
        var lastAt = 0.0;
        double? lastPoints = null;
        var lastPointsAt = 0.0;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            do
            {
                var at = Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
                var (cpu, memory, committed) = await ReadAsync(cancellationToken);
                if (committed is { } total)
                {
                    if (lastPoints is { } before && at > lastPointsAt)
                    {
                        _stored.Add((at, Math.Max(0, (total - before) / (at - lastPointsAt))));
                    }

                    lastPoints = total;
                    lastPointsAt = at;
                }

                double? percent = cpu is { } c && lastCpu is { } l && at > lastAt ? Math.Max(0, (c - l) / (at - lastAt) * 100) : null;
                if (cpu is not null)
                {
                    lastCpu = cpu;
                    lastAt = at;
                }

                if (cpu is not null || memory is not null)
                {
                    _samples.Add((at, percent, memory));
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    private async Task<(double? CpuSeconds, double? MemoryMb, double? Points)> ReadAsync(CancellationToken cancellationToken)
    {
        if (pid is { } id)
        {
            var (cpuSeconds, memoryMb) = ReadProc(id);
            return (cpuSeconds, memoryMb, points ? (await ReadMetricsAsync(cancellationToken)).Points : null);
        }

        var metrics = await ReadMetricsAsync(cancellationToken);
        Source ??= metrics.CpuSeconds is null && metrics.MemoryMb is null ? null : "the server's /metrics";
        return metrics;
    }

    private async Task<(double? CpuSeconds, double? MemoryMb, double? Points)> ReadMetricsAsync(CancellationToken cancellationToken)
    {
        try
        {
            var text = await http.GetStringAsync("/metrics", cancellationToken);
            double? cpu = null;
            double? memory = null;
            double? committed = null;
            foreach (var line in text.Split('\n'))
            {
                if (points && line.StartsWith("taihu_ingest_points_total", StringComparison.Ordinal) && Value(line) is { } count)
                {
                    committed = count;
                    continue;
                }

                if (line.StartsWith("dotnet_process_cpu_time_seconds_total", StringComparison.Ordinal) && Value(line) is { } seconds)
                {
                    cpu = (cpu ?? 0) + seconds;
                }
                else if (line.StartsWith("dotnet_process_memory_working_set_bytes", StringComparison.Ordinal) && Value(line) is { } bytes)
                {
                    memory = bytes / (1024.0 * 1024.0);
                }
            }

            return (cpu, memory, committed);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return (null, null, null);
        }
    }

    private static double? Value(string line)
    {
        var space = line.LastIndexOf(' ');
        return space > 0 && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var value) ? value : null;
    }

    /// <summary>utime + stime (fields 14 and 15 of /proc/PID/stat, in clock ticks of 1/100 s) and VmRSS.</summary>
    private (double? CpuSeconds, double? MemoryMb) ReadProc(int id)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{id}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var cpu = (double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
            double? memory = null;
            foreach (var line in File.ReadLines($"/proc/{id}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    memory = double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
                }
            }

            Source ??= $"/proc/{id}";
            return (cpu, memory);
        }
        catch (IOException)
        {
            return (null, null);
        }
    }
}
