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

/// <summary>A point of one device, ready to write: the device's row number and the point.</summary>
public readonly record struct DevicePoint(long DeviceSeq, TelemetryPoint Point);

/// <summary>Time series: batched writes, latest values, raw history, aggregates, deletion and retention.</summary>
public interface ITelemetryStore
{
    /// <summary>Writes the points in one transaction; a point is unique by (device, key, ts) and the last write wins.</summary>
    Task WriteAsync(IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken = default);

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

    /// <summary>Deletes points older than <paramref name="olderThanTs"/> of the devices of a tenant; returns how many.</summary>
    Task<long> DeleteOlderThanAsync(Guid tenantId, long olderThanTs, CancellationToken cancellationToken = default);
}

/// <summary>
/// The SQL implementation. Keys are numbered in a dictionary table (as ThingsBoard's ts_kv_dictionary) so rows
/// stay narrow; each value sits in the column of its type. SQLite writes one prepared statement per point inside
/// one transaction (~200-500k rows/s here); PostgreSQL sends the batch as arrays through <c>unnest</c>, one
/// statement per batch, after folding duplicates of (device, key, ts) into their last write (PostgreSQL refuses
/// to update one row twice in a statement).
/// </summary>
public sealed class SqlTelemetryStore(PlatformDatabase database) : ITelemetryStore
{
    private readonly ConcurrentDictionary<string, long> _keyIds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, string> _keyNames = new();

    public async Task WriteAsync(IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken = default)
    {
        if (points.Count == 0)
        {
            return;
        }

        // All or nothing: a value no provider can store refuses the batch before anything is written.
        for (var i = 0; i < points.Count; i++)
        {
            Sql.RequireStorable(points[i].Point.Key, points[i].Point.Value);
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        for (var i = 0; i < points.Count; i++)
        {
            if (!_keyIds.ContainsKey(points[i].Point.Key))
            {
                await ResolveKeyAsync(connection, points[i].Point.Key, cancellationToken);
            }
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        if (database.Provider == StorageProvider.PostgreSql)
        {
            await WritePostgresAsync(connection, transaction, points, cancellationToken);
        }
        else
        {
            await WriteSqliteAsync(connection, transaction, points, cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    private async Task WriteSqliteAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken)
    {
        using var insert = connection.CreateCommand();
        insert.Transaction = transaction;
        insert.CommandText = """
            INSERT INTO ts_kv (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v) VALUES (@d, @k, @ts, @t, @b, @l, @v, @s)
            ON CONFLICT (device_seq, key_id, ts) DO UPDATE SET value_type = excluded.value_type, bool_v = excluded.bool_v,
                long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v;
            INSERT INTO ts_latest (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v) VALUES (@d, @k, @ts, @t, @b, @l, @v, @s)
            ON CONFLICT (device_seq, key_id) DO UPDATE SET ts = excluded.ts, value_type = excluded.value_type, bool_v = excluded.bool_v,
                long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v
            WHERE excluded.ts >= ts_latest.ts;
            """;
        var d = insert.AddParameter("d", 0L);
        var k = insert.AddParameter("k", 0L);
        var ts = insert.AddParameter("ts", 0L);
        var t = insert.AddParameter("t", 0);
        var b = insert.AddParameter("b", null);
        var l = insert.AddParameter("l", null);
        var v = insert.AddParameter("v", null);
        var s = insert.AddParameter("s", null);
        insert.Prepare();
        for (var i = 0; i < points.Count; i++)
        {
            var (device, point) = points[i];
            d.Value = device;
            k.Value = _keyIds[point.Key];
            ts.Value = point.Ts;
            t.Value = (int)point.Value.Type;
            b.Value = point.Value.Type == DataType.Boolean ? point.Value.Boolean : DBNull.Value;
            l.Value = point.Value.Type == DataType.Long ? point.Value.Long : DBNull.Value;
            v.Value = point.Value.Type == DataType.Double ? point.Value.Double : DBNull.Value;
            s.Value = point.Value.Type is DataType.String or DataType.Json ? point.Value.Text : DBNull.Value;
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    private async Task WritePostgresAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken)
    {
        // Last write wins inside the batch too.
        var unique = new Dictionary<(long, long, long), int>(points.Count);
        for (var i = 0; i < points.Count; i++)
        {
            unique[(points[i].DeviceSeq, _keyIds[points[i].Point.Key], points[i].Point.Ts)] = i;
        }

        var n = unique.Count;
        var d = new long[n];
        var k = new long[n];
        var ts = new long[n];
        var t = new int[n];
        var b = new bool?[n];
        var l = new long?[n];
        var v = new double?[n];
        var s = new string?[n];
        var j = 0;
        foreach (var ((device, key, stamp), index) in unique)
        {
            var value = points[index].Point.Value;
            d[j] = device;
            k[j] = key;
            ts[j] = stamp;
            t[j] = (int)value.Type;
            b[j] = value.Type == DataType.Boolean ? value.Boolean : null;
            l[j] = value.Type == DataType.Long ? value.Long : null;
            v[j] = value.Type == DataType.Double ? value.Double : null;
            s[j] = value.Type is DataType.String or DataType.Json ? value.Text : null;
            j++;
        }

        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO ts_kv (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v)
            SELECT * FROM unnest(@d, @k, @ts, @t, @b, @l, @v, @s)
            ON CONFLICT (device_seq, key_id, ts) DO UPDATE SET value_type = excluded.value_type, bool_v = excluded.bool_v,
                long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v;
            INSERT INTO ts_latest (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v)
            SELECT DISTINCT ON (u.d, u.k) u.d, u.k, u.ts, u.t, u.b, u.l, u.v, u.s
            FROM unnest(@d, @k, @ts, @t, @b, @l, @v, @s) AS u(d, k, ts, t, b, l, v, s) ORDER BY u.d, u.k, u.ts DESC
            ON CONFLICT (device_seq, key_id) DO UPDATE SET ts = excluded.ts, value_type = excluded.value_type, bool_v = excluded.bool_v,
                long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v
            WHERE excluded.ts >= ts_latest.ts;
            """;
        command.AddParameter("d", d);
        command.AddParameter("k", k);
        command.AddParameter("ts", ts);
        command.AddParameter("t", t);
        command.AddParameter("b", b);
        command.AddParameter("l", l);
        command.AddParameter("v", v);
        command.AddParameter("s", s);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

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
        // Bucket number by integer division, evaluated by the database over the index range of the key.
        command.CommandText = $"""
            SELECT (ts - @origin) / @interval AS bucket, {columns} FROM ts_kv
            WHERE device_seq = @d AND key_id = @k AND ts >= @origin AND ts < @end
              {(aggregation == Aggregation.Count ? "" : "AND value_type IN (1, 2)")}
            GROUP BY (ts - @origin) / @interval ORDER BY bucket
            """;
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
            await transaction.CommitAsync(cancellationToken);
        }

        return deleted;
    }

    public async Task<long> DeleteOlderThanAsync(Guid tenantId, long olderThanTs, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        // Latest values stay: ThingsBoard keeps the last known value of a key after its history expires.
        command.CommandText = "DELETE FROM ts_kv WHERE ts < @before AND device_seq IN (SELECT seq FROM devices WHERE tenant_id = @tenant)";
        command.AddParameter("before", olderThanTs);
        command.AddParameter("tenant", tenantId.ToString());
        return await command.ExecuteNonQueryAsync(cancellationToken);
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
