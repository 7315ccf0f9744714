using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Taihu.Platform.Audit;
using Taihu.Platform.Events;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Alarms;

/// <summary>
/// Writes alarm changes, several to a transaction: each change's row, its audit entry and its event log record
/// commit together, and the changes that came together share one transaction and one event log row.
/// </summary>
/// <remarks>
/// Design: the writer decides nothing. The device's alarm owner (<see cref="AlarmService"/>) decides a change and
/// waits for its outcome before it hands over the next, so a device's changes are written in its order; the writer
/// takes whatever changes are waiting, from any devices, and writes them in one transaction, each inside a
/// savepoint of its own, so that a change refused by the database (an insert that meets another process's active
/// alarm, an update that finds the row changed, a device deleted meanwhile) is undone alone and reported to its
/// owner, while the others commit. A failure of the transaction itself fails every change in it; their owners then
/// forget what they knew and read again.
/// <para>
/// Why: on SQLite one transaction at a time may write, and ingest holds that lock for most of every second under
/// load; a transaction per alarm change waited behind SQLite's busy handler, which sleeps and is not fair, and
/// under a burst of alarms the changes queued on each other. Here a change waits for the transaction in progress
/// at most, and the writer takes its turn at the lock in order (<see cref="PlatformDatabase.TakeWriteTurnAsync"/>),
/// behind at most one ingest commit.
/// </para>
/// </remarks>
internal sealed class AlarmWriter(PlatformDatabase database, EventSignal? signal)
{
    /// <summary>Changes written in one transaction at most (the rest wait for the next one).</summary>
    private const int MaxChangesPerTransaction = 512;

    private readonly ConcurrentQueue<AlarmWrite> _queue = new();
    private readonly List<AlarmWrite> _batch = [];
    private readonly List<DeviceEventRecord> _events = [];
    private int _draining;

    /// <summary>Queues a new alarm; true when written, false when an active alarm of its originator and type exists.</summary>
    public Task<bool> InsertAsync(Alarm alarm, AuditRecord? audit) => Enqueue(new AlarmWrite(alarm, audit, insert: true));

    /// <summary>Queues an update at the alarm's version; false when the row is gone or was changed since.</summary>
    public Task<bool> UpdateAsync(Alarm alarm, AuditRecord? audit) => Enqueue(new AlarmWrite(alarm, audit, insert: false));

    private Task<bool> Enqueue(AlarmWrite write)
    {
        _queue.Enqueue(write);
        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            _ = Task.Run(DrainAsync);
        }

        return write.Done.Task;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            while (!_queue.IsEmpty)
            {
                _batch.Clear();
                while (_batch.Count < MaxChangesPerTransaction && _queue.TryDequeue(out var write))
                {
                    _batch.Add(write);
                }

                var batchStart = System.Diagnostics.Stopwatch.GetTimestamp();
                foreach (var queued in _batch)
                {
                    StageTimings.Record("writer.queue", System.Diagnostics.Stopwatch.GetElapsedTime(queued.Queued, batchStart).TotalMilliseconds);
                }

                try
                {
                    await WriteBatchAsync();
                    signal?.Notify();
                    foreach (var write in _batch)
                    {
                        write.Complete();
                    }
                }
                catch (Exception e)
                {
                    // Not committed (or not known to be): every change of the transaction fails.
                    foreach (var write in _batch)
                    {
                        write.Done.TrySetException(e);
                    }
                }
            }

            Volatile.Write(ref _draining, 0);
            // A change queued between the last dequeue and the reset above would otherwise wait for the next one.
            if (_queue.IsEmpty || Interlocked.Exchange(ref _draining, 1) == 1)
            {
                return;
            }
        }
    }

    private async Task WriteBatchAsync()
    {
        _events.Clear();
        // In one order in every process (a batch holds at most one change per device and type, so no device's order
        // changes): two processes' batches then lock alarm rows and unique index entries in the same order, and
        // PostgreSQL never finds them deadlocked (the storm test did, before).
        _batch.Sort(static (a, b) => a.Alarm.OriginatorId != b.Alarm.OriginatorId
            ? a.Alarm.OriginatorId.CompareTo(b.Alarm.OriginatorId)
            : string.CompareOrdinal(a.Alarm.Type, b.Alarm.Type));
        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        await using var connection = await database.OpenAsync();
        stage = StageTimings.Since("writer.open", stage);
        using var turn = await database.TakeWriteTurnAsync();
        stage = StageTimings.Since("writer.turn", stage);
        await using var transaction = await connection.BeginTransactionAsync();
        stage = StageTimings.Since("writer.begin", stage);
        for (var i = 0; i < _batch.Count; i++)
        {
            var write = _batch[i];
            var savepoint = "a" + i.ToString(CultureInfo.InvariantCulture);
            await SavepointAsync(connection, transaction, "SAVEPOINT " + savepoint);
            var events = _events.Count;
            try
            {
                write.Written = write.Insert ? await InsertAsync(connection, transaction, write) : await UpdateAsync(connection, transaction, write);
            }
            catch (Exception e)
            {
                // A clash with an active alarm (another process raised it first) is a "no"; anything else is this
                // change's error. A connection that broke fails the rollback below, and with it the transaction.
                write.Error = e is DbException db && Sql.IsUniqueViolation(db) ? null
                    : e is DbException fk && Sql.IsForeignKeyViolation(fk) ? PlatformException.NotFound("The originator device")
                    : e;
                write.Written = false;
            }

            if (write.Written)
            {
                await SavepointAsync(connection, transaction, "RELEASE SAVEPOINT " + savepoint);
            }
            else
            {
                // Undone alone: its statements leave nothing, and its event record goes.
                await SavepointAsync(connection, transaction, "ROLLBACK TO SAVEPOINT " + savepoint);
                _events.RemoveRange(events, _events.Count - events);
            }
        }

        if (_events.Count > 0)
        {
            var ts = 0L;
            foreach (var record in _events)
            {
                ts = Math.Max(ts, record.Ts);
            }

            // Last, so that PostgreSQL's append lock (EventLog) is held only for the commit.
            await EventLog.AppendAsync(database, connection, transaction, EventLogKind.Device, EventCodec.EncodeEvents(_events), ts, CancellationToken.None);
        }

        stage = StageTimings.Since("writer.statements", stage);
        await transaction.CommitAsync();
        StageTimings.Since("writer.commit", stage);
    }

    private async Task<bool> InsertAsync(DbConnection connection, DbTransaction transaction, AlarmWrite write)
    {
        var alarm = write.Alarm;
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            command.CommandText = """
                INSERT INTO alarms (id, tenant_id, originator_id, originator_type, type, severity, acknowledged, cleared, start_ts, end_ts, ack_ts, clear_ts,
                    assign_ts, assignee_id, details, propagate, propagate_to_owner, propagate_to_tenant, propagate_relation_types, created_time, version)
                VALUES (@id, @tenant, @originator, 'DEVICE', @type, @severity, @ack, @cleared, @start, @end, @ackTs, @clearTs,
                    @assignTs, @assignee, @details, @propagate, @toOwner, @toTenant, @relations, @created, @version)
                """;
            Bind(command, alarm);
            command.AddParameter("created", alarm.CreatedTime);
            await command.ExecuteNonQueryAsync();
        }

        await AddEventAsync(connection, transaction, alarm, PlatformEventType.AlarmCreated);
        await AuditAsync(connection, transaction, write.Audit);
        return true;
    }

    private async Task<bool> UpdateAsync(DbConnection connection, DbTransaction transaction, AlarmWrite write)
    {
        var alarm = write.Alarm;
        bool wasCleared;
        using (var before = connection.CreateCommand())
        {
            before.Transaction = transaction;
            before.CommandText = "SELECT cleared FROM alarms WHERE id = @id AND tenant_id = @tenant";
            before.AddParameter("id", alarm.Id.ToString());
            before.AddParameter("tenant", alarm.TenantId.ToString());
            await using var reader = await before.ExecuteReaderAsync();
            wasCleared = await reader.ReadAsync() && Sql.GetBool(reader, 0);
        }

        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            command.CommandText = """
                UPDATE alarms SET severity = @severity, acknowledged = @ack, cleared = @cleared, start_ts = @start, end_ts = @end, ack_ts = @ackTs,
                    clear_ts = @clearTs, assign_ts = @assignTs, assignee_id = @assignee, details = @details, propagate = @propagate,
                    propagate_to_owner = @toOwner, propagate_to_tenant = @toTenant, propagate_relation_types = @relations, version = version + 1
                WHERE id = @id AND tenant_id = @tenant AND originator_id = @originator AND type = @type AND version = @version
                """;
            Bind(command, alarm);
            if (await command.ExecuteNonQueryAsync() == 0)
            {
                return false;
            }
        }

        // Cleared by this change: ALARM_CLEARED; any other change (an ack, a new severity, an ack after the clear): ALARM_UPDATED.
        var type = alarm.Cleared && !wasCleared ? PlatformEventType.AlarmCleared : PlatformEventType.AlarmUpdated;
        await AddEventAsync(connection, transaction, alarm with { Version = alarm.Version + 1 }, type);
        await AuditAsync(connection, transaction, write.Audit);
        return true;
    }

    /// <summary>
    /// The change's record for the event log (integrations send it; the rules engine forgets an alarm cleared
    /// elsewhere by its type), the alarm as the REST API shows it; the batch's records are appended as one row.
    /// </summary>
    private async Task AddEventAsync(DbConnection connection, DbTransaction transaction, Alarm alarm, PlatformEventType type)
    {
        using var lookup = connection.CreateCommand();
        lookup.Transaction = transaction;
        lookup.CommandText = "SELECT seq FROM devices WHERE id = @id";
        lookup.AddParameter("id", alarm.OriginatorId.ToString());
        if (await lookup.ExecuteScalarAsync() is not { } found || found is DBNull)
        {
            return;
        }

        var seq = Convert.ToInt64(found, CultureInfo.InvariantCulture);
        var ts = Math.Max(alarm.CreatedTime, Math.Max(alarm.EndTs, Math.Max(alarm.AckTs, alarm.ClearTs)));
        _events.Add(new DeviceEventRecord(seq, type, ts, AlarmEventJson.Write(alarm)));
    }

    /// <summary>
    /// A savepoint statement sent as a command of its own. Npgsql's <c>NpgsqlTransaction.ReleaseAsync</c> read the
    /// answer synchronously; with socket completions run inline (Taihu.Server's SocketCompletions) that read waited on
    /// the epoll thread it was running on, and every socket of that thread stopped (on PostgreSQL, the first alarm
    /// written hung the node: its database connections, and on a cluster its links to the other nodes).
    /// </summary>
    private static async Task SavepointAsync(DbConnection connection, DbTransaction transaction, string sql)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync();
    }

    private static Task AuditAsync(DbConnection connection, DbTransaction transaction, AuditRecord? audit) =>
        audit is null ? Task.CompletedTask : SqlAuditLog.InsertAsync(connection, transaction, [audit]);

    private static void Bind(DbCommand command, Alarm alarm)
    {
        command.AddParameter("id", alarm.Id.ToString());
        command.AddParameter("tenant", alarm.TenantId.ToString());
        command.AddParameter("originator", alarm.OriginatorId.ToString());
        command.AddParameter("type", alarm.Type);
        command.AddParameter("severity", (long)alarm.Severity);
        command.AddParameter("ack", alarm.Acknowledged);
        command.AddParameter("cleared", alarm.Cleared);
        command.AddParameter("start", alarm.StartTs);
        command.AddParameter("end", alarm.EndTs);
        command.AddParameter("ackTs", alarm.AckTs);
        command.AddParameter("clearTs", alarm.ClearTs);
        command.AddParameter("assignTs", alarm.AssignTs);
        command.AddParameter("assignee", alarm.AssigneeId?.ToString());
        command.AddParameter("details", alarm.DetailsJson);
        command.AddParameter("propagate", alarm.Propagate);
        command.AddParameter("toOwner", alarm.PropagateToOwner);
        command.AddParameter("toTenant", alarm.PropagateToTenant);
        command.AddParameter("relations", JsonSerializer.Serialize(alarm.PropagateRelationTypes, AlarmJsonContext.Default.StringArray));
        command.AddParameter("version", alarm.Version);
    }

    /// <summary>One change on its way, and its outcome for the owner that waits for it.</summary>
    private sealed class AlarmWrite(Alarm alarm, AuditRecord? audit, bool insert)
    {
        public Alarm Alarm { get; } = alarm;

        public long Queued { get; } = System.Diagnostics.Stopwatch.GetTimestamp();

        public AuditRecord? Audit { get; } = audit;

        /// <summary>A new alarm (else an update at its version).</summary>
        public bool Insert { get; } = insert;

        public bool Written { get; set; }

        /// <summary>Why the change was refused, when that is an error rather than a "no" (a device gone).</summary>
        public Exception? Error { get; set; }

        public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Complete()
        {
            if (Error is not null)
            {
                Done.TrySetException(Error);
            }
            else
            {
                Done.TrySetResult(Written);
            }
        }
    }
}
