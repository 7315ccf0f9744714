using System.Globalization;
using Npgsql;

namespace Taihu.Cluster;

/// <summary>
/// The check a node makes of its own clock before it joins: its time against the shared PostgreSQL server's, the
/// one clock every node can read.
/// </summary>
/// <remarks>
/// Nodes stamp what they accept with their own clock: telemetry and attribute times, alarm times, persistent RPC
/// expirations, the membership table's heartbeats. A node whose clock is minutes off would file a device's data
/// out of order with the other nodes', expire RPC calls early or late, and look dead (or alive) to its peers'
/// table reads. So a node more than <see cref="ClusterNodeOptions.MaxClockSkew"/> away from the database's clock
/// refuses to start, before it writes anything. The database's time is read three times and the reading with the
/// shortest round trip is kept; half that round trip is allowed on top of the limit, since the reading may have
/// been taken at any moment of it.
/// </remarks>
public static class ClusterClock
{
    /// <summary>
    /// How far this node's clock (<paramref name="clock"/>) is ahead of the database's (negative: behind). Throws
    /// <see cref="ClusterStartupException"/> when that is more than <paramref name="maxSkew"/>.
    /// </summary>
    public static async Task<TimeSpan> CheckAsync(NpgsqlDataSource database, TimeProvider clock, TimeSpan maxSkew, string where, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentNullException.ThrowIfNull(clock);
        await using var connection = await database.OpenConnectionAsync(cancellationToken);
        await using var read = new NpgsqlCommand("SELECT clock_timestamp()", connection);
        var skew = TimeSpan.Zero;
        var roundTrip = TimeSpan.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var before = clock.GetUtcNow();
            var databaseTime = (DateTime)(await read.ExecuteScalarAsync(cancellationToken))!;
            var after = clock.GetUtcNow();
            if (after - before < roundTrip)
            {
                roundTrip = after - before;
                var local = before + ((after - before) / 2);
                skew = local - new DateTimeOffset(DateTime.SpecifyKind(databaseTime, DateTimeKind.Utc));
            }
        }

        if (skew.Duration() > maxSkew + (roundTrip / 2))
        {
            throw new ClusterStartupException(string.Create(CultureInfo.InvariantCulture,
                $"This node's clock is {Describe(skew.Duration())} {(skew > TimeSpan.Zero ? "ahead of" : "behind")} the clock of PostgreSQL at {where}, more than Cluster:MaxClockSkew ({maxSkew}) allows. The nodes stamp telemetry, alarms and RPC expirations with their own clocks: synchronise this machine's clock (NTP) and start the node again."));
        }

        return skew;
    }

    private static string Describe(TimeSpan span) => span.TotalSeconds < 120
        ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalSeconds:0.0} s")
        : string.Create(CultureInfo.InvariantCulture, $"{span.TotalMinutes:0.0} min");
}
