using System.Net;
using System.Net.Sockets;

namespace Taihu.Platform.Tests;

/// <summary>A free TCP port on 127.0.0.1, for a process that must be told its port before it binds (PostgreSQL, Mosquitto, a cluster node's silo port).</summary>
public static class LoopbackPort
{
    /// <summary>Binds port 0, reads the port back and lets it go; another process could take it in between (rare on loopback).</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
