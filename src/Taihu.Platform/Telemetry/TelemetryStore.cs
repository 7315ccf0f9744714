using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Telemetry;

/// <summary>How raw history is ordered.</summary>
public enum SortOrder
{
    Ascending,
    Descending,
}

/// <summary>Aggregation over fixed intervals.</summary>
public enum Aggregation
{
    None,
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

/// <summary>The names of <see cref="Aggregation"/> in ThingsBoard's API (<c>agg</c>).</summary>
public static class AggregationNames
{
    /// <summary>What a caller is told when <c>agg</c> names none of them.</summary>
    public const string Expected = "agg is NONE, AVG, MIN, MAX, SUM or COUNT.";

    /// <summary>NONE, AVG, MIN, MAX, SUM or COUNT in any letter case; a missing value is NONE.</summary>
    public static bool TryParse(string? name, out Aggregation aggregation)
    {
        aggregation = name?.ToUpperInvariant() switch
        {
            null or "NONE" => Aggregation.None,
            "AVG" => Aggregation.Avg,
            "MIN" => Aggregation.Min,
            "MAX" => Aggregation.Max,
            "SUM" => Aggregation.Sum,
            "COUNT" => Aggregation.Count,
            _ => (Aggregation)(-1),
        };
        return aggregation >= Aggregation.None;
    }
}

/// <summary>A point of one device, ready to write: the device's row number and the point.</summary>
public readonly record struct DevicePoint(long DeviceSeq, TelemetryPoint Point);

/// <summary>Time series: batched writes, latest values, raw history, aggregates, deletion and retention.</summary>
public interface ITelemetryStore
{
    /// <summary>
    /// Writes the points in one transaction; a point is unique by (device, key, ts) and the last write wins. The
    /// batch goes to the event log in the same transaction (rules and integrations read it there); returns its
    /// position in the log.
    /// </summary>
    Task<long> WriteAsync(IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken = default);

    /// <summary>Latest value of each key of the device (of <paramref name="keys"/> when given).</summary>
    Task<IReadOnlyList<TelemetryPoint>> GetLatestAsync(long deviceSeq, IReadOnlyCollection<string>? keys, CancellationToken cancellationToken = default);

    /// <summary>Keys the device has ever sent.</summary>
    Task<IReadOnlyList<string>> GetKeysAsync(long deviceSeq, CancellationToken cancellationToken = default);

    /// <summary>Raw points of one key in [startTs, endTs], at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<TelemetryPoint>> GetHistoryAsync(long deviceSeq, string key, long startTs, long endTs, int limit, SortOrder order, CancellationToken cancellationToken = default);

    /// <summary>
    /// One aggregate per interval of <paramref name="intervalMs"/> in [startTs, endTs); an interval without points
    /// is left out, and each value is stamped with the middle of its interval, as ThingsBoard does.
    /// </summary>
    Task<IReadOnlyList<TelemetryPoint>> GetAggregatesAsync(long deviceSeq, string key, long startTs, long endTs, long intervalMs, Aggregation aggregation, CancellationToken cancellationToken = default);

    /// <summary>Deletes the points of the keys in [startTs, endTs]; returns how many. Latest values are recomputed.</summary>
    Task<long> DeleteAsync(long deviceSeq, IReadOnlyCollection<string> keys, long startTs, long endTs, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes every point, rollup and latest value of a device, a slice at a time, each slice in its own short
    /// transaction: a device with millions of points must not hold the database's write lock (SQLite has one)
    /// while other devices' telemetry waits. Returns how many points.
    /// </summary>
    Task<long> PurgeDeviceAsync(long deviceSeq, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes points of the devices of a tenant in the whole minutes before <paramref name="olderThanTs"/> (a cut
    /// inside a minute keeps that minute, so that each minute's rollup goes with its points); returns how many.
    /// </summary>
    Task<long> DeleteOlderThanAsync(Guid tenantId, long olderThanTs, CancellationToken cancellationToken = default);
}

/// <summary>
/// The SQL implementation. Keys are numbered in a dictionary table (as ThingsBoard's ts_kv_dictionary) so rows
/// stay narrow; each value sits in the column of its type. SQLite writes one prepared statement per point inside
/// one transaction (~200-500k rows/s here); PostgreSQL sends the batch as arrays through <c>unnest</c>, one
/// statement per batch, after folding duplicates of (device, key, ts) into their last write (PostgreSQL refuses
/// to update one row twice in a statement).
/// </summary>
public sealed partial class SqlTelemetryStore(PlatformDatabase database, Events.EventSignal? events = null) : ITelemetryStore, IDisposable
{
    private readonly ConcurrentDictionary<string, long> _keyIds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, string> _keyNames = new();

    public async Task<IReadOnlyList<TelemetryPoint>> GetLatestAsync(long deviceSeq, IReadOnlyCollection<string>? keys, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT key_id, ts, value_type, bool_v, long_v, dbl_v, str_v FROM ts_latest WHERE device_seq = @d";
        command.AddParameter("d", deviceSeq);
        var result = new List<TelemetryPoint>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var name = await KeyNameAsync(reader.GetInt64(0), cancellationToken);
            if (keys is null || keys.Contains(name))
            {
                result.Add(new TelemetryPoint(name, reader.GetInt64(1), ReadValue(reader, 2)));
            }
        }

        return result;
    }

    public async Task<IReadOnlyList<string>> GetKeysAsync(long deviceSeq, CancellationToken cancellationToken = default)
    {
        var latest = await GetLatestAsync(deviceSeq, null, cancellationToken);
        var keys = new List<string>(latest.Count);
        foreach (var point in latest)
        {
            keys.Add(point.Key);
        }

        keys.Sort(StringComparer.Ordinal);
        return keys;
    }

    public async Task<IReadOnlyList<TelemetryPoint>> GetHistoryAsync(long deviceSeq, string key, long startTs, long endTs, int limit, SortOrder order, CancellationToken cancellationToken = default)
    {
        var result = new List<TelemetryPoint>();
        if (limit <= 0)
        {
            // Not passed on: SQLite reads LIMIT -1 as no limit at all, PostgreSQL refuses it.
            return result;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        var keyId = await FindKeyAsync(connection, key, cancellationToken);
        if (keyId is null)
        {
            return result;
        }

        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT ts, value_type, bool_v, long_v, dbl_v, str_v FROM ts_kv
            WHERE device_seq = @d AND key_id = @k AND ts >= @start AND ts <= @end
            ORDER BY ts {(order == SortOrder.Descending ? "DESC" : "ASC")} LIMIT @limit
            """;
        command.AddParameter("d", deviceSeq);
        command.AddParameter("k", keyId.Value);
        command.AddParameter("start", startTs);
        command.AddParameter("end", endTs);
        command.AddParameter("limit", (long)limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(new TelemetryPoint(key, reader.GetInt64(0), ReadValue(reader, 1)));
        }

        return result;
    }

    public async Task<IReadOnlyList<TelemetryPoint>> GetAggregatesAsync(long deviceSeq, string key, long startTs, long endTs, long intervalMs, Aggregation aggregation, CancellationToken cancellationToken = default)
    {
        if (intervalMs <= 0)
        {
            throw PlatformException.BadRequest("interval must be a positive number of milliseconds.");
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        var keyId = await FindKeyAsync(connection, key, cancellationToken);
        var result = new List<TelemetryPoint>();
        if (keyId is null)
        {
            return result;
        }

        // Integers and doubles are aggregated in their own columns: going through a double would round integers
        // past 2^53 (MIN and MAX must return a stored value exactly). An integer sum is taken in two halves, the
        // high 32 bits and the low 32 bits, which cannot overflow (SQLite's SUM fails on overflow, PostgreSQL's
        // returns a numeric), and put together here.
        var columns = aggregation switch
        {
            Aggregation.Count => "COUNT(*)",
            Aggregation.Min => "COUNT(long_v), COUNT(dbl_v), MIN(long_v), MIN(dbl_v)",
            Aggregation.Max => "COUNT(long_v), COUNT(dbl_v), MAX(long_v), MAX(dbl_v)",
            _ => "COUNT(long_v), COUNT(dbl_v), SUM(long_v >> 32), SUM(long_v & 4294967295), SUM(dbl_v)",
        };
        // Intervals are counted from an origin: the start, or for a start below zero the last interval boundary at
        // or below zero. Timestamps are never negative (the parser refuses them), so the intervals stay where they
        // were and ts - origin cannot overflow, which PostgreSQL fails on and SQLite turns into a float.
        var origin = startTs >= 0 ? startTs : (long)(startTs + (-(Int128)startTs / intervalMs * intervalMs));
        using var command = connection.CreateCommand();
        if (origin % MinuteMs == 0 && endTs % MinuteMs == 0 && intervalMs % MinuteMs == 0)
        {
            // Whole minutes: read the per-minute rollups (60 rows an hour) instead of every point. The columns
            // come in the order the raw query gives them, so one reader serves both.
            var rolled = aggregation switch
            {
                Aggregation.Count => "SUM(cnt)",
                Aggregation.Min => "SUM(cnt_l), SUM(cnt_d), MIN(min_l), MIN(min_d)",
                Aggregation.Max => "SUM(cnt_l), SUM(cnt_d), MAX(max_l), MAX(max_d)",
                _ => "SUM(cnt_l), SUM(cnt_d), SUM(sum_l_hi), SUM(sum_l_lo), SUM(sum_d)",
            };
            command.CommandText = $"""
                SELECT (minute * 60000 - @origin) / @interval AS bucket, {rolled} FROM ts_rollup_1m
                WHERE device_seq = @d AND key_id = @k AND minute >= @origin / 60000 AND minute < @end / 60000
                GROUP BY (minute * 60000 - @origin) / @interval
                {(aggregation == Aggregation.Count ? "" : "HAVING SUM(cnt_l) + SUM(cnt_d) > 0")}
                ORDER BY bucket
                """;
        }
        else
        {
            // Bucket number by integer division, evaluated by the database over the index range of the key.
            command.CommandText = $"""
                SELECT (ts - @origin) / @interval AS bucket, {columns} FROM ts_kv
                WHERE device_seq = @d AND key_id = @k AND ts >= @origin AND ts < @end
                  {(aggregation == Aggregation.Count ? "" : "AND value_type IN (1, 2)")}
                GROUP BY (ts - @origin) / @interval ORDER BY bucket
                """;
        }

        command.AddParameter("d", deviceSeq);
        command.AddParameter("k", keyId.Value);
        command.AddParameter("origin", origin);
        command.AddParameter("end", endTs);
        command.AddParameter("interval", intervalMs);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var bucketStart = origin + (Sql.GetInt64(reader, 0) * intervalMs);
            // The middle of the interval, the last one cut short by the end (in 128 bits: end - start may not fit in 64).
            var stamp = bucketStart + (long)(Int128.Min(intervalMs, (Int128)endTs - bucketStart) / 2);
            var value = aggregation == Aggregation.Count ? KvValue.Of(Sql.GetInt64(reader, 1)) : Aggregate(reader, aggregation);
            result.Add(new TelemetryPoint(key, stamp, value));
        }

        return result;
    }

    /// <summary>
    /// One interval's value from (integer count, double count, then the aggregation's columns). As in ThingsBoard:
    /// MIN, MAX and SUM of integers stay integers, anything with a double is a double, AVG is always a double.
    /// </summary>
    private static KvValue Aggregate(DbDataReader reader, Aggregation aggregation)
    {
        var longs = Sql.GetInt64(reader, 1);
        var doubles = Sql.GetInt64(reader, 2);
        if (aggregation is Aggregation.Min or Aggregation.Max)
        {
            if (doubles == 0)
            {
                return KvValue.Of(Sql.GetInt64(reader, 3));
            }

            var d = Sql.GetDouble(reader, 4);
            if (longs == 0)
            {
                return KvValue.Of(d);
            }

            var l = (double)Sql.GetInt64(reader, 3);
            return KvValue.Of(aggregation == Aggregation.Min ? Math.Min(l, d) : Math.Max(l, d));
        }

        var longSum = longs == 0 ? 0 : ((Int128)Sql.GetInt64(reader, 3) << 32) + Sql.GetInt64(reader, 4);
        var doubleSum = doubles == 0 ? 0 : Sql.GetDouble(reader, 5);
        if (aggregation == Aggregation.Avg)
        {
            return KvValue.Of(((double)longSum + doubleSum) / (longs + doubles));
        }

        // A sum of integers past the 64-bit range is given as a double rather than wrapped.
        return doubles == 0 && longSum >= long.MinValue && longSum <= long.MaxValue
            ? KvValue.Of((long)longSum)
            : KvValue.Of((double)longSum + doubleSum);
    }

    public async Task<long> DeleteAsync(long deviceSeq, IReadOnlyCollection<string> keys, long startTs, long endTs, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        long deleted = 0;
        foreach (var key in keys)
        {
            var keyId = await FindKeyAsync(connection, key, cancellationToken);
            if (keyId is null)
            {
                continue;
            }

            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = "DELETE FROM ts_kv WHERE device_seq = @d AND key_id = @k AND ts >= @start AND ts <= @end";
            command.AddParameter("d", deviceSeq);
            command.AddParameter("k", keyId.Value);
            command.AddParameter("start", startTs);
            command.AddParameter("end", endTs);
            deleted += await command.ExecuteNonQueryAsync(cancellationToken);

            // The latest value follows what is left: the newest remaining point, or none.
            using var latest = connection.CreateCommand();
            latest.Transaction = transaction;
            latest.CommandText = """
                DELETE FROM ts_latest WHERE device_seq = @d AND key_id = @k;
                INSERT INTO ts_latest (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v)
                SELECT device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v FROM ts_kv
                WHERE device_seq = @d AND key_id = @k ORDER BY ts DESC LIMIT 1;
                """;
            latest.AddParameter("d", deviceSeq);
            latest.AddParameter("k", keyId.Value);
            await latest.ExecuteNonQueryAsync(cancellationToken);

            // The minutes the range touches are rebuilt from what is left.
            var from = Math.Max(startTs, 0) / MinuteMs * MinuteMs;
            var to = endTs >= long.MaxValue - MinuteMs ? long.MaxValue : ((endTs / MinuteMs) + 1) * MinuteMs;
            await RecomputeRollupsAsync(connection, transaction, deviceSeq, keyId.Value, from, to, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            ForgetNewest(deviceSeq, keyId.Value);
        }

        return deleted;
    }

    public async Task<long> PurgeDeviceAsync(long deviceSeq, CancellationToken cancellationToken = default)
    {
        const int Slice = 20_000;
        await using var connection = await database.OpenAsync(cancellationToken);
        var keys = new List<long>();
        using (var list = connection.CreateCommand())
        {
            list.CommandText = "SELECT DISTINCT key_id FROM ts_latest WHERE device_seq = @d UNION SELECT DISTINCT key_id FROM ts_rollup_1m WHERE device_seq = @d";
            list.AddParameter("d", deviceSeq);
            await using var reader = await list.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                keys.Add(Sql.GetInt64(reader, 0));
            }
        }

        long deleted = 0;
        foreach (var key in keys)
        {
            while (true)
            {
                // The slice ends at the Slice-th oldest point of the key; the last slice takes the rest.
                using var cut = connection.CreateCommand();
                cut.CommandText = "SELECT ts FROM ts_kv WHERE device_seq = @d AND key_id = @k ORDER BY ts LIMIT 1 OFFSET @n";
                cut.AddParameter("d", deviceSeq);
                cut.AddParameter("k", key);
                cut.AddParameter("n", (long)Slice);
                var found = await cut.ExecuteScalarAsync(cancellationToken);
                using var delete = connection.CreateCommand();
                delete.CommandText = found is null or DBNull
                    ? "DELETE FROM ts_kv WHERE device_seq = @d AND key_id = @k"
                    : "DELETE FROM ts_kv WHERE device_seq = @d AND key_id = @k AND ts < @cut";
                delete.AddParameter("d", deviceSeq);
                delete.AddParameter("k", key);
                delete.AddParameter("cut", found is null or DBNull ? 0L : Convert.ToInt64(found, CultureInfo.InvariantCulture));
                deleted += await delete.ExecuteNonQueryAsync(cancellationToken);
                if (found is null or DBNull)
                {
                    break;
                }
            }

            ForgetNewest(deviceSeq, key);
        }

        using (var rest = connection.CreateCommand())
        {
            rest.CommandText = "DELETE FROM ts_rollup_1m WHERE device_seq = @d; DELETE FROM ts_latest WHERE device_seq = @d;";
            rest.AddParameter("d", deviceSeq);
            await rest.ExecuteNonQueryAsync(cancellationToken);
        }

        return deleted;
    }

    public async Task<long> DeleteOlderThanAsync(Guid tenantId, long olderThanTs, CancellationToken cancellationToken = default)
    {
        // Latest values stay: ThingsBoard keeps the last known value of a key after its history expires. The
        // cut is rounded down to a whole minute, so that a minute's rollup and its points go together. Each
        // (device, key) is its own short statement over its own index range: one statement for a whole tenant
        // would scan every point and hold SQLite's write lock while the tenant's devices wait to be stored.
        var before = Math.Max(olderThanTs, 0) / MinuteMs * MinuteMs;
        await using var connection = await database.OpenAsync(cancellationToken);
        var pairs = new List<(long Device, long Key)>();
        using (var list = connection.CreateCommand())
        {
            list.CommandText = "SELECT l.device_seq, l.key_id FROM ts_latest l JOIN devices d ON d.seq = l.device_seq WHERE d.tenant_id = @tenant";
            list.AddParameter("tenant", tenantId.ToString());
            await using var reader = await list.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                pairs.Add((Sql.GetInt64(reader, 0), Sql.GetInt64(reader, 1)));
            }
        }

        using var points = connection.CreateCommand();
        points.CommandText = "DELETE FROM ts_kv WHERE device_seq = @d AND key_id = @k AND ts < @before";
        var pd = points.AddParameter("d", 0L);
        var pk = points.AddParameter("k", 0L);
        points.AddParameter("before", before);
        using var rollups = connection.CreateCommand();
        rollups.CommandText = "DELETE FROM ts_rollup_1m WHERE device_seq = @d AND key_id = @k AND minute < @minute";
        var rd = rollups.AddParameter("d", 0L);
        var rk = rollups.AddParameter("k", 0L);
        rollups.AddParameter("minute", before / MinuteMs);
        long deleted = 0;
        foreach (var (device, key) in pairs)
        {
            pd.Value = device;
            pk.Value = key;
            deleted += await points.ExecuteNonQueryAsync(cancellationToken);
            rd.Value = device;
            rk.Value = key;
            await rollups.ExecuteNonQueryAsync(cancellationToken);
        }

        return deleted;
    }

    internal static KvValue ReadValue(DbDataReader reader, int o) => (DataType)Sql.GetInt(reader, o) switch
    {
        DataType.Boolean => KvValue.Of(Sql.GetBool(reader, o + 1)),
        DataType.Long => KvValue.Of(reader.GetInt64(o + 2)),
        DataType.Double => KvValue.Of(reader.GetDouble(o + 3)),
        DataType.Json => KvValue.OfJson(reader.GetString(o + 4)),
        _ => KvValue.Of(reader.GetString(o + 4)),
    };

    private async Task<long?> FindKeyAsync(DbConnection connection, string key, CancellationToken cancellationToken)
    {
        if (_keyIds.TryGetValue(key, out var id))
        {
            return id;
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM ts_keys WHERE name = @name";
        command.AddParameter("name", key);
        var found = await command.ExecuteScalarAsync(cancellationToken);
        if (found is null or DBNull)
        {
            return null;
        }

        id = Convert.ToInt64(found, CultureInfo.InvariantCulture);
        _keyIds[key] = id;
        _keyNames[id] = key;
        return id;
    }

    private async Task ResolveKeyAsync(DbConnection connection, string key, CancellationToken cancellationToken)
    {
        using (var insert = connection.CreateCommand())
        {
            insert.CommandText = "INSERT INTO ts_keys (name) VALUES (@name) ON CONFLICT (name) DO NOTHING";
            insert.AddParameter("name", key);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }

        await FindKeyAsync(connection, key, cancellationToken);
    }

    private async ValueTask<string> KeyNameAsync(long id, CancellationToken cancellationToken)
    {
        if (_keyNames.TryGetValue(id, out var name))
        {
            return name;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM ts_keys WHERE id = @id";
        command.AddParameter("id", id);
        name = (string)(await command.ExecuteScalarAsync(cancellationToken))!;
        _keyIds[name] = id;
        _keyNames[id] = name;
        return name;
    }
}
