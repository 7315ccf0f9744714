using System.Data.Common;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Telemetry;

/// <summary>ThingsBoard's attribute scopes: the device writes client attributes; the server writes the other two, and shared ones reach the device.</summary>
public enum AttributeScope
{
    Client,
    Shared,
    Server,
}

/// <summary>Entries of one scope of one device to write.</summary>
public sealed record AttributeChange(long DeviceSeq, AttributeScope Scope, IReadOnlyList<AttributeEntry> Entries);

/// <summary>Attributes of devices, by scope.</summary>
public interface IAttributeStore
{
    /// <summary>Writes (inserts or replaces) the entries of one scope in one transaction.</summary>
    Task SaveAsync(long deviceSeq, AttributeScope scope, IReadOnlyList<AttributeEntry> entries, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes the changes of many devices in one transaction (connectivity of every device at once), with
    /// <paramref name="events"/> (connects and disconnects) recorded in the event log in the same transaction.
    /// </summary>
    Task SaveManyAsync(IReadOnlyList<AttributeChange> changes, IReadOnlyList<Events.DeviceEventRecord>? events = null, CancellationToken cancellationToken = default);

    /// <summary>The attributes of one scope, all or only <paramref name="keys"/>, sorted by key.</summary>
    Task<IReadOnlyList<AttributeEntry>> GetAsync(long deviceSeq, AttributeScope scope, IReadOnlyCollection<string>? keys, CancellationToken cancellationToken = default);

    Task<int> DeleteAsync(long deviceSeq, AttributeScope scope, IReadOnlyCollection<string> keys, CancellationToken cancellationToken = default);

    /// <summary>
    /// The attributes of one scope of many devices in one query (a page of the device list), by device; only
    /// <paramref name="keys"/> when given. A device without any is absent from the result.
    /// </summary>
    Task<Dictionary<long, List<AttributeEntry>>> GetManyAsync(IReadOnlyCollection<long> deviceSeqs, AttributeScope scope, IReadOnlyCollection<string>? keys,
        CancellationToken cancellationToken = default);

    /// <summary>How many devices of the tenant have the server attribute <c>active</c> set to true (connectivity).</summary>
    Task<long> CountActiveDevicesAsync(Guid tenantId, CancellationToken cancellationToken = default);
}

/// <summary>
/// The SQL implementation, for SQLite and PostgreSQL alike. Each committed write is told to the live feed (when
/// there is one), so that every writer (devices, gateways, the API, connectivity) reaches live subscribers.
/// </summary>
public sealed class SqlAttributeStore(PlatformDatabase database, LiveFeed? feed = null, Events.EventSignal? signal = null) : IAttributeStore
{
    public static string ScopeName(AttributeScope scope) => scope switch
    {
        AttributeScope.Client => "CLIENT_SCOPE",
        AttributeScope.Shared => "SHARED_SCOPE",
        _ => "SERVER_SCOPE",
    };

    public static bool TryParseScope(string? name, out AttributeScope scope)
    {
        switch (name)
        {
            case "CLIENT_SCOPE": scope = AttributeScope.Client; return true;
            case "SHARED_SCOPE": scope = AttributeScope.Shared; return true;
            case "SERVER_SCOPE": scope = AttributeScope.Server; return true;
            default: scope = default; return false;
        }
    }

    public Task SaveAsync(long deviceSeq, AttributeScope scope, IReadOnlyList<AttributeEntry> entries, CancellationToken cancellationToken = default) =>
        SaveManyAsync([new AttributeChange(deviceSeq, scope, entries)], null, cancellationToken);

    public async Task SaveManyAsync(IReadOnlyList<AttributeChange> changes, IReadOnlyList<Events.DeviceEventRecord>? events = null, CancellationToken cancellationToken = default)
    {
        var any = events is { Count: > 0 };
        foreach (var change in changes)
        {
            foreach (var entry in change.Entries)
            {
                Sql.RequireStorable(entry.Key, entry.Value);
                any = true;
            }
        }

        if (!any)
        {
            return;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        // In turn with ingest and the alarm writer (PlatformDatabase.TakeWriteTurnAsync): connectivity writes here every second.
        using var turn = await database.TakeWriteTurnAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var held = StageTimings.Since("attributes.begin", stage);
        if (database.Provider == StorageProvider.PostgreSql)
        {
            await UpsertAllAsync(connection, transaction, changes, cancellationToken);
        }
        else
        {
            await UpsertEachAsync(connection, transaction, changes, cancellationToken);
        }

        var created = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var body = Events.EventCodec.EncodeAttributes(changes, events);
        var position = await Events.EventLog.AppendAsync(database, connection, transaction, Events.EventLogKind.Attributes, body, created, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        StageTimings.Since("attributes.hold", held);
        signal?.Notify(new Events.EventLogRow(position, Events.EventLogKind.Attributes, body, created));

        feed?.AttributesCommitted(changes);
    }

    private const string Upsert = """
        ON CONFLICT (device_seq, scope, key) DO UPDATE SET last_update_ts = excluded.last_update_ts, value_type = excluded.value_type,
            bool_v = excluded.bool_v, long_v = excluded.long_v, dbl_v = excluded.dbl_v, str_v = excluded.str_v
        """;

    /// <summary>One statement per row (SQLite: a statement is a call into the same process).</summary>
    private static async Task UpsertEachAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<AttributeChange> changes, CancellationToken cancellationToken)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = $"""
            INSERT INTO attributes (device_seq, scope, key, last_update_ts, value_type, bool_v, long_v, dbl_v, str_v)
            VALUES (@d, @scope, @key, @ts, @t, @b, @l, @v, @s)
            {Upsert}
            """;
        var d = command.AddParameter("d", 0L);
        var scope = command.AddParameter("scope", "");
        var key = command.AddParameter("key", "");
        var ts = command.AddParameter("ts", 0L);
        var t = command.AddParameter("t", 0);
        var b = command.AddParameter("b", null);
        var l = command.AddParameter("l", null);
        var v = command.AddParameter("v", null);
        var s = command.AddParameter("s", null);
        foreach (var change in changes)
        {
            d.Value = change.DeviceSeq;
            scope.Value = ScopeName(change.Scope);
            foreach (var entry in change.Entries)
            {
                key.Value = entry.Key;
                ts.Value = entry.LastUpdateTs;
                t.Value = (int)entry.Value.Type;
                b.Value = entry.Value.Type == DataType.Boolean ? entry.Value.Boolean : DBNull.Value;
                l.Value = entry.Value.Type == DataType.Long ? entry.Value.Long : DBNull.Value;
                v.Value = entry.Value.Type == DataType.Double ? entry.Value.Double : DBNull.Value;
                s.Value = entry.Value.Type is DataType.String or DataType.Json ? entry.Value.Text : DBNull.Value;
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
        }

    }

    /// <summary>
    /// All rows in one statement (PostgreSQL: a statement is a round trip; a connect storm wrote two rows per device).
    /// A key written twice in one call keeps its last value, as one statement per row would leave it (one upsert may
    /// not touch a row twice).
    /// </summary>
    private static async Task UpsertAllAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<AttributeChange> changes, CancellationToken cancellationToken)
    {
        var last = new Dictionary<(long Device, AttributeScope Scope, string Key), AttributeEntry>();
        foreach (var change in changes)
        {
            foreach (var entry in change.Entries)
            {
                last[(change.DeviceSeq, change.Scope, entry.Key)] = entry;
            }
        }

        var n = last.Count;
        var devices = new long[n];
        var scopes = new string[n];
        var keys = new string[n];
        var stamps = new long[n];
        var values = new ValueColumns(n);
        var i = 0;
        foreach (var ((device, scope, key), entry) in last)
        {
            devices[i] = device;
            scopes[i] = ScopeName(scope);
            keys[i] = key;
            stamps[i] = entry.LastUpdateTs;
            values.Set(i, entry.Value);
            i++;
        }

        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = $"""
            INSERT INTO attributes (device_seq, scope, key, last_update_ts, value_type, bool_v, long_v, dbl_v, str_v)
            SELECT * FROM unnest(@d, @scope, @key, @ts, @t, @b, @l, @v, @s)
            {Upsert}
            """;
        command.AddParameter("d", devices);
        command.AddParameter("scope", scopes);
        command.AddParameter("key", keys);
        command.AddParameter("ts", stamps);
        values.Bind(command);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<Dictionary<long, List<AttributeEntry>>> GetManyAsync(IReadOnlyCollection<long> deviceSeqs, AttributeScope scope, IReadOnlyCollection<string>? keys,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(deviceSeqs);
        var result = new Dictionary<long, List<AttributeEntry>>();
        if (deviceSeqs.Count == 0)
        {
            return result;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        var names = new System.Text.StringBuilder();
        var i = 0;
        foreach (var seq in deviceSeqs)
        {
            var name = "d" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            names.Append(i++ == 0 ? "@" : ", @").Append(name);
            command.AddParameter(name, seq);
        }

        command.CommandText = $"SELECT device_seq, key, last_update_ts, value_type, bool_v, long_v, dbl_v, str_v FROM attributes WHERE scope = @scope AND device_seq IN ({names})";
        command.AddParameter("scope", ScopeName(scope));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var key = reader.GetString(1);
            if (keys is not null && !keys.Contains(key))
            {
                continue;
            }

            var seq = reader.GetInt64(0);
            if (!result.TryGetValue(seq, out var entries))
            {
                result[seq] = entries = [];
            }

            entries.Add(new AttributeEntry(key, reader.GetInt64(2), SqlTelemetryStore.ReadValue(reader, 3)));
        }

        foreach (var entries in result.Values)
        {
            entries.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        }

        return result;
    }

    public async Task<long> CountActiveDevicesAsync(Guid tenantId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT COUNT(*) FROM attributes a JOIN devices d ON d.seq = a.device_seq
            WHERE d.tenant_id = @tenant AND a.scope = 'SERVER_SCOPE' AND a.key = 'active' AND a.bool_v = @yes
            """;
        command.AddParameter("tenant", tenantId.ToString());
        command.AddParameter("yes", true);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task<IReadOnlyList<AttributeEntry>> GetAsync(long deviceSeq, AttributeScope scope, IReadOnlyCollection<string>? keys, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        // Sorted here, not by ORDER BY: PostgreSQL sorts text by the database's collation, SQLite by code point.
        command.CommandText = "SELECT key, last_update_ts, value_type, bool_v, long_v, dbl_v, str_v FROM attributes WHERE device_seq = @d AND scope = @scope";
        command.AddParameter("d", deviceSeq);
        command.AddParameter("scope", ScopeName(scope));
        var result = new List<AttributeEntry>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var key = reader.GetString(0);
            if (keys is null || keys.Contains(key))
            {
                result.Add(new AttributeEntry(key, reader.GetInt64(1), SqlTelemetryStore.ReadValue(reader, 2)));
            }
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return result;
    }

    public async Task<int> DeleteAsync(long deviceSeq, AttributeScope scope, IReadOnlyCollection<string> keys, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        var deleted = 0;
        foreach (var key in keys)
        {
            using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM attributes WHERE device_seq = @d AND scope = @scope AND key = @key";
            command.AddParameter("d", deviceSeq);
            command.AddParameter("scope", ScopeName(scope));
            command.AddParameter("key", key);
            deleted += await command.ExecuteNonQueryAsync(cancellationToken);
        }

        return deleted;
    }
}
