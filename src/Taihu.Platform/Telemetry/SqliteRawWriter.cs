using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// The SQLite write path of the time series, on SQLite's own API under the ADO.NET connection: statements are
/// prepared once per batch and bound by position. Microsoft.Data.Sqlite finds each parameter by name on every
/// execution and creates a data reader for each; a profile of 1,000 devices showed the single writer thread
/// saturated with that overhead on top of the B-tree work, so the hot statements skip it. They run inside the
/// transaction the connection has begun.
/// </summary>
internal sealed class SqliteRawWriter : IDisposable
{
    private const string InsertPoint = """
        INSERT INTO ts_kv (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
        ON CONFLICT (device_seq, key_id, ts) DO UPDATE SET value_type = excluded.value_type, bool_v = excluded.bool_v,
            long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v
        """;

    private const string UpsertLatest = """
        INSERT INTO ts_latest (device_seq, key_id, ts, value_type, bool_v, long_v, dbl_v, str_v) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
        ON CONFLICT (device_seq, key_id) DO UPDATE SET ts = excluded.ts, value_type = excluded.value_type, bool_v = excluded.bool_v,
            long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v
        WHERE excluded.ts >= ts_latest.ts
        """;

    private const string UpsertRollup = """
        INSERT INTO ts_rollup_1m (device_seq, key_id, minute, cnt, cnt_l, cnt_d, min_l, max_l, min_d, max_d, sum_l_hi, sum_l_lo, sum_d)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
        ON CONFLICT (device_seq, key_id, minute) DO UPDATE SET cnt = cnt + excluded.cnt,
            cnt_l = cnt_l + excluded.cnt_l, cnt_d = cnt_d + excluded.cnt_d,
            min_l = CASE WHEN min_l IS NULL OR excluded.min_l < min_l THEN excluded.min_l ELSE min_l END,
            max_l = CASE WHEN max_l IS NULL OR excluded.max_l > max_l THEN excluded.max_l ELSE max_l END,
            min_d = CASE WHEN min_d IS NULL OR excluded.min_d < min_d THEN excluded.min_d ELSE min_d END,
            max_d = CASE WHEN max_d IS NULL OR excluded.max_d > max_d THEN excluded.max_d ELSE max_d END,
            sum_l_hi = sum_l_hi + excluded.sum_l_hi, sum_l_lo = sum_l_lo + excluded.sum_l_lo, sum_d = sum_d + excluded.sum_d
        """;

    private readonly sqlite3 _db;
    private readonly sqlite3_stmt _point;
    private readonly sqlite3_stmt _latest;
    private readonly sqlite3_stmt _rollup;

    public SqliteRawWriter(SqliteConnection connection)
    {
        _db = connection.Handle!;
        _point = Prepare(InsertPoint);
        _latest = Prepare(UpsertLatest);
        _rollup = Prepare(UpsertRollup);
    }

    public void WritePoint(long device, long key, long ts, in KvValue value) => Run(_point, device, key, ts, value);

    public void WriteLatest(long device, long key, long ts, in KvValue value) => Run(_latest, device, key, ts, value);

    public void WriteRollup(long device, long key, long minute, long count, long longCount, long doubleCount, long? longMin, long? longMax,
        double? doubleMin, double? doubleMax, long longSumHigh, long longSumLow, double doubleSum)
    {
        var s = _rollup;
        raw.sqlite3_bind_int64(s, 1, device);
        raw.sqlite3_bind_int64(s, 2, key);
        raw.sqlite3_bind_int64(s, 3, minute);
        raw.sqlite3_bind_int64(s, 4, count);
        raw.sqlite3_bind_int64(s, 5, longCount);
        raw.sqlite3_bind_int64(s, 6, doubleCount);
        BindNullable(s, 7, longMin);
        BindNullable(s, 8, longMax);
        BindNullable(s, 9, doubleMin);
        BindNullable(s, 10, doubleMax);
        raw.sqlite3_bind_int64(s, 11, longSumHigh);
        raw.sqlite3_bind_int64(s, 12, longSumLow);
        raw.sqlite3_bind_double(s, 13, doubleSum);
        Step(s);
    }

    private void Run(sqlite3_stmt s, long device, long key, long ts, in KvValue value)
    {
        raw.sqlite3_bind_int64(s, 1, device);
        raw.sqlite3_bind_int64(s, 2, key);
        raw.sqlite3_bind_int64(s, 3, ts);
        raw.sqlite3_bind_int(s, 4, (int)value.Type);
        raw.sqlite3_bind_null(s, 5);
        raw.sqlite3_bind_null(s, 6);
        raw.sqlite3_bind_null(s, 7);
        raw.sqlite3_bind_null(s, 8);
        switch (value.Type)
        {
            case DataType.Boolean:
                raw.sqlite3_bind_int(s, 5, value.Boolean ? 1 : 0);
                break;
            case DataType.Long:
                raw.sqlite3_bind_int64(s, 6, value.Long);
                break;
            case DataType.Double:
                raw.sqlite3_bind_double(s, 7, value.Double);
                break;
            default:
                raw.sqlite3_bind_text(s, 8, value.Text);
                break;
        }

        Step(s);
    }

    private static void BindNullable(sqlite3_stmt s, int index, long? value)
    {
        if (value is { } v)
        {
            raw.sqlite3_bind_int64(s, index, v);
        }
        else
        {
            raw.sqlite3_bind_null(s, index);
        }
    }

    private static void BindNullable(sqlite3_stmt s, int index, double? value)
    {
        if (value is { } v)
        {
            raw.sqlite3_bind_double(s, index, v);
        }
        else
        {
            raw.sqlite3_bind_null(s, index);
        }
    }

    private void Step(sqlite3_stmt s)
    {
        var rc = raw.sqlite3_step(s);
        raw.sqlite3_reset(s);
        if (rc != raw.SQLITE_DONE)
        {
            SqliteException.ThrowExceptionForRC(rc, _db);
        }
    }

    private sqlite3_stmt Prepare(string sql)
    {
        var rc = raw.sqlite3_prepare_v2(_db, sql, out var statement);
        SqliteException.ThrowExceptionForRC(rc, _db);
        return statement;
    }

    public void Dispose()
    {
        _point.Dispose();
        _latest.Dispose();
        _rollup.Dispose();
    }
}
