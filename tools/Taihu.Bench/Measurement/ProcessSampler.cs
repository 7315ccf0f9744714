using System.Diagnostics;
using System.Globalization;

namespace Taihu.Bench.Measurement;

/// <summary>CPU time and resident memory of a process, read from /proc (Linux).</summary>
public readonly record struct ProcessSample(TimeSpan CpuTime, long ResidentBytes, long WallTimestamp);

public static class ProcessSampler
{
    private static readonly long s_clockTicksPerSecond = 100; // USER_HZ on Linux.

    /// <summary>Reads /proc/{pid}/stat and /proc/{pid}/status; null when the process is not there.</summary>
    public static ProcessSample? Sample(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return Parse(stat, File.ReadAllText($"/proc/{pid}/status"), Stopwatch.GetTimestamp());
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The CPU time and resident memory of several processes together (a cluster's nodes); null when one is not there.</summary>
    public static ProcessSample? SampleAll(int pid, IEnumerable<int> others)
    {
        ArgumentNullException.ThrowIfNull(others);
        if (Sample(pid) is not { } total)
        {
            return null;
        }

        foreach (var other in others)
        {
            if (Sample(other) is not { } sample)
            {
                return null;
            }

            total = total with { CpuTime = total.CpuTime + sample.CpuTime, ResidentBytes = total.ResidentBytes + sample.ResidentBytes };
        }

        return total;
    }

    /// <summary>Parses the two files' text (split out for tests).</summary>
    public static ProcessSample Parse(string stat, string status, long timestamp)
    {
        ArgumentNullException.ThrowIfNull(stat);
        ArgumentNullException.ThrowIfNull(status);
        // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
        var afterName = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // afterName[0] is field 3 (state); utime is field 14, stime field 15.
        var utime = long.Parse(afterName[11], CultureInfo.InvariantCulture);
        var stime = long.Parse(afterName[12], CultureInfo.InvariantCulture);
        long rss = 0;
        foreach (var line in status.Split('\n'))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                rss = long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
                break;
            }
        }

        return new ProcessSample(TimeSpan.FromSeconds((utime + stime) / (double)s_clockTicksPerSecond), rss, timestamp);
    }

    /// <summary>This process's own CPU time and memory.</summary>
    public static ProcessSample Self()
    {
        using var process = Process.GetCurrentProcess();
        return new ProcessSample(process.TotalProcessorTime, process.WorkingSet64, Stopwatch.GetTimestamp());
    }

    /// <summary>CPU use between two samples, in percent of one core.</summary>
    public static double CpuPercent(ProcessSample from, ProcessSample to)
    {
        var wall = (to.WallTimestamp - from.WallTimestamp) / (double)Stopwatch.Frequency;
        return wall <= 0 ? 0 : (to.CpuTime - from.CpuTime).TotalSeconds / wall * 100;
    }
}
