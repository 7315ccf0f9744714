using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using System.Text;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// The write side of the time series: one transaction per batch that
/// <list type="number">
/// <item>upserts every point into <c>ts_kv</c> (last write wins; duplicates inside the batch are folded first);</item>
/// <item>moves <c>ts_latest</c> forward, once per (device, key) of the batch;</item>
/// <item>keeps per-minute rollups (<c>ts_rollup_1m</c>: count, and count/min/max/sum of integers and of doubles) so
/// that aggregates over whole minutes read 60 rows an hour instead of every point.</item>
/// </list>
/// </summary>
/// <remarks>
/// Rollups are added to incrementally, which is only right for a point that did not exist before. A point newer
/// than the newest stored for its (device, key) cannot exist yet; the store remembers that newest timestamp per
/// (device, key) (read from <c>ts_latest</c> on first sight), so the usual, in-order traffic takes the fast path.
/// Any other point (late, or a redelivered duplicate) marks its minute, and the minute's rollup is recomputed from
/// the points themselves in the same transaction. Rows are written with multi-row statements (SQLite) or arrays
/// (PostgreSQL's <c>unnest</c>), so the statement count per batch stays small.
/// </remarks>
public sealed partial class SqlTelemetryStore
{
    private const long MinuteMs = 60_000;
    // PostgreSQL pays a round trip per statement, so each table's rows of a batch go in one statement (unnest of
    // arrays). (SQLite has its own path, SqliteRawWriter: Microsoft.Data.Sqlite finds each named parameter by
    // searching the statement, which made multi-row statements cost the square of their parameters.)
    private readonly ConcurrentDictionary<(long Device, long Key), long> _newest = new();
    private readonly SemaphoreSlim _writeGate = new(1, 1);

    // A batch's working sets, kept from one batch to the next (only the writer holding _writeGate uses them): built
    // new for every batch they were about a third of what ingest allocated per point (1,000 devices, 2,000 points a
    // batch), and the collections that garbage caused paused the writer and every point waiting on it.
    private const int KeptBatchEntries = 16_384;
    private readonly Dictionary<(long Device, long Key, long Ts), int> _unique = [];
    private readonly Dictionary<(long Device, long Key), (long Ts, int Index)> _newestInBatch = [];
    private readonly Dictionary<(long Device, long Key, long Minute), Rollup> _rollups = [];
    private readonly HashSet<(long Device, long Key, long Minute)> _recompute = [];
    private readonly List<(long Device, long Key)> _unseen = [];

    private struct Rollup
    {
        public long Count;
        public long LongCount;
        public long DoubleCount;
        public long? LongMin;
        public long? LongMax;
        public double? DoubleMin;
        public double? DoubleMax;
        public long LongSumHigh;
        public long LongSumLow;
        public double DoubleSum;

        public void Add(in KvValue value)
        {
            Count++;
            if (value.Type == DataType.Long)
            {
                LongCount++;
                LongMin = LongMin is { } min && min <= value.Long ? min : value.Long;
                LongMax = LongMax is { } max && max >= value.Long ? max : value.Long;
                LongSumHigh += value.Long >> 32;
                LongSumLow += value.Long & 0xFFFF_FFFF;
            }
            else if (value.Type == DataType.Double)
            {
                DoubleCount++;
                DoubleMin = DoubleMin is { } min && min <= value.Double ? min : value.Double;
                DoubleMax = DoubleMax is { } max && max >= value.Double ? max : value.Double;
                DoubleSum += value.Double;
            }
        }
    }

    public async Task<long> WriteAsync(IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken = default)
    {
        if (points.Count == 0)
        {
            return 0;
        }

        // All or nothing: a value no provider can store refuses the batch before anything is written.
        for (var i = 0; i < points.Count; i++)
        {
            Sql.RequireStorable(points[i].Point.Key, points[i].Point.Value);
        }

        // One writer at a time keeps the newest-timestamp memory in step with what is committed.
        Events.EventLogRow row;
        await _writeGate.WaitAsync(cancellationToken);
        try
        {
            row = await WriteBatchAsync(points, cancellationToken);
        }
        finally
        {
            _writeGate.Release();
        }

        events?.Notify(row);

        // Between batches, outside the write turn, after the commit was told (see the method).
        await database.CheckpointIfDueAsync(cancellationToken);
        return row.Position;
    }

    private async Task<Events.EventLogRow> WriteBatchAsync(IReadOnlyList<DevicePoint> points, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        for (var i = 0; i < points.Count; i++)
        {
            if (!_keyIds.ContainsKey(points[i].Point.Key))
            {
                await ResolveKeyAsync(connection, points[i].Point.Key, cancellationToken);
            }
        }

        // Fold duplicates: the last write of (device, key, ts) in the batch wins.
        ResetBatchSets();
        var unique = _unique;
        unique.EnsureCapacity(points.Count);
        for (var i = 0; i < points.Count; i++)
        {
            unique[(points[i].DeviceSeq, _keyIds[points[i].Point.Key], points[i].Point.Ts)] = i;
        }

        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        using var turn = await database.TakeWriteTurnAsync(cancellationToken);
        var held = stage = StageTimings.Since("ingest.turn", stage);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        stage = StageTimings.Since("ingest.begin", stage);
        var newestInBatch = _newestInBatch;
        foreach (var ((device, key, ts), index) in unique)
        {
            if (!newestInBatch.TryGetValue((device, key), out var newest) || ts > newest.Ts)
            {
                newestInBatch[(device, key)] = (ts, index);
            }
        }

        await ReadStoredNewestAsync(connection, transaction, newestInBatch, cancellationToken);

        var rollups = _rollups;
        var recompute = _recompute;
        foreach (var ((device, key, ts), index) in unique)
        {
            var minute = ts / MinuteMs;
            if (ts > _newest[(device, key)])
            {
                ref var rollup = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(rollups, (device, key, minute), out _);
                rollup.Add(points[index].Point.Value);
            }
            else
            {
                recompute.Add((device, key, minute));
            }
        }

        foreach (var item in recompute)
        {
            // The minute is recomputed whole: increments to it would count its points twice.
            rollups.Remove(item);
        }

        if (database.Provider == StorageProvider.PostgreSql)
        {
            await WritePointsPostgresAsync(connection, transaction, points, unique, cancellationToken);
            await WriteLatestAsync(connection, transaction, points, newestInBatch, cancellationToken);
            await WriteRollupsAsync(connection, transaction, rollups, cancellationToken);
        }
        else
        {
            WriteSqlite((Microsoft.Data.Sqlite.SqliteConnection)connection, points, unique, newestInBatch, rollups);
        }

        foreach (var (device, key, minute) in recompute)
        {
            await RecomputeRollupsAsync(connection, transaction, device, key, minute * MinuteMs, (minute + 1) * MinuteMs, cancellationToken);
        }

        // Last, so that PostgreSQL's append lock (EventLog) is held only for the commit.
        var created = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var body = Events.EventCodec.EncodeTelemetry(points);
        var position = await Events.EventLog.AppendAsync(database, connection, transaction, Events.EventLogKind.Telemetry, body, created, cancellationToken);
        stage = StageTimings.Since("ingest.statements", stage);
        await transaction.CommitAsync(cancellationToken);
        database.CountWalPages(connection);
        StageTimings.Since("ingest.commit", stage);
        StageTimings.Since("ingest.hold", held);
        foreach (var (pair, newest) in newestInBatch)
        {
            if (newest.Ts > _newest[pair])
            {
                _newest[pair] = newest.Ts;
            }
        }

        return new Events.EventLogRow(position, Events.EventLogKind.Telemetry, body, created);
    }

    /// <summary>Empties the batch's working sets; one that a very large batch grew is shrunk back.</summary>
    private void ResetBatchSets()
    {
        var large = _unique.EnsureCapacity(0) > KeptBatchEntries;
        _unique.Clear();
        _newestInBatch.Clear();
        _rollups.Clear();
        _recompute.Clear();
        _unseen.Clear();
        if (large)
        {
            _unseen.TrimExcess();
            _unique.TrimExcess(KeptBatchEntries);
            _newestInBatch.TrimExcess(KeptBatchEntries);
            _rollups.TrimExcess(KeptBatchEntries);
            _recompute.TrimExcess();
        }
    }

    /// <summary>
    /// Remembers the newest stored timestamp of each (device, key) of the batch not seen before. PostgreSQL reads them
    /// all in one statement: one round trip each made the first batches after devices came to this node (a node's
    /// start, or its neighbour's death: 5,000 devices of 5 keys) take 25,000 round trips, with every acknowledgement
    /// of the node waiting behind them. SQLite is in the process, and is asked pair by pair.
    /// </summary>
    private async Task ReadStoredNewestAsync(DbConnection connection, DbTransaction transaction,
        Dictionary<(long Device, long Key), (long Ts, int Index)> newestInBatch, CancellationToken cancellationToken)
    {
        var unseen = _unseen;
        unseen.Clear();
        foreach (var pair in newestInBatch.Keys)
        {
            if (!_newest.ContainsKey(pair))
            {
                unseen.Add(pair);
            }
        }

        if (unseen.Count == 0)
        {
            return;
        }

        if (database.Provider != StorageProvider.PostgreSql)
        {
            foreach (var pair in unseen)
            {
                _newest[pair] = await StoredNewestAsync(connection, transaction, pair.Device, pair.Key, cancellationToken);
            }

            return;
        }

        var devices = new long[unseen.Count];
        var keys = new long[unseen.Count];
        for (var j = 0; j < unseen.Count; j++)
        {
            (devices[j], keys[j]) = unseen[j];
        }

        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            SELECT p.d, p.k, (SELECT MAX(ts) FROM ts_kv WHERE device_seq = p.d AND key_id = p.k)
            FROM unnest(@d, @k) AS p(d, k)
            """;
        command.AddParameter("d", devices);
        command.AddParameter("k", keys);
        var stored = new Dictionary<(long Device, long Key), long>(unseen.Count);
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                stored[(reader.GetInt64(0), reader.GetInt64(1))] = reader.IsDBNull(2) ? long.MinValue : reader.GetInt64(2);
            }
        }

        // Remembered only once all were read: a failed statement leaves nothing half-known.
        foreach (var (pair, ts) in stored)
        {
            _newest[pair] = ts;
        }
    }

    private static async Task<long> StoredNewestAsync(DbConnection connection, DbTransaction transaction, long device, long key, CancellationToken cancellationToken)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT MAX(ts) FROM ts_kv WHERE device_seq = @d AND key_id = @k";
        command.AddParameter("d", device);
        command.AddParameter("k", key);
        var found = await command.ExecuteScalarAsync(cancellationToken);
        return found is null or DBNull ? long.MinValue : Convert.ToInt64(found, CultureInfo.InvariantCulture);
    }

    private void WriteSqlite(Microsoft.Data.Sqlite.SqliteConnection connection, IReadOnlyList<DevicePoint> points,
        Dictionary<(long Device, long Key, long Ts), int> unique, Dictionary<(long Device, long Key), (long Ts, int Index)> newest,
        Dictionary<(long Device, long Key, long Minute), Rollup> rollups)
    {
        using var writer = new SqliteRawWriter(connection);
        foreach (var ((device, key, ts), index) in unique)
        {
            writer.WritePoint(device, key, ts, points[index].Point.Value);
        }

        foreach (var ((device, key), (ts, index)) in newest)
        {
            writer.WriteLatest(device, key, ts, points[index].Point.Value);
        }

        foreach (var ((device, key, minute), r) in rollups)
        {
            writer.WriteRollup(device, key, minute, r.Count, r.LongCount, r.DoubleCount, r.LongMin, r.LongMax, r.DoubleMin, r.DoubleMax,
                r.LongSumHigh, r.LongSumLow, r.DoubleSum);
        }
    }

    private static Task WritePointsPostgresAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<DevicePoint> points,
        Dictionary<(long Device, long Key, long Ts), int> unique, CancellationToken cancellationToken)
    {
        var rows = new PointRows(unique.Count);
        foreach (var ((device, key, stamp), index) in unique)
        {
            rows.Add(device, key, stamp, points[index].Point.Value);
        }

        return rows.WriteAsync(connection, transaction, """
            INSERT INTO ts_kv (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v)
            SELECT * FROM unnest(@d, @k, @ts, @t, @b, @l, @v, @s)
            ON CONFLICT (device_seq, key_id, ts) DO UPDATE SET value_type = excluded.value_type, bool_v = excluded.bool_v,
                long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v;
            """, cancellationToken);
    }

    /// <summary>One row per (device, key): the batch's newest point of each.</summary>
    private static Task WriteLatestAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<DevicePoint> points,
        Dictionary<(long Device, long Key), (long Ts, int Index)> newest, CancellationToken cancellationToken)
    {
        var rows = new PointRows(newest.Count);
        foreach (var ((device, key), (_, index)) in newest)
        {
            var point = points[index].Point;
            rows.Add(device, key, point.Ts, point.Value);
        }

        return rows.WriteAsync(connection, transaction, """
            INSERT INTO ts_latest (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v)
            SELECT * FROM unnest(@d, @k, @ts, @t, @b, @l, @v, @s)
            ON CONFLICT (device_seq, key_id) DO UPDATE SET ts = excluded.ts, value_type = excluded.value_type, bool_v = excluded.bool_v,
                long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v
            WHERE excluded.ts >= ts_latest.ts
            """, cancellationToken);
    }

    /// <summary>Point rows (device, key, timestamp, value) as arrays, written by one statement over <c>unnest(@d, @k, @ts, @t, @b, @l, @v, @s)</c>.</summary>
    private sealed class PointRows(int count)
    {
        private readonly long[] _devices = new long[count];
        private readonly long[] _keys = new long[count];
        private readonly long[] _stamps = new long[count];
        private readonly ValueColumns _values = new(count);
        private int _count;

        public void Add(long device, long key, long ts, in KvValue value)
        {
            _devices[_count] = device;
            _keys[_count] = key;
            _stamps[_count] = ts;
            _values.Set(_count, value);
            _count++;
        }

        public async Task WriteAsync(DbConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken)
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = sql;
            command.AddParameter("d", _devices);
            command.AddParameter("k", _keys);
            command.AddParameter("ts", _stamps);
            _values.Bind(command);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    private static async Task WriteRollupsAsync(DbConnection connection, DbTransaction transaction, Dictionary<(long Device, long Key, long Minute), Rollup> rollups, CancellationToken cancellationToken)
    {
        if (rollups.Count == 0)
        {
            return;
        }

        var n = rollups.Count;
        var d = new long[n];
        var k = new long[n];
        var minutes = new long[n];
        var count = new long[n];
        var countLong = new long[n];
        var countDouble = new long[n];
        var minLong = new long?[n];
        var maxLong = new long?[n];
        var minDouble = new double?[n];
        var maxDouble = new double?[n];
        var sumHigh = new long[n];
        var sumLow = new long[n];
        var sumDouble = new double[n];
        var j = 0;
        foreach (var ((device, key, minute), r) in rollups)
        {
            d[j] = device;
            k[j] = key;
            minutes[j] = minute;
            count[j] = r.Count;
            countLong[j] = r.LongCount;
            countDouble[j] = r.DoubleCount;
            minLong[j] = r.LongMin;
            maxLong[j] = r.LongMax;
            minDouble[j] = r.DoubleMin;
            maxDouble[j] = r.DoubleMax;
            sumHigh[j] = r.LongSumHigh;
            sumLow[j] = r.LongSumLow;
            sumDouble[j] = r.DoubleSum;
            j++;
        }

        // One row per (device, key, minute), added to what the minute holds. Portable min/max that ignore NULL.
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO ts_rollup_1m (device_seq, key_id, minute, cnt, cnt_l, cnt_d, min_l, max_l, min_d, max_d, sum_l_hi, sum_l_lo, sum_d)
            SELECT * FROM unnest(@d, @k, @m, @c, @cl, @cd, @minl, @maxl, @mind, @maxd, @hi, @lo, @sd)
            ON CONFLICT (device_seq, key_id, minute) DO UPDATE SET cnt = ts_rollup_1m.cnt + excluded.cnt,
                cnt_l = ts_rollup_1m.cnt_l + excluded.cnt_l, cnt_d = ts_rollup_1m.cnt_d + excluded.cnt_d,
                min_l = CASE WHEN ts_rollup_1m.min_l IS NULL OR excluded.min_l < ts_rollup_1m.min_l THEN excluded.min_l ELSE ts_rollup_1m.min_l END,
                max_l = CASE WHEN ts_rollup_1m.max_l IS NULL OR excluded.max_l > ts_rollup_1m.max_l THEN excluded.max_l ELSE ts_rollup_1m.max_l END,
                min_d = CASE WHEN ts_rollup_1m.min_d IS NULL OR excluded.min_d < ts_rollup_1m.min_d THEN excluded.min_d ELSE ts_rollup_1m.min_d END,
                max_d = CASE WHEN ts_rollup_1m.max_d IS NULL OR excluded.max_d > ts_rollup_1m.max_d THEN excluded.max_d ELSE ts_rollup_1m.max_d END,
                sum_l_hi = ts_rollup_1m.sum_l_hi + excluded.sum_l_hi, sum_l_lo = ts_rollup_1m.sum_l_lo + excluded.sum_l_lo,
                sum_d = ts_rollup_1m.sum_d + excluded.sum_d
            """;
        command.AddParameter("d", d);
        command.AddParameter("k", k);
        command.AddParameter("m", minutes);
        command.AddParameter("c", count);
        command.AddParameter("cl", countLong);
        command.AddParameter("cd", countDouble);
        command.AddParameter("minl", minLong);
        command.AddParameter("maxl", maxLong);
        command.AddParameter("mind", minDouble);
        command.AddParameter("maxd", maxDouble);
        command.AddParameter("hi", sumHigh);
        command.AddParameter("lo", sumLow);
        command.AddParameter("sd", sumDouble);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Rebuilds the rollups of [fromTs, toTs) of one (device, key) from its points (after late points or deletions).</summary>
    private static async Task RecomputeRollupsAsync(DbConnection connection, DbTransaction transaction, long device, long key, long fromTs, long toTs, CancellationToken cancellationToken)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            DELETE FROM ts_rollup_1m WHERE device_seq = @d AND key_id = @k AND minute >= @from / 60000 AND minute < @to / 60000;
            INSERT INTO ts_rollup_1m (device_seq, key_id, minute, cnt, cnt_l, cnt_d, min_l, max_l, min_d, max_d, sum_l_hi, sum_l_lo, sum_d)
            SELECT device_seq, key_id, ts / 60000, COUNT(*), COUNT(long_v), COUNT(dbl_v), MIN(long_v), MAX(long_v), MIN(dbl_v), MAX(dbl_v),
                COALESCE(SUM(long_v >> 32), 0), COALESCE(SUM(long_v & 4294967295), 0), COALESCE(SUM(dbl_v), 0)
            FROM ts_kv WHERE device_seq = @d AND key_id = @k AND ts >= @from AND ts < @to
            GROUP BY device_seq, key_id, ts / 60000;
            """;
        command.AddParameter("d", device);
        command.AddParameter("k", key);
        command.AddParameter("from", fromTs);
        command.AddParameter("to", toTs);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public void Dispose() => _writeGate.Dispose();

    /// <summary>Forgets what the write path remembers of a device's keys (after its points were deleted).</summary>
    private void ForgetNewest(long device, long key) => _newest.TryRemove((device, key), out _);
}
