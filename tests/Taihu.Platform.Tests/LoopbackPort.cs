using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Taihu.Platform.Tests;

/// <summary>A free TCP port on 127.0.0.1, for a process that must be told its port before it binds (PostgreSQL, Mosquitto, a cluster node's silo port).</summary>
/// <remarks>
/// The port comes from below the kernel's ephemeral range, which neither a bind to port 0 nor an outgoing
/// connection's source port ever takes. A port of that range, found free by binding port 0 and let go, was taken
/// again before the node bound it (CI: "Address already in use" at a silo's start), because the suite opens
/// connections fast enough to cycle through the whole range. Between picking a port here and its process binding
/// it, only another test's pick can take it: a process never hands out the same port twice, and other processes
/// pick at random in about 20,000 ports.
/// </remarks>
public static class LoopbackPort
{
    private const int Lowest = 10_000;
    private static readonly HashSet<int> s_given = [];
    private static readonly int s_ephemeralLow = EphemeralLow();

    /// <summary>A port no socket holds now, below the ephemeral range; never the same one twice in a process.</summary>
    public static int Free()
    {
        if (s_ephemeralLow - Lowest < 1_000)
        {
            return FromTheKernel();
        }

        lock (s_given)
        {
            for (var attempt = 0; attempt < 1_000; attempt++)
            {
                var port = Random.Shared.Next(Lowest, s_ephemeralLow);
                if (!s_given.Contains(port) && IsFree(port))
                {
                    s_given.Add(port);
                    return port;
                }
            }
        }

        throw new InvalidOperationException($"No free port found between {Lowest} and {s_ephemeralLow}.");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Binds port 0, reads the port back and lets it go (where the ephemeral range leaves no room below it).</summary>
    private static int FromTheKernel()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The first port of the kernel's ephemeral range (Linux's ip_local_port_range; 32768, its default, elsewhere).</summary>
    private static int EphemeralLow()
    {
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return int.Parse(range[0], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 32_768;
        }
    }
}
