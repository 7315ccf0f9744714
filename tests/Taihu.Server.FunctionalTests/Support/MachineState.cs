using System.Text;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// What the machine was doing when a wait timed out, for the failure message: the load, Linux's pressure stall
/// figures, and the TCP counters that show a connection attempt left unanswered (a SYN sent again, a listening
/// socket's queue overflowing). A CI failure is read once, from its log; this is what it needs to say.
/// </summary>
public static class MachineState
{
    public static string Describe()
    {
        var text = new StringBuilder("The machine: ");
        text.Append("load ").Append(Read("/proc/loadavg")?.Trim() ?? "unknown");
        foreach (var resource in (string[])["cpu", "memory", "io"])
        {
            // "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345": the share of time some task waited for it.
            var first = Read($"/proc/pressure/{resource}")?.Split('\n')[0];
            if (first is not null)
            {
                text.Append("; ").Append(resource).Append(" pressure ").Append(first);
            }
        }

        text.Append("; TCP ").Append(TcpCounters("TCPSynRetrans", "ListenOverflows", "ListenDrops", "TCPTimeouts"));
        return text.ToString();
    }

    /// <summary>Named TcpExt counters from /proc/net/netstat (a line of names, then a line of values).</summary>
    private static string TcpCounters(params string[] names)
    {
        var lines = Read("/proc/net/netstat")?.Split('\n');
        if (lines is null)
        {
            return "counters unknown";
        }

        for (var i = 0; i + 1 < lines.Length; i++)
        {
            if (!lines[i].StartsWith("TcpExt:", StringComparison.Ordinal) || !lines[i + 1].StartsWith("TcpExt:", StringComparison.Ordinal))
            {
                continue;
            }

            var keys = lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var values = lines[i + 1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var found = new List<string>();
            foreach (var name in names)
            {
                var index = Array.IndexOf(keys, name);
                if (index > 0 && index < values.Length)
                {
                    found.Add($"{name}={values[index]}");
                }
            }

            return string.Join(' ', found);
        }

        return "counters unknown";
    }

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
