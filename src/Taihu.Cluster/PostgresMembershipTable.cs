using System.Globalization;
using System.Text;
using Npgsql;
using Orleans;
using Orleans.Runtime;

namespace Taihu.Cluster;

/// <summary>
/// Orleans' membership table on our own PostgreSQL tables (<see cref="ClusterSchema"/>), one cluster id per table
/// instance.
/// </summary>
/// <remarks>
/// Design note. Orleans' membership protocol is optimistic: every change reads the table, then writes one row
/// together with the table's version, and the write fails (false, no side effect) when someone else changed the
/// table in between. Here that is one transaction of two statements: the version row is updated only where its
/// etag (a counter) is the one the caller read, which under READ COMMITTED makes a concurrent writer wait for the
/// first and then find the etag changed; then the member row is inserted (none may exist) or updated (its own etag
/// must match). Either statement touching no row rolls the transaction back. Heartbeats (UpdateIAmAlive) touch only
/// the member's alive time, not its etag nor the table version, so they never make a concurrent change fail.
/// Reads are one REPEATABLE READ transaction, so the rows and the version come from one snapshot.
/// </remarks>
public sealed class PostgresMembershipTable(NpgsqlDataSource database, string clusterId) : IMembershipTable
{
    private const string Columns = "address, silo_name, host_name, status, proxy_port, suspect_times, start_time, i_am_alive_time, etag";

    public string ClusterId { get; } = clusterId;

    public async Task InitializeMembershipTable(bool tryInitTableVersion)
    {
        if (!tryInitTableVersion)
        {
            return;
        }

        await using var command = database.CreateCommand(
            "INSERT INTO cluster_versions (cluster_id, version, etag) VALUES (@cluster, 0, 0) ON CONFLICT (cluster_id) DO NOTHING");
        command.Parameters.AddWithValue("cluster", ClusterId);
        await command.ExecuteNonQueryAsync();
    }

    public async Task DeleteMembershipTableEntries(string clusterId)
    {
        // The members go with their version row (ON DELETE CASCADE).
        await using var command = database.CreateCommand("DELETE FROM cluster_versions WHERE cluster_id = @cluster");
        command.Parameters.AddWithValue("cluster", clusterId);
        await command.ExecuteNonQueryAsync();
    }

    public async Task CleanupDefunctSiloEntries(DateTimeOffset beforeDate)
    {
        await using var command = database.CreateCommand(
            "DELETE FROM cluster_members WHERE cluster_id = @cluster AND status = @dead AND last_update_time < @before");
        command.Parameters.AddWithValue("cluster", ClusterId);
        command.Parameters.AddWithValue("dead", (int)SiloStatus.Dead);
        command.Parameters.AddWithValue("before", beforeDate.UtcDateTime);
        await command.ExecuteNonQueryAsync();
    }

    public Task<MembershipTableData> ReadRow(SiloAddress key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return ReadAsync(key.ToParsableString());
    }

    public Task<MembershipTableData> ReadAll() => ReadAsync(null);

    public async Task<bool> InsertRow(MembershipEntry entry, TableVersion tableVersion)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(tableVersion);
        return await WriteAsync(tableVersion, $"""
            INSERT INTO cluster_members (cluster_id, {Columns}, last_update_time)
            VALUES (@cluster, @address, @silo_name, @host_name, @status, @proxy_port, @suspect_times, @start_time, @i_am_alive_time, 1, @last_update_time)
            ON CONFLICT (cluster_id, address) DO NOTHING
            """, entry, rowEtag: null);
    }

    public async Task<bool> UpdateRow(MembershipEntry entry, string etag, TableVersion tableVersion)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(tableVersion);
        if (!TryParseEtag(etag, out var rowEtag))
        {
            return false;
        }

        return await WriteAsync(tableVersion, """
            UPDATE cluster_members SET silo_name = @silo_name, host_name = @host_name, status = @status, proxy_port = @proxy_port,
                suspect_times = @suspect_times, start_time = @start_time, i_am_alive_time = @i_am_alive_time,
                last_update_time = GREATEST(last_update_time, @last_update_time), etag = etag + 1
            WHERE cluster_id = @cluster AND address = @address AND etag = @row_etag
            """, entry, rowEtag);
    }

    public async Task UpdateIAmAlive(MembershipEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        await using var command = database.CreateCommand("""
            UPDATE cluster_members SET i_am_alive_time = @alive, last_update_time = GREATEST(last_update_time, @alive)
            WHERE cluster_id = @cluster AND address = @address
            """);
        command.Parameters.AddWithValue("cluster", ClusterId);
        command.Parameters.AddWithValue("address", entry.SiloAddress.ToParsableString());
        command.Parameters.AddWithValue("alive", Utc(entry.IAmAliveTime));
        await command.ExecuteNonQueryAsync();
    }

    private async Task<bool> WriteAsync(TableVersion tableVersion, string rowSql, MembershipEntry entry, long? rowEtag)
    {
        if (!TryParseEtag(tableVersion.VersionEtag, out var versionEtag))
        {
            return false;
        }

        await using var connection = await database.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var version = new NpgsqlCommand(
            "UPDATE cluster_versions SET version = @version, etag = etag + 1, updated_time = now() WHERE cluster_id = @cluster AND etag = @etag",
            connection, transaction))
        {
            version.Parameters.AddWithValue("version", tableVersion.Version);
            version.Parameters.AddWithValue("cluster", ClusterId);
            version.Parameters.AddWithValue("etag", versionEtag);
            if (await version.ExecuteNonQueryAsync() != 1)
            {
                return false;
            }
        }

        await using (var row = new NpgsqlCommand(rowSql, connection, transaction))
        {
            row.Parameters.AddWithValue("cluster", ClusterId);
            row.Parameters.AddWithValue("address", entry.SiloAddress.ToParsableString());
            row.Parameters.AddWithValue("silo_name", entry.SiloName ?? "");
            row.Parameters.AddWithValue("host_name", entry.HostName ?? "");
            row.Parameters.AddWithValue("status", (int)entry.Status);
            row.Parameters.AddWithValue("proxy_port", entry.ProxyPort);
            row.Parameters.AddWithValue("suspect_times", WriteSuspectTimes(entry.SuspectTimes));
            row.Parameters.AddWithValue("start_time", Utc(entry.StartTime));
            row.Parameters.AddWithValue("i_am_alive_time", Utc(entry.IAmAliveTime));
            row.Parameters.AddWithValue("last_update_time", LastUpdateTime(entry));
            if (rowEtag is { } expected)
            {
                row.Parameters.AddWithValue("row_etag", expected);
            }

            if (await row.ExecuteNonQueryAsync() != 1)
            {
                return false;
            }
        }

        await transaction.CommitAsync();
        return true;
    }

    private async Task<MembershipTableData> ReadAsync(string? address)
    {
        await using var connection = await database.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead);
        var tableVersion = new TableVersion(0, "0");
        await using (var version = new NpgsqlCommand("SELECT version, etag FROM cluster_versions WHERE cluster_id = @cluster", connection, transaction))
        {
            version.Parameters.AddWithValue("cluster", ClusterId);
            await using var reader = await version.ExecuteReaderAsync();
            if (await reader.ReadAsync())
            {
                tableVersion = new TableVersion(reader.GetInt32(0), reader.GetInt64(1).ToString(CultureInfo.InvariantCulture));
            }
        }

        var rows = new List<Tuple<MembershipEntry, string>>();
        await using (var members = new NpgsqlCommand(
            $"SELECT {Columns} FROM cluster_members WHERE cluster_id = @cluster" + (address is null ? "" : " AND address = @address"),
            connection, transaction))
        {
            members.Parameters.AddWithValue("cluster", ClusterId);
            if (address is not null)
            {
                members.Parameters.AddWithValue("address", address);
            }

            await using var reader = await members.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                var entry = new MembershipEntry
                {
                    SiloAddress = SiloAddress.FromParsableString(reader.GetString(0)),
                    SiloName = reader.GetString(1),
                    HostName = reader.GetString(2),
                    Status = (SiloStatus)reader.GetInt32(3),
                    ProxyPort = reader.GetInt32(4),
                    SuspectTimes = ReadSuspectTimes(reader.GetString(5)),
                    StartTime = reader.GetDateTime(6),
                    IAmAliveTime = reader.GetDateTime(7),
                };
                rows.Add(Tuple.Create(entry, reader.GetInt64(8).ToString(CultureInfo.InvariantCulture)));
            }
        }

        await transaction.CommitAsync();
        return new MembershipTableData(rows, tableVersion);
    }

    /// <summary>
    /// The latest of the start, heartbeat and suspicion times: what Orleans' cleanup judges a dead entry's age by, so
    /// that a node declared dead recently stays visible however long ago it last sent a heartbeat.
    /// </summary>
    private static DateTime LastUpdateTime(MembershipEntry entry)
    {
        var latest = Utc(entry.StartTime) > Utc(entry.IAmAliveTime) ? Utc(entry.StartTime) : Utc(entry.IAmAliveTime);
        if (entry.SuspectTimes is { } votes)
        {
            foreach (var (_, time) in votes)
            {
                if (Utc(time) > latest)
                {
                    latest = Utc(time);
                }
            }
        }

        return latest;
    }

    private static bool TryParseEtag(string? etag, out long value) =>
        long.TryParse(etag, NumberStyles.None, CultureInfo.InvariantCulture, out value);

    /// <summary>PostgreSQL's timestamptz takes UTC times only; Orleans' are UTC, or unset (kept as the earliest time).</summary>
    private static DateTime Utc(DateTime time) => time.Kind switch
    {
        DateTimeKind.Utc => time,
        DateTimeKind.Local => time.ToUniversalTime(),
        _ => DateTime.SpecifyKind(time, DateTimeKind.Utc),
    };

    /// <summary>Votes as <c>address,ticks</c> joined by <c>|</c> (a silo address holds neither character).</summary>
    internal static string WriteSuspectTimes(List<Tuple<SiloAddress, DateTime>>? votes)
    {
        if (votes is null || votes.Count == 0)
        {
            return "";
        }

        var text = new StringBuilder();
        foreach (var (silo, time) in votes)
        {
            if (text.Length > 0)
            {
                text.Append('|');
            }

            text.Append(silo.ToParsableString()).Append(',').Append(Utc(time).Ticks.ToString(CultureInfo.InvariantCulture));
        }

        return text.ToString();
    }

    internal static List<Tuple<SiloAddress, DateTime>> ReadSuspectTimes(string text)
    {
        var votes = new List<Tuple<SiloAddress, DateTime>>();
        foreach (var vote in text.Split('|', StringSplitOptions.RemoveEmptyEntries))
        {
            var comma = vote.LastIndexOf(',');
            votes.Add(Tuple.Create(
                SiloAddress.FromParsableString(vote[..comma]),
                new DateTime(long.Parse(vote.AsSpan(comma + 1), NumberStyles.None, CultureInfo.InvariantCulture), DateTimeKind.Utc)));
        }

        return votes;
    }
}
