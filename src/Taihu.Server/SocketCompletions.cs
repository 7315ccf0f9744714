using Taihu.Platform;

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
/// <para>
/// The price: code that blocks after a socket completion holds up the other connections of that epoll thread, and
/// code that waits synchronously for another socket there waits for itself. The broker's loops never block;
/// telemetry and state writes go through their own writer loops; what still runs inline on the embedded store is
/// short: a credential lookup on a cache miss (one indexed SQLite read) and a device or broker user's password
/// check (1,000 PBKDF2 iterations, under a millisecond, then cached). HTTP requests still run on the thread pool
/// (Kestrel's HTTP transport hands them over).
/// </para>
/// <para>
/// <b>Not on PostgreSQL.</b> There every query's answer is itself a socket completion, so Npgsql's own code runs on
/// the epoll threads, and some of it is synchronous: when a query is cancelled (its MQTT client went away while
/// its credentials were being looked up) Npgsql opens a new connection to send PostgreSQL the cancel request, and
/// waits for it synchronously. On an epoll thread that wait never ends, since that thread is the one that would
/// complete it: a cluster node whose neighbour had died, taking 5,000 reconnecting devices, had both its epoll
/// threads stuck so, and every socket of the node (MQTT, the other nodes, PostgreSQL) stopped (found in a dump,
/// docs/benchmarks.md, "The spread turns, and a node that hung"). So with <c>Storage:Provider</c> PostgreSql the
/// runtime's default is kept.
/// </para>
/// <para>
/// The runtime reads the switch once, from the environment, before the first socket operation, so it is set
/// before the host is built (reading the settings opens no socket); an operator who sets
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> (0 or 1) decides instead.
/// </para>
/// </remarks>
internal static class SocketCompletions
{
    public const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Asks for inline completions unless the operator chose, or the store is PostgreSQL; returns whether they are inline.</summary>
    public static bool Choose(IConfiguration configuration)
    {
        if (Environment.GetEnvironmentVariable(Variable) is { } chosen)
        {
            return chosen == "1";
        }

        if (Enum.TryParse<StorageProvider>(configuration["Storage:Provider"], ignoreCase: true, out var provider) && provider == StorageProvider.PostgreSql)
        {
            return false;
        }

        Environment.SetEnvironmentVariable(Variable, "1");
        return true;
    }
}
