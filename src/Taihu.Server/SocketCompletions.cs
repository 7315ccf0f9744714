namespace Taihu.Server;

/// <summary>
/// Where the runtime runs the code that follows a socket read or write on Linux. By default its epoll thread hands
/// every completion to the thread pool: one MQTT packet in wakes a pool thread, which answers and then spins and
/// parks again, two or three context switches per message. Run inline, the epoll threads (one per core) carry on
/// with the connection's receive loop themselves, as Mosquitto's and EMQX's event loops do. Measured here (issue
/// 10, docs/benchmarks.md): QoS 1 fan-in at 10,000 msg/s went from about 50 to 34 CPU-seconds per million
/// delivered. Idle connections that only ping may cost more this way (one run each: 5.1% of a core against 3.4%
/// for 10,000 of them); that is still to be measured properly.
/// </summary>
/// <remarks>
/// The price: code that blocks after a socket completion holds up the other connections of that epoll thread. The
/// broker's loops never block; telemetry and state writes go through their own writer loops; what still runs
/// inline is short: a credential lookup on a cache miss (one indexed SQLite read) and a device or broker user's
/// password check (1,000 PBKDF2 iterations, under a millisecond, then cached). HTTP requests still run on the
/// thread pool (Kestrel's HTTP transport hands them over). The runtime reads the switch once, from
/// the environment, before the first socket operation, so it is set here, first thing; an operator who sets
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0</c> keeps the runtime's default.
/// </remarks>
internal static class SocketCompletions
{
    public const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static void RunInline()
    {
        if (Environment.GetEnvironmentVariable(Variable) is null)
        {
            Environment.SetEnvironmentVariable(Variable, "1");
        }
    }
}
