using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Alarms;

/// <summary>What a user (or a script) sends to create or update an alarm: ThingsBoard's alarm body.</summary>
/// <param name="Id">The alarm to update; null: create, or update the active alarm of that originator and type.</param>
public sealed record AlarmDraft(
    Guid? Id, Guid OriginatorId, string Type, AlarmSeverity Severity, string? DetailsJson = null, long? StartTs = null, long? EndTs = null,
    bool Propagate = false, bool PropagateToOwner = false, bool PropagateToTenant = false, string[]? PropagateRelationTypes = null);

/// <summary>
/// The alarm lifecycle, ThingsBoard's: raise (create, or update the active alarm of the device and type), clear,
/// acknowledge, assign, delete, and the queries. Two kinds of callers: the rule engine (<see cref="RaiseAsync"/>,
/// <see cref="ClearAsync"/>, by tenant and device, no user) and the API (the methods that take a <see cref="Caller"/>,
/// which check roles and write the audit log).
/// </summary>
/// <remarks>
/// Design: every change to a device's alarms is handed to that device's <see cref="AlarmOwner"/> and done one at a
/// time, in the order it came: read the alarm, decide, write, tell the live feed. A rule raising and a user clearing
/// the same alarm therefore never interleave, and concurrent raises find the alarm the first one made. The
/// database's partial unique index (one alarm not cleared per originator and type) backs this up across processes
/// sharing a database: an insert that loses that race takes the existing alarm and updates it instead. Work in
/// the owner ignores the caller's cancellation: a client that goes away must not leave an alarm written but not
/// audited or not told to the live feed.
/// </remarks>
public sealed partial class AlarmService(
    IAlarmStore store, IDeviceStore devices, ITenantStore tenants, IAuditLog audit, AlarmFeed feed, TimeProvider time, ILogger<AlarmService> logger)
{
    /// <summary>Longest alarm type (ThingsBoard's column is 255).</summary>
    public const int MaxTypeLength = 255;

    /// <summary>Largest details JSON, in characters.</summary>
    public const int MaxDetailsLength = 64 * 1024;

    private readonly ConcurrentDictionary<Guid, AlarmOwner> _owners = new();

    /// <summary>Who changes alarms when no user does (the rule engine): recorded in the audit log under this name.</summary>
    public static Caller RulesCaller(Guid tenantId) => new(Guid.Empty, tenantId, Authority.TenantAdmin, "rules");

    internal IAlarmStore Store => store;

    // Owners are kept for the life of the process: a few dozen bytes per device that ever had an alarm change.
    private AlarmOwner OwnerOf(Guid deviceId) => _owners.GetOrAdd(deviceId, static (id, log) => new AlarmOwner(id, log), logger);

    /// <summary>
    /// The rule engine's raise: creates the alarm of <paramref name="type"/> on the device, or updates the active one
    /// (severity, details, endTs). Null <paramref name="detailsJson"/> keeps the details it has. Unchanged when the
    /// alarm already says all of it.
    /// </summary>
    /// <remarks>Takes no cancellation: once handed to the owner, a change is made whole (written, audited, told to the live feed).</remarks>
    public async Task<AlarmChange> RaiseAsync(Guid tenantId, Guid deviceId, string type, AlarmSeverity severity, string? detailsJson, long ts)
    {
        CheckType(type);
        var details = NormalizeDetails(detailsJson);
        return await InOwnerAsync(deviceId, owner => RaiseInOwnerAsync(owner, RulesCaller(tenantId),
            new AlarmDraft(null, deviceId, type, severity, details, null, ts), tenantId, ts, deviceKnown: true));
    }

    /// <summary>The rule engine's clear: clears the active alarm of <paramref name="type"/> on the device; Unchanged when there is none.</summary>
    public async Task<AlarmChange> ClearAsync(Guid tenantId, Guid deviceId, string type, long ts, string? detailsJson = null)
    {
        CheckType(type);
        var details = NormalizeDetails(detailsJson);
        return await InOwnerAsync(deviceId, async owner =>
        {
            var active = await ActiveAsync(owner, tenantId, type);
            if (active is null)
            {
                return new AlarmChange(AlarmChangeKind.Unchanged, null);
            }

            var cleared = active with { Cleared = true, ClearTs = ts, EndTs = Math.Max(active.EndTs, ts), DetailsJson = details ?? active.DetailsJson };
            return await CommitAsync(owner, RulesCaller(tenantId), "ALARM_CLEAR", cleared);
        });
    }

    /// <summary>POST /api/alarm: with an id, updates that alarm; without, creates or updates the active alarm of the originator and type.</summary>
    public async Task<AlarmChange> SaveAsync(Caller caller, AlarmDraft draft, CancellationToken cancellationToken)
    {
        caller.RequireWrite();
        var tenantId = caller.RequireTenant();
        CheckType(draft.Type);
        draft = draft with { DetailsJson = NormalizeDetails(draft.DetailsJson) };
        foreach (var relation in draft.PropagateRelationTypes ?? [])
        {
            Sql.RequireStorableText(relation);
        }

        if (draft.StartTs is < 0 || draft.EndTs is < 0 || (draft.StartTs is { } s && draft.EndTs is { } e && e < s))
        {
            throw PlatformException.BadRequest("startTs and endTs are times in milliseconds, not negative, and endTs is not before startTs.");
        }

        var now = Now();
        if (draft.Id is { } id)
        {
            var existing = await store.GetAsync(tenantId, id, cancellationToken) ?? throw PlatformException.NotFound("The alarm");
            return await InOwnerAsync(existing.OriginatorId, async owner =>
            {
                var current = await store.GetAsync(tenantId, id, CancellationToken.None) ?? throw PlatformException.NotFound("The alarm");
                var updated = current with
                {
                    Severity = draft.Severity,
                    DetailsJson = draft.DetailsJson ?? current.DetailsJson,
                    StartTs = draft.StartTs ?? current.StartTs,
                    EndTs = draft.EndTs ?? Math.Max(current.EndTs, now),
                    Propagate = draft.Propagate,
                    PropagateToOwner = draft.PropagateToOwner,
                    PropagateToTenant = draft.PropagateToTenant,
                    PropagateRelationTypes = draft.PropagateRelationTypes ?? current.PropagateRelationTypes,
                };
                return updated == current ? new AlarmChange(AlarmChangeKind.Unchanged, current) : await CommitAsync(owner, caller, "UPDATED", updated);
            });
        }

        return await InOwnerAsync(draft.OriginatorId, owner => RaiseInOwnerAsync(owner, caller, draft, tenantId, now, deviceKnown: false));
    }

    public async Task<Alarm> GetAsync(Caller caller, Guid id, CancellationToken cancellationToken) =>
        await store.GetAsync(caller.RequireTenant(), id, cancellationToken) ?? throw PlatformException.NotFound("The alarm");

    public async Task<AlarmInfo> GetInfoAsync(Caller caller, Guid id, CancellationToken cancellationToken) =>
        await store.GetInfoAsync(caller.RequireTenant(), id, cancellationToken) ?? throw PlatformException.NotFound("The alarm");

    /// <summary>Acknowledges an alarm; 400 when it was acknowledged already (as ThingsBoard answers).</summary>
    public Task<Alarm> AckAsync(Caller caller, Guid id, CancellationToken cancellationToken) =>
        ChangeAsync(caller, id, "ALARM_ACK", alarm => alarm.Acknowledged
            ? throw PlatformException.BadRequest("The alarm was already acknowledged.")
            : alarm with { Acknowledged = true, AckTs = Now() }, cancellationToken);

    /// <summary>Clears an alarm; 400 when it was cleared already. The next raise of its type creates a new alarm.</summary>
    public Task<Alarm> ClearAsync(Caller caller, Guid id, CancellationToken cancellationToken) =>
        ChangeAsync(caller, id, "ALARM_CLEAR", alarm =>
        {
            if (alarm.Cleared)
            {
                throw PlatformException.BadRequest("The alarm was already cleared.");
            }

            var now = Now();
            return alarm with { Cleared = true, ClearTs = now, EndTs = Math.Max(alarm.EndTs, now) };
        }, cancellationToken);

    /// <summary>Assigns an alarm to a user of the caller's tenant.</summary>
    public async Task<Alarm> AssignAsync(Caller caller, Guid id, Guid userId, CancellationToken cancellationToken)
    {
        caller.RequireWrite();
        _ = await tenants.GetUserAsync(userId, caller.RequireTenant(), cancellationToken: cancellationToken) ?? throw PlatformException.NotFound("The user");
        return await ChangeAsync(caller, id, "ALARM_ASSIGNED", alarm => alarm.AssigneeId == userId
            ? throw PlatformException.BadRequest("The alarm is already assigned to this user.")
            : alarm with { AssigneeId = userId, AssignTs = Now() }, cancellationToken);
    }

    public Task<Alarm> UnassignAsync(Caller caller, Guid id, CancellationToken cancellationToken) =>
        ChangeAsync(caller, id, "ALARM_UNASSIGNED", alarm => alarm.AssigneeId is null
            ? throw PlatformException.BadRequest("The alarm is not assigned.")
            : alarm with { AssigneeId = null, AssignTs = Now() }, cancellationToken);

    public async Task DeleteAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        caller.RequireWrite();
        var tenantId = caller.RequireTenant();
        var existing = await store.GetAsync(tenantId, id, cancellationToken) ?? throw PlatformException.NotFound("The alarm");
        await InOwnerAsync(existing.OriginatorId, async owner =>
        {
            var info = await store.GetInfoAsync(tenantId, id, CancellationToken.None);
            if (info is null || !await store.DeleteAsync(tenantId, id, CancellationToken.None))
            {
                throw PlatformException.NotFound("The alarm");
            }

            owner.Forget(info.Alarm.Type);

            await audit.WriteAsync(caller, "DELETED", "ALARM", id.ToString(), info.Alarm.Type, cancellationToken: CancellationToken.None);
            feed.Publish(new AlarmEvent(AlarmChangeKind.Deleted, info));
            return true;
        });
    }

    public Task<Page<AlarmInfo>> QueryAsync(Caller caller, AlarmQuery query, CancellationToken cancellationToken) =>
        store.QueryAsync(caller.RequireTenant(), query, cancellationToken);

    public Task<long> CountAsync(Caller caller, AlarmQuery query, CancellationToken cancellationToken) =>
        store.CountAsync(caller.RequireTenant(), query, cancellationToken);

    public Task<AlarmSeverity?> HighestSeverityAsync(Caller caller, AlarmQuery query, CancellationToken cancellationToken) =>
        store.HighestSeverityAsync(caller.RequireTenant(), query, cancellationToken);

    /// <summary>Completes once the device's owner has done everything handed to it before: a sync point for tests.</summary>
    internal Task IdleAsync(Guid deviceId) => InOwnerAsync(deviceId, static _ => Task.FromResult(true));

    private async Task<Alarm> ChangeAsync(Caller caller, Guid id, string action, Func<Alarm, Alarm> change, CancellationToken cancellationToken)
    {
        caller.RequireWrite();
        var tenantId = caller.RequireTenant();
        var existing = await store.GetAsync(tenantId, id, cancellationToken) ?? throw PlatformException.NotFound("The alarm");
        var result = await InOwnerAsync(existing.OriginatorId, async owner =>
        {
            // Read again inside the owner: what was read above may have changed since.
            var current = await store.GetAsync(tenantId, id, CancellationToken.None) ?? throw PlatformException.NotFound("The alarm");
            return await CommitAsync(owner, caller, action, change(current));
        });
        return result.Alarm!;
    }

    /// <summary>Runs in the device's owner: creates the alarm of the draft's type, or updates the active one.</summary>
    /// <param name="deviceKnown">
    /// The caller knows the device is the tenant's (the rule engine, fed from the device's own events): a new alarm
    /// needs no read of the device (a device deleted meanwhile still fails the insert).
    /// </param>
    private async Task<AlarmChange> RaiseInOwnerAsync(AlarmOwner owner, Caller caller, AlarmDraft draft, Guid tenantId, long ts, bool deviceKnown)
    {
        // An active alarm found under the tenant proves the device is the tenant's; only a new alarm needs the
        // device read, and only for a user's raise.
        var active = await ActiveAsync(owner, tenantId, draft.Type);
        if (active is null)
        {
            if (!deviceKnown)
            {
                await RequireDeviceAsync(tenantId, draft.OriginatorId, CancellationToken.None);
            }

            var now = Now();
            var start = draft.StartTs ?? ts;
            var alarm = new Alarm(Guid.CreateVersion7(), tenantId, draft.OriginatorId, draft.Type, draft.Severity, false, false,
                start, Math.Max(draft.EndTs ?? ts, start), 0, 0, 0, null, draft.DetailsJson ?? "{}", draft.Propagate, draft.PropagateToOwner,
                draft.PropagateToTenant, draft.PropagateRelationTypes ?? [], now);
            // The alarm and its audit entry commit in one transaction: one wait for the database's write lock, not two.
            if (await store.InsertAsync(alarm, AuditRecord.Of(caller, "ADDED", "ALARM", alarm.Id.ToString(), alarm.Type, now), CancellationToken.None))
            {
                owner.Remember(alarm);
                await PublishAsync(AlarmChangeKind.Created, alarm);
                return new AlarmChange(AlarmChangeKind.Created, alarm);
            }

            // Another process sharing the database raised it first: this raise updates that alarm.
            owner.Forget(draft.Type);
            active = await store.GetActiveAsync(tenantId, draft.OriginatorId, draft.Type, CancellationToken.None)
                ?? throw PlatformException.Conflict("The alarm changed while it was raised; try again.");
        }

        var updated = active with
        {
            Severity = draft.Severity,
            DetailsJson = draft.DetailsJson ?? active.DetailsJson,
            EndTs = Math.Max(active.EndTs, draft.EndTs ?? ts),
        };
        if (updated == active)
        {
            return new AlarmChange(AlarmChangeKind.Unchanged, active);
        }

        // A rule raising again on every message moves endTs each time: that is not news for the audit log (a user's
        // save is, and so is a rule's change of severity).
        var audited = caller.UserId != Guid.Empty || updated.Severity != active.Severity;
        return await CommitAsync(owner, caller, "UPDATED", updated, audited);
    }

    /// <summary>
    /// Runs a change in the device's owner. Within this process the owner is the only writer, so a change is read
    /// and written undisturbed; another process sharing the database can still change the row between the read and
    /// the write, and then the write is refused (<see cref="Alarm.Version"/>) and the change is made again from a
    /// fresh read, <see cref="MaxAttempts"/> times at most. Each refusal means another process committed a change to
    /// the alarm meanwhile, so a change loses only while others keep committing; ten attempts were too few for two
    /// processes raising one alarm 20 times each on a loaded machine (one raise lost ten races in a row, in CI).
    /// </summary>
    private Task<T> InOwnerAsync<T>(Guid deviceId, Func<AlarmOwner, Task<T>> change)
    {
        var owner = OwnerOf(deviceId);
        return owner.AskAsync(() => ChangeInOwnerAsync(owner, change));
    }

    /// <summary>Attempts of one change against other processes' writes (see <see cref="InOwnerAsync"/>).</summary>
    internal const int MaxAttempts = 50;

    private static async Task<T> ChangeInOwnerAsync<T>(AlarmOwner owner, Func<AlarmOwner, Task<T>> change)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await change(owner);
            }
            catch (StaleAlarmException) when (attempt < MaxAttempts)
            {
                // Read again and decide again: what the owner knew is out of date.
                owner.ForgetAll();
            }
            catch (StaleAlarmException)
            {
                owner.ForgetAll();
                throw PlatformException.Conflict("The alarm kept changing while this change was made; try again.");
            }
            catch
            {
                // A failed write may or may not have committed: the next change reads the database again.
                owner.ForgetAll();
                throw;
            }
        }
    }

    /// <summary>
    /// The active alarm of a type on the owner's device, from what the owner knows when it knows (it wrote or read it
    /// last, and it is the only writer in this process), else read. An alarm of another tenant is not found.
    /// </summary>
    private async Task<Alarm?> ActiveAsync(AlarmOwner owner, Guid tenantId, string type)
    {
        if (owner.TryKnown(type, out var known))
        {
            return known?.TenantId == tenantId ? known : null;
        }

        // None found under another tenant is remembered too: that caller's change then fails on the device check,
        // and a failed change forgets everything; a new alarm the owner wrongly thought absent clashes on the
        // database's unique index and is read again.
        var read = System.Diagnostics.Stopwatch.GetTimestamp();
        var active = await store.GetActiveAsync(tenantId, owner.DeviceId, type, CancellationToken.None);
        StageTimings.Since("owner.read", read);
        owner.Remember(type, active);
        return active;
    }

    /// <summary>Writes a changed alarm and its audit entry in one transaction, and tells the live feed; runs in the alarm's owner.</summary>
    private async Task<AlarmChange> CommitAsync(AlarmOwner owner, Caller caller, string action, Alarm alarm, bool audited = true)
    {
        var entry = audited ? AuditRecord.Of(caller, action, "ALARM", alarm.Id.ToString(), alarm.Type, Now()) : null;
        if (!await store.UpdateAsync(alarm, entry))
        {
            throw await store.GetAsync(alarm.TenantId, alarm.Id) is null ? PlatformException.NotFound("The alarm") : new StaleAlarmException();
        }

        alarm = alarm with { Version = alarm.Version + 1 };
        owner.Remember(alarm);

        await PublishAsync(AlarmChangeKind.Updated, alarm);
        return new AlarmChange(AlarmChangeKind.Updated, alarm);
    }

    private async Task PublishAsync(AlarmChangeKind kind, Alarm alarm)
    {
        feed.TellOthers?.Invoke(kind, alarm.TenantId, alarm.Id);
        // The info (originator name, assignee) costs a read: only when somebody of the tenant is watching.
        if (feed.HasSubscribers(alarm.TenantId) && await store.GetInfoAsync(alarm.TenantId, alarm.Id) is { } info)
        {
            feed.Publish(new AlarmEvent(kind, info));
        }
    }

    private async Task RequireDeviceAsync(Guid tenantId, Guid deviceId, CancellationToken cancellationToken)
    {
        if (await devices.GetDeviceAsync(tenantId, deviceId, cancellationToken) is null)
        {
            throw PlatformException.NotFound("The originator device");
        }
    }

    private long Now() => time.GetUtcNow().ToUnixTimeMilliseconds();

    private static void CheckType(string type)
    {
        if (string.IsNullOrWhiteSpace(type) || type.Length > MaxTypeLength)
        {
            throw PlatformException.BadRequest($"type is required: the alarm's name, at most {MaxTypeLength} characters.");
        }

        Sql.RequireStorableText(type);
    }

    /// <summary>Details as compact JSON text (so that "the same details" compares as text), or null for none.</summary>
    private static string? NormalizeDetails(string? json)
    {
        if (json is null)
        {
            return null;
        }

        if (json.Length > MaxDetailsLength)
        {
            throw PlatformException.BadRequest($"details is larger than {MaxDetailsLength} characters.");
        }

        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            throw PlatformException.BadRequest($"details is not valid JSON: {e.Message}");
        }

        var text = node?.ToJsonString() ?? "null";
        Sql.RequireStorableText(text);
        return text;
    }

    [LoggerMessage(EventId = 4101, Level = LogLevel.Error, Message = "An alarm change of device {DeviceId} failed")]
    internal static partial void LogWorkFailed(ILogger logger, Guid deviceId, Exception exception);
}

/// <summary>
/// The one owner of a device's alarm changes: work handed to it (<see cref="AskAsync{T}"/>) runs one item at a
/// time, in the order it came, on the thread pool. The alarm rows are the state, and only work run here writes
/// them (in this process); the owner keeps the device's active alarms as it last wrote or read them, so that a
/// rule raising or clearing again writes without reading first. The shape of a grain's turn-based scheduling.
/// </summary>
internal sealed class AlarmOwner(Guid deviceId, ILogger logger)
{
    private readonly ConcurrentQueue<Func<Task>> _mailbox = new();
    private int _draining;

    // The device's active alarm per type as last written or read here (null: known to have none). Touched only by
    // work run in this owner, one item at a time.
    private readonly Dictionary<string, Alarm?> _active = new(StringComparer.Ordinal);

    public Guid DeviceId => deviceId;

    public bool TryKnown(string type, out Alarm? active) => _active.TryGetValue(type, out active);

    public void Remember(string type, Alarm? active) => _active[type] = active;

    /// <summary>An alarm as written: the active one of its type, or, cleared, no longer (if it was the one known).</summary>
    public void Remember(Alarm alarm)
    {
        if (!alarm.Cleared)
        {
            _active[alarm.Type] = alarm;
        }
        else if (_active.TryGetValue(alarm.Type, out var known) && known?.Id == alarm.Id)
        {
            _active[alarm.Type] = null;
        }
    }

    public void Forget(string type) => _active.Remove(type);

    public void ForgetAll() => _active.Clear();

    /// <summary>Hands the owner work with a result; it runs after everything handed before it.</summary>
    public Task<T> AskAsync<T>(Func<Task<T>> work)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var queued = System.Diagnostics.Stopwatch.GetTimestamp();
        _mailbox.Enqueue(async () =>
        {
            StageTimings.Since("owner.queue", queued);
            try
            {
                result.TrySetResult(await work());
            }
            catch (Exception e)
            {
                result.TrySetException(e);
            }
        });
        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            _ = Task.Run(DrainAsync);
        }

        return result.Task;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            while (_mailbox.TryDequeue(out var work))
            {
                try
                {
                    await work();
                }
                catch (Exception e)
                {
                    AlarmService.LogWorkFailed(logger, deviceId, e);
                }
            }

            Volatile.Write(ref _draining, 0);
            // Work queued between the last dequeue and the reset above would otherwise wait for the next one.
            if (_mailbox.IsEmpty || Interlocked.Exchange(ref _draining, 1) == 1)
            {
                return;
            }
        }
    }
}

/// <summary>An update refused because the alarm changed since it was read (by another process sharing the database).</summary>
internal sealed class StaleAlarmException : Exception;
