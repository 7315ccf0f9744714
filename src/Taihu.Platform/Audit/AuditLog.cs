using System.Data.Common;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Taihu.Platform.Storage;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Audit;

/// <summary>One change made by a user or an API key: who, what, when, on which entity, and how it ended.</summary>
public sealed record AuditEntry(
    Guid Id, Guid? TenantId, Guid? UserId, string? UserName, string ActionType, string? EntityType, string? EntityId,
    string? EntityName, bool Success, string? FailureDetails, long CreatedTime);

/// <summary>The audit trail: written on every change, read with paging, always within one tenant.</summary>
public interface IAuditLog
{
    Task WriteAsync(Caller caller, string actionType, string? entityType, string? entityId, string? entityName, string? failure = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Queues an entry that nobody waits for: for an action done many times a second (a lightweight RPC call),
    /// whose caller should neither wait for the log nor build its text. It is written in order with the entries
    /// of <see cref="WriteAsync"/>; a failure to write it is logged.
    /// </summary>
    void Append(in AuditDraft draft);

    /// <summary>Entries of <paramref name="tenantId"/> (null: the system administrators' own), newest first.</summary>
    Task<Page<AuditEntry>> ListAsync(Guid? tenantId, PageRequest request, long? startTime = null, long? endTime = null, CancellationToken cancellationToken = default);
}

/// <summary>Text kept in up to four parts and joined only when the entry is written.</summary>
public readonly record struct AuditText(string? A, string? B = null, string? C = null, string? D = null)
{
    public override string ToString() => string.Concat(A, B, C, D);
}

/// <summary>
/// An entry for <see cref="IAuditLog.Append"/>: what the caller already holds (the caller, the entity's id, the
/// parts of its name), so that queueing it allocates nothing; the log turns it into text when it writes it.
/// </summary>
public readonly record struct AuditDraft(Caller Caller, string ActionType, string EntityType, Guid EntityId, AuditText EntityName, string? Failure = null);

/// <summary>
/// An audit entry not yet written: made by <see cref="Of"/> and written by the audit log's group commit, or by a
/// store in the transaction of the change it records (<see cref="SqlAuditLog.InsertAsync(DbConnection, DbTransaction?, IReadOnlyList{AuditRecord})"/>),
/// so that the change and its entry commit together.
/// </summary>
public sealed record AuditRecord(string? TenantId, string UserId, string? UserName, string ActionType, string? EntityType, string? EntityId, string? EntityName, string? Failure, long CreatedTime)
{
    public static AuditRecord Of(Caller caller, string actionType, string? entityType, string? entityId, string? entityName, long createdTime, string? failure = null)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return new(caller.TenantId?.ToString(), caller.UserId.ToString(), Storable(caller.Name), actionType, Storable(entityType), Storable(entityId),
            Storable(entityName), Storable(failure), createdTime);
    }

    // An entry is never refused for its text (one bad entry would fail its whole group): a NUL, which PostgreSQL
    // cannot store, is written as U+FFFD.
    internal static string? Storable(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal) ? text.Replace('\0', '\uFFFD') : text;
}

/// <summary>The SQL implementation, for SQLite and PostgreSQL alike.</summary>
/// <remarks>
/// Writes are committed in groups: each entry is queued, one writer at a time takes everything queued (up to
/// <see cref="MaxBatch"/> entries) and inserts it in one transaction, and each <see cref="WriteAsync"/> completes
/// when the transaction holding its entry has committed (or fails with it). Entries are written in the order they
/// were queued. One call alone costs what it cost before (one transaction); under load, a persistent RPC call's
/// state changes or many lightweight calls share transactions instead of queueing for SQLite's write lock one by
/// one. When the last group had company, the next starts at most every <see cref="MinCommitInterval"/> (group
/// commit, as ingest does): 1,000 lightweight RPC calls a second were otherwise about as many transactions, each
/// a commit and a turn at SQLite's write lock. Entries queued by <see cref="Append"/> are structs in the queue
/// (no task, no text) and become text only here, in the writer.
/// </remarks>
public sealed partial class SqlAuditLog(PlatformDatabase database, TimeProvider time, ILogger<SqlAuditLog>? logger = null) : IAuditLog
{
    internal const int MaxBatch = 512;

    /// <summary>The shortest time between the starts of two groups, once groups have company.</summary>
    internal static readonly TimeSpan MinCommitInterval = TimeSpan.FromMilliseconds(10);

    private readonly System.Collections.Concurrent.ConcurrentQueue<PendingEntry> _queue = new();
    private readonly ILogger _logger = logger ?? NullLogger<SqlAuditLog>.Instance;
    private int _writing;

    public Task WriteAsync(Caller caller, string actionType, string? entityType, string? entityId, string? entityName, string? failure = null, CancellationToken cancellationToken = default)
    {
        var written = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(new PendingEntry(AuditRecord.Of(caller, actionType, entityType, entityId, entityName, time.GetUtcNow().ToUnixTimeMilliseconds(), failure), default, 0, written));

        // Cancelling stops the wait, not the write: once queued, the entry is written.
        return cancellationToken.CanBeCanceled ? written.Task.WaitAsync(cancellationToken) : written.Task;
    }

    public void Append(in AuditDraft draft)
    {
        ArgumentNullException.ThrowIfNull(draft.Caller);
        Enqueue(new PendingEntry(null, draft, time.GetUtcNow().ToUnixTimeMilliseconds(), null));
    }

    private void Enqueue(in PendingEntry entry)
    {
        _queue.Enqueue(entry);
        if (Interlocked.Exchange(ref _writing, 1) == 0)
        {
            _ = Task.Run(WriteQueuedAsync, CancellationToken.None);
        }
    }

    private async Task WriteQueuedAsync()
    {
        var batch = new List<PendingEntry>();
        var interval = (long)(MinCommitInterval.TotalSeconds * Stopwatch.Frequency);
        long lastCommit = 0;
        var lastCount = 0;
        while (true)
        {
            // Group commit: what arrives while the interval runs joins the next group. Only when the last group
            // had company: a lone change (a user's edit) is written at once.
            var wait = lastCommit + interval - Stopwatch.GetTimestamp();
            if (wait > 0 && lastCount > 1 && _queue.Count < MaxBatch)
            {
                await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
            }

            while (batch.Count < MaxBatch && _queue.TryDequeue(out var entry))
            {
                batch.Add(entry);
            }

            if (batch.Count > 0)
            {
                lastCommit = Stopwatch.GetTimestamp();
                lastCount = batch.Count;
                try
                {
                    await InsertAsync(batch);
                    foreach (var written in batch)
                    {
                        written.Written?.TrySetResult();
                    }
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    var appended = 0;
                    foreach (var failed in batch)
                    {
                        if (failed.Written is null)
                        {
                            appended++;
                        }
                        else
                        {
                            failed.Written.TrySetException(ex);
                        }
                    }

                    if (appended > 0)
                    {
                        LogAppendedNotWritten(_logger, appended, ex);
                    }
                }

                batch.Clear();
                continue;
            }

            Volatile.Write(ref _writing, 0);
            // An entry queued between the last dequeue and the reset above would otherwise wait for the next write.
            if (_queue.IsEmpty || Interlocked.Exchange(ref _writing, 1) == 1)
            {
                return;
            }
        }
    }

    [LoggerMessage(EventId = 2503, Level = LogLevel.Warning, Message = "{Count} audit entries that nobody waited for could not be written")]
    private static partial void LogAppendedNotWritten(ILogger logger, int count, Exception exception);

    private async Task InsertAsync(List<PendingEntry> batch)
    {
        await using var connection = await database.OpenAsync();
        // In turn with the other writers on SQLite (ingest, alarms), instead of sleeping in SQLite's busy handler
        // on a thread of the pool.
        using var turn = await database.TakeWriteTurnAsync();
        if (database.Provider == StorageProvider.Sqlite)
        {
            // One statement for the group: no transaction needed, and none of the per-row parameter binding.
            await InsertAsJsonAsync(connection, batch);
            return;
        }

        var records = new List<AuditRecord>(batch.Count);
        foreach (var entry in batch)
        {
            records.Add(entry.Record ?? entry.ToRecord());
        }

        await using var transaction = records.Count > 1 ? await connection.BeginTransactionAsync() : null;
        await InsertAsync(connection, transaction, records);
        if (transaction is not null)
        {
            await transaction.CommitAsync();
        }
    }

    // The group's rows as one JSON array, kept between groups (one writer at a time).
    private readonly System.Buffers.ArrayBufferWriter<byte> _json = new(16 * 1024);
    private System.Text.Json.Utf8JsonWriter? _jsonWriter;
    private char[] _text = new char[256];

    /// <summary>
    /// SQLite: the group inserted by one statement that reads its rows from a JSON array (<c>json_each</c>), written
    /// straight from the queued entries. Bound row by row, each entry cost about 40 allocations (a binder per
    /// parameter, a UTF-8 copy per text, the id's and the ids' text): 1.5 KB of a lightweight RPC call's 10.6 KB.
    /// </summary>
    private async Task InsertAsJsonAsync(DbConnection connection, List<PendingEntry> batch)
    {
        _json.ResetWrittenCount();
        var json = _jsonWriter ??= new System.Text.Json.Utf8JsonWriter(_json);
        json.Reset(_json);
        json.WriteStartArray();
        foreach (var entry in batch)
        {
            json.WriteStartObject();
            json.WriteString("id"u8, Guid.CreateVersion7());
            if (entry.Record is { } r)
            {
                WriteText(json, "tenant"u8, r.TenantId);
                WriteText(json, "user"u8, r.UserId);
                WriteText(json, "name"u8, r.UserName);
                WriteText(json, "action"u8, r.ActionType);
                WriteText(json, "etype"u8, r.EntityType);
                WriteText(json, "eid"u8, r.EntityId);
                WriteText(json, "ename"u8, r.EntityName);
                WriteText(json, "failure"u8, r.Failure);
                json.WriteNumber("created"u8, r.CreatedTime);
            }
            else
            {
                var d = entry.Draft;
                if (d.Caller.TenantId is { } tenant)
                {
                    json.WriteString("tenant"u8, tenant);
                }
                else
                {
                    json.WriteNull("tenant"u8);
                }

                json.WriteString("user"u8, d.Caller.UserId);
                WriteText(json, "name"u8, d.Caller.Name);
                WriteText(json, "action"u8, d.ActionType);
                WriteText(json, "etype"u8, d.EntityType);
                json.WriteString("eid"u8, d.EntityId);
                WriteName(json, d.EntityName);
                WriteText(json, "failure"u8, d.Failure);
                json.WriteNumber("created"u8, entry.CreatedTime);
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.Flush();
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO audit_log (id, tenant_id, user_id, user_name, action_type, entity_type, entity_id, entity_name, action_status, action_failure_details, created_time)
            SELECT json_extract(value, '$.id'), json_extract(value, '$.tenant'), json_extract(value, '$.user'), json_extract(value, '$.name'),
                   json_extract(value, '$.action'), json_extract(value, '$.etype'), json_extract(value, '$.eid'), json_extract(value, '$.ename'),
                   CASE WHEN json_extract(value, '$.failure') IS NULL THEN 'SUCCESS' ELSE 'FAILURE' END, json_extract(value, '$.failure'),
                   json_extract(value, '$.created')
            FROM json_each(CAST(@rows AS TEXT)) ORDER BY key
            """;
        // Bound as bytes and read as text: a string would be one more copy of the group, and a blob alone is
        // SQLite's binary JSON to json_each.
        command.AddParameter("rows", _json.WrittenSpan.ToArray());
        await command.ExecuteNonQueryAsync();
    }

    private static void WriteText(System.Text.Json.Utf8JsonWriter json, ReadOnlySpan<byte> name, string? text)
    {
        if (text is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, AuditRecord.Storable(text));
        }
    }

    /// <summary>An entity's name from its parts, joined in a buffer kept for the writer, not in a new string.</summary>
    private void WriteName(System.Text.Json.Utf8JsonWriter json, AuditText name)
    {
        var length = (name.A?.Length ?? 0) + (name.B?.Length ?? 0) + (name.C?.Length ?? 0) + (name.D?.Length ?? 0);
        if (name.A is null && name.B is null && name.C is null && name.D is null)
        {
            json.WriteNull("ename"u8);
            return;
        }

        if (_text.Length < length)
        {
            _text = new char[Math.Max(length, _text.Length * 2)];
        }

        var at = 0;
        foreach (var part in (ReadOnlySpan<string?>)[name.A, name.B, name.C, name.D])
        {
            part.AsSpan().CopyTo(_text.AsSpan(at));
            at += part?.Length ?? 0;
        }

        var text = _text.AsSpan(0, length);
        text.Replace('\0', '\uFFFD');
        json.WriteString("ename"u8, text);
    }

    /// <summary>Inserts entries on a caller's connection, in its transaction (an alarm store writes its change's entry so).</summary>
    public static async Task InsertAsync(DbConnection connection, DbTransaction? transaction, IReadOnlyList<AuditRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(records);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO audit_log (id, tenant_id, user_id, user_name, action_type, entity_type, entity_id, entity_name, action_status, action_failure_details, created_time)
            VALUES (@id, @tenant, @user, @name, @action, @etype, @eid, @ename, @status, @failure, @created)
            """;
        var id = command.AddParameter("id", null);
        var tenant = command.AddParameter("tenant", null);
        var user = command.AddParameter("user", null);
        var name = command.AddParameter("name", null);
        var action = command.AddParameter("action", null);
        var entityType = command.AddParameter("etype", null);
        var entityId = command.AddParameter("eid", null);
        var entityName = command.AddParameter("ename", null);
        var status = command.AddParameter("status", null);
        var failure = command.AddParameter("failure", null);
        var created = command.AddParameter("created", null);
        foreach (var e in records)
        {
            id.Value = Guid.CreateVersion7().ToString();
            tenant.Value = (object?)e.TenantId ?? DBNull.Value;
            user.Value = e.UserId;
            name.Value = (object?)e.UserName ?? DBNull.Value;
            action.Value = e.ActionType;
            entityType.Value = (object?)e.EntityType ?? DBNull.Value;
            entityId.Value = (object?)e.EntityId ?? DBNull.Value;
            entityName.Value = (object?)e.EntityName ?? DBNull.Value;
            status.Value = e.Failure is null ? "SUCCESS" : "FAILURE";
            failure.Value = (object?)e.Failure ?? DBNull.Value;
            created.Value = e.CreatedTime;
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>A queued entry: a record whose writer waits (<see cref="Written"/>), or a draft nobody waits for.</summary>
    private readonly record struct PendingEntry(AuditRecord? Record, AuditDraft Draft, long CreatedTime, TaskCompletionSource? Written)
    {
        public AuditRecord ToRecord() => AuditRecord.Of(Draft.Caller, Draft.ActionType, Draft.EntityType, Draft.EntityId.ToString(), Draft.EntityName.ToString(),
            CreatedTime, Draft.Failure);
    }

    public async Task<Page<AuditEntry>> ListAsync(Guid? tenantId, PageRequest request, long? startTime = null, long? endTime = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        var where = (tenantId is null ? " WHERE tenant_id IS NULL" : " WHERE tenant_id = @tenant") + " AND created_time >= @start AND created_time <= @end";
        if (request.LikePattern is not null)
        {
            where += " AND (lower(entity_name) LIKE @q ESCAPE '\\' OR lower(action_type) LIKE @q ESCAPE '\\' OR lower(user_name) LIKE @q ESCAPE '\\')";
        }

        long total;
        using (var count = connection.CreateCommand())
        {
            count.CommandText = "SELECT COUNT(*) FROM audit_log" + where;
            AddFilter(count, tenantId, request, startTime, endTime);
            total = Convert.ToInt64(await count.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
        }

        // Entries of one millisecond keep the order they were written in, whichever way the list runs.
        var direction = request.Descending || request.SortProperty is null ? "DESC" : "ASC";
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT id, tenant_id, user_id, user_name, action_type, entity_type, entity_id, entity_name, action_status, action_failure_details, created_time
            FROM audit_log{where} ORDER BY created_time {direction}, seq {direction} LIMIT @limit OFFSET @offset
            """;
        AddFilter(command, tenantId, request, startTime, endTime);
        command.AddParameter("limit", (long)request.Limit);
        command.AddParameter("offset", request.Offset);
        var list = new List<AuditEntry>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(Read(reader));
        }

        return Page.From(list, total, request);
    }

    private static void AddFilter(DbCommand command, Guid? tenantId, PageRequest request, long? startTime, long? endTime)
    {
        command.AddParameter("tenant", tenantId?.ToString());
        command.AddParameter("start", startTime ?? 0L);
        command.AddParameter("end", endTime ?? long.MaxValue);
        if (request.LikePattern is { } pattern)
        {
            command.AddParameter("q", pattern);
        }
    }

    private static AuditEntry Read(DbDataReader r)
    {
        static Guid? G(string? s) => s is null ? null : Guid.Parse(s);
        return new AuditEntry(Guid.Parse(r.GetString(0)), G(r.GetNullableString(1)), G(r.GetNullableString(2)), r.GetNullableString(3), r.GetString(4),
            r.GetNullableString(5), r.GetNullableString(6), r.GetNullableString(7), r.GetString(8) == "SUCCESS", r.GetNullableString(9), r.GetInt64(10));
    }
}
