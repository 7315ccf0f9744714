using Microsoft.Extensions.Logging.Abstractions;
using Taihu.Platform.Alarms;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>
/// Alarms on both databases: one active alarm per device and type (a repeat updates it, a clear lets the next raise
/// make a new one), concurrent raises from two services on one database, the user's changes and their errors,
/// queries with paging, filters and sorting, and tenant isolation.
/// </summary>
public abstract partial class StorageTests
{
    private AlarmService NewAlarmService(AlarmFeed? feed = null) =>
        new(new SqlAlarmStore(Database), Devices, Tenants, Audit, feed ?? new AlarmFeed(), Time, NullLogger<AlarmService>.Instance);

    [Fact]
    public async Task Alarm_RepeatedRaiseUpdatesTheActiveAlarm_InsteadOfMakingAnother()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var alarms = NewAlarmService();

        var created = await alarms.RaiseAsync(tenant.Id, device.Id, "High Temperature", AlarmSeverity.Minor, """{"temperature": 41}""", T0 + 10);
        Assert.Equal(AlarmChangeKind.Created, created.Kind);
        var alarm = created.Alarm!;
        Assert.Equal((T0 + 10, T0 + 10, false, false, "{\"temperature\":41}"), (alarm.StartTs, alarm.EndTs, alarm.Cleared, alarm.Acknowledged, alarm.DetailsJson));
        Assert.Equal("ACTIVE_UNACK", alarm.StatusName);

        // The same raise again changes nothing.
        var same = await alarms.RaiseAsync(tenant.Id, device.Id, "High Temperature", AlarmSeverity.Minor, """{"temperature":41}""", T0 + 10);
        Assert.Equal(AlarmChangeKind.Unchanged, same.Kind);

        // A later raise moves endTs on, and takes the new severity and details; start stays.
        var updated = await alarms.RaiseAsync(tenant.Id, device.Id, "High Temperature", AlarmSeverity.Critical, """{"temperature":55}""", T0 + 20);
        Assert.Equal(AlarmChangeKind.Updated, updated.Kind);
        Assert.Equal(alarm.Id, updated.Alarm!.Id);
        Assert.Equal((T0 + 10, T0 + 20, AlarmSeverity.Critical, "{\"temperature\":55}"), (updated.Alarm.StartTs, updated.Alarm.EndTs, updated.Alarm.Severity, updated.Alarm.DetailsJson));

        // Without details the raise keeps the ones the alarm has; another type is another alarm.
        var kept = await alarms.RaiseAsync(tenant.Id, device.Id, "High Temperature", AlarmSeverity.Critical, null, T0 + 30);
        Assert.Equal("{\"temperature\":55}", kept.Alarm!.DetailsJson);
        Assert.Equal(AlarmChangeKind.Created, (await alarms.RaiseAsync(tenant.Id, device.Id, "Low Battery", AlarmSeverity.Warning, null, T0 + 30)).Kind);

        var page = await alarms.QueryAsync(TenantAdmin(tenant.Id), new AlarmQuery(new PageRequest(PageSize: 10), device.Id), default);
        Assert.Equal(2, page.TotalElements);

        // The rules' raises are audited under "rules" when they create or change the severity, not when they only move endTs.
        var log = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 50, SortProperty: "createdTime"));
        Assert.Equal([("ADDED", "High Temperature"), ("UPDATED", "High Temperature"), ("ADDED", "Low Battery")],
            log.Data.Select(e => (e.ActionType, e.EntityName!)));
        Assert.All(log.Data, e => Assert.Equal("rules", e.UserName));
        var stored = page.Data.Single(a => a.Alarm.Type == "High Temperature");
        Assert.Equal(kept.Alarm, stored.Alarm);
        Assert.Equal(device.Name, stored.OriginatorName);
    }

    [Fact]
    public async Task Alarm_AfterAClear_TheNextRaiseCreatesANewAlarm()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var alarms = NewAlarmService();
        var first = (await alarms.RaiseAsync(tenant.Id, device.Id, "Door Open", AlarmSeverity.Major, null, T0 + 1)).Alarm!;

        var cleared = await alarms.ClearAsync(tenant.Id, device.Id, "Door Open", T0 + 5, """{"closedBy":"sensor"}""");
        Assert.Equal(AlarmChangeKind.Updated, cleared.Kind);
        Assert.Equal((first.Id, true, T0 + 5, T0 + 5, "CLEARED_UNACK", "{\"closedBy\":\"sensor\"}"),
            (cleared.Alarm!.Id, cleared.Alarm.Cleared, cleared.Alarm.ClearTs, cleared.Alarm.EndTs, cleared.Alarm.StatusName, cleared.Alarm.DetailsJson));

        // Nothing active to clear now.
        Assert.Equal(new AlarmChange(AlarmChangeKind.Unchanged, null), await alarms.ClearAsync(tenant.Id, device.Id, "Door Open", T0 + 6));

        var second = await alarms.RaiseAsync(tenant.Id, device.Id, "Door Open", AlarmSeverity.Major, null, T0 + 9);
        Assert.Equal(AlarmChangeKind.Created, second.Kind);
        Assert.NotEqual(first.Id, second.Alarm!.Id);

        var admin = TenantAdmin(tenant.Id);
        var all = await alarms.QueryAsync(admin, new AlarmQuery(new PageRequest(PageSize: 10), device.Id), default);
        Assert.Equal([second.Alarm.Id, first.Id], all.Data.Select(a => a.Alarm.Id));
        var active = await alarms.QueryAsync(admin, new AlarmQuery(new PageRequest(PageSize: 10), device.Id, new AlarmStatusFilter(false, null)), default);
        Assert.Equal([second.Alarm.Id], active.Data.Select(a => a.Alarm.Id));
    }

    [Fact]
    public async Task Alarm_ConcurrentRaises_FromTwoServicesOnOneDatabase_MakeOneAlarm()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        // Two services share the database as two nodes would: each has its own owners, so only the storage's
        // unique index stands between their inserts.
        var nodes = new[] { NewAlarmService(), NewAlarmService() };
        var raises = new List<Task<AlarmChange>>();
        for (var i = 0; i < 40; i++)
        {
            var node = nodes[i % 2];
            var ts = T0 + i;
            raises.Add(Task.Run(() => node.RaiseAsync(tenant.Id, device.Id, "Overheat", AlarmSeverity.Major, null, ts)));
        }

        var results = await Task.WhenAll(raises);
        Assert.Single(results, r => r.Kind == AlarmChangeKind.Created);
        Assert.Single(results.Select(r => r.Alarm!.Id).Distinct());
        var page = await nodes[0].QueryAsync(TenantAdmin(tenant.Id), new AlarmQuery(new PageRequest(PageSize: 100), device.Id), default);
        Assert.Equal(1, page.TotalElements);
        // The raise that created it set startTs; the latest ts of all the raises is endTs, whichever order they ran in.
        var created = results.Single(r => r.Kind == AlarmChangeKind.Created).Alarm!;
        Assert.Equal((created.StartTs, T0 + 39), (page.Data[0].Alarm.StartTs, page.Data[0].Alarm.EndTs));
    }

    [Fact]
    public async Task Alarm_RaisesAndClearsRacing_EachAlarmIsClearedOrTheOneActive_AndEveryRaiseCounted()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var alarms = NewAlarmService();
        var work = new List<Task<AlarmChange>>();
        for (var i = 0; i < 60; i++)
        {
            var ts = T0 + i;
            work.Add(i % 3 == 2
                ? Task.Run(() => alarms.ClearAsync(tenant.Id, device.Id, "Flood", ts))
                : Task.Run(() => alarms.RaiseAsync(tenant.Id, device.Id, "Flood", AlarmSeverity.Critical, null, ts)));
        }

        var results = await Task.WhenAll(work);
        var page = await alarms.QueryAsync(TenantAdmin(tenant.Id), new AlarmQuery(new PageRequest(PageSize: 100)), default);
        // Every alarm made was made by one raise that said Created, and all but at most one are cleared.
        Assert.Equal(results.Count(r => r.Kind == AlarmChangeKind.Created), page.TotalElements);
        Assert.True(page.Data.Count(a => !a.Alarm.Cleared) <= 1);
        var clears = results.Where((r, i) => i % 3 == 2 && r.Kind == AlarmChangeKind.Updated).Select(r => r.Alarm!.Id).ToList();
        Assert.Equal(clears.Count, clears.Distinct().Count());
        Assert.Equal(page.Data.Where(a => a.Alarm.Cleared).Select(a => a.Alarm.Id).Order(), clears.Order());
    }

    [Fact]
    public async Task Alarm_AStormOfRaisesFromManyDevices_WritesEveryAlarm_ItsAuditEntry_AndItsEvent()
    {
        // 60 devices raise and clear at once while telemetry batches commit beside them, and a second service on the
        // same database (another process) raises the same alarms: the writer puts the changes that come together in
        // one transaction, each in a savepoint, so a raise that meets the other process's alarm is undone alone.
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, "default", isDefault: true);
        var devices = new List<Taihu.Platform.Devices.Device>();
        for (var i = 0; i < 60; i++)
        {
            devices.Add(await NewDeviceAsync(tenant.Id, profile.Id));
        }

        var before = await Events.EventLog.LastPositionAsync(Database, default);
        var alarms = NewAlarmService();
        var other = NewAlarmService();
        var ingest = Task.Run(async () =>
        {
            for (var batch = 0; batch < 20; batch++)
            {
                await Telemetry.WriteAsync([.. devices.Select(d => Point(d, "pm25", T0 + batch, batch))]);
            }
        });
        var storm = devices.Select(async (device, i) =>
        {
            // Every fourth device: both services raise at once; one insert wins, the other meets it and takes it.
            var raised = i % 4 == 0
                ? await Task.WhenAll(alarms.RaiseAsync(tenant.Id, device.Id, "Storm", AlarmSeverity.Major, null, T0 + i),
                    other.RaiseAsync(tenant.Id, device.Id, "Storm", AlarmSeverity.Major, null, T0 + i))
                : [await alarms.RaiseAsync(tenant.Id, device.Id, "Storm", AlarmSeverity.Major, null, T0 + i)];
            if (i % 4 == 0)
            {
                Assert.Equal(AlarmChangeKind.Updated, (await other.RaiseAsync(tenant.Id, device.Id, "Storm", AlarmSeverity.Critical, null, T0 + 100 + i)).Kind);
            }

            // The first service's owner may know the alarm at an older version: its clear is refused and made again.
            var cleared = await alarms.ClearAsync(tenant.Id, device.Id, "Storm", T0 + 200 + i);
            return (Created: raised.Single(r => r.Kind == AlarmChangeKind.Created).Alarm!, Others: raised.Count(r => r.Kind == AlarmChangeKind.Created), cleared);
        }).ToList();
        var results = await Task.WhenAll(storm);
        await ingest;

        // Every device: one alarm, made by one raise, cleared; every fourth raised to CRITICAL by the other service.
        var page = await alarms.QueryAsync(TenantAdmin(tenant.Id), new AlarmQuery(new PageRequest(PageSize: 100)), default);
        Assert.Equal(60, page.TotalElements);
        for (var i = 0; i < devices.Count; i++)
        {
            var (created, creations, cleared) = results[i];
            Assert.Equal((1, AlarmChangeKind.Updated), (creations, cleared.Kind));
            var stored = page.Data.Single(a => a.Alarm.OriginatorId == devices[i].Id).Alarm;
            Assert.Equal((created.Id, true, T0 + 200 + i), (stored.Id, stored.Cleared, stored.ClearTs));
            Assert.Equal(i % 4 == 0 ? AlarmSeverity.Critical : AlarmSeverity.Major, stored.Severity);
        }

        // The audit log has each change, written with it: 60 ADDED, 15 UPDATED (the new severity), 60 ALARM_CLEAR.
        var log = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 1000));
        Assert.Equal((60, 15, 60), (log.Data.Count(e => e.ActionType == "ADDED"), log.Data.Count(e => e.ActionType == "UPDATED"),
            log.Data.Count(e => e.ActionType == "ALARM_CLEAR")));
        Assert.All(log.Data, e => Assert.Equal("Storm", e.EntityName));

        // And the event log has each change once: what integrations send and what tells the rules of a clear.
        var records = new List<Events.DeviceEventRecord>();
        foreach (var row in await Events.EventLog.ReadAsync(Database, before, 10_000, default))
        {
            if (row.Kind == Events.EventLogKind.Device)
            {
                var decoded = new Events.DecodedRow();
                Events.EventCodec.Decode(row.Kind, row.Body, decoded);
                records.AddRange(decoded.Events);
            }
        }

        foreach (var device in devices)
        {
            var mine = records.Where(r => r.DeviceSeq == device.Seq).Select(r => r.Type).ToList();
            Assert.Equal(1, mine.Count(t => t == Events.PlatformEventType.AlarmCreated));
            Assert.Equal(1, mine.Count(t => t == Events.PlatformEventType.AlarmCleared));
        }

        Assert.Equal(15, records.Count(r => r.Type == Events.PlatformEventType.AlarmUpdated));
    }

    [Fact]
    public async Task Alarm_StoreRefusesASecondActiveAlarm_OfOneDeviceAndType()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var store = new SqlAlarmStore(Database);
        Alarm New() => new(Guid.CreateVersion7(), tenant.Id, device.Id, "Leak", AlarmSeverity.Critical, false, false, T0, T0, 0, 0, 0, null, "{}",
            true, false, true, ["Contains"], T0);
        var first = New();
        Assert.True(await store.InsertAsync(first));
        Assert.False(await store.InsertAsync(New()));
        Assert.Equal(first, await store.GetAsync(tenant.Id, first.Id));

        // An update names the version it read: a second writer with the same stale read is refused.
        Assert.True(await store.UpdateAsync(first with { Cleared = true, ClearTs = T0 + 1 }));
        Assert.False(await store.UpdateAsync(first with { Severity = AlarmSeverity.Minor }));
        var stored = await store.GetAsync(tenant.Id, first.Id);
        Assert.Equal((1L, true, AlarmSeverity.Critical), (stored!.Version, stored.Cleared, stored.Severity));
        Assert.True(await store.InsertAsync(New()));
        Assert.False(await store.InsertAsync(New()));
    }

    [Fact]
    public async Task Alarm_AckAssignClearAndDelete_WithTheirErrors_AndEachInTheAuditLog()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var (otherTenant, _, _) = await NewTenantWithDeviceAsync();
        var user = new User(Guid.NewGuid(), tenant.Id, "operator@example.com", Authority.Operator, "Ada", "Lovelace", T0, true);
        var stranger = new User(Guid.NewGuid(), otherTenant.Id, "stranger@example.com", Authority.Operator, null, null, T0, true);
        await Tenants.CreateUserAsync(user, null, null);
        await Tenants.CreateUserAsync(stranger, null, null);
        var alarms = NewAlarmService();
        var admin = TenantAdmin(tenant.Id);
        var id = (await alarms.RaiseAsync(tenant.Id, device.Id, "Vibration", AlarmSeverity.Warning, null, T0)).Alarm!.Id;

        Time.Advance(TimeSpan.FromSeconds(1));
        var acked = await alarms.AckAsync(admin, id, default);
        Assert.Equal((true, T0 + 1000, "ACTIVE_ACK"), (acked.Acknowledged, acked.AckTs, acked.StatusName));
        Assert.Equal(400, (await Assert.ThrowsAsync<PlatformException>(() => alarms.AckAsync(admin, id, default))).Status);

        Time.Advance(TimeSpan.FromSeconds(1));
        var assigned = await alarms.AssignAsync(admin, id, user.Id, default);
        Assert.Equal((user.Id, T0 + 2000), (assigned.AssigneeId, assigned.AssignTs));
        var info = await alarms.GetInfoAsync(admin, id, default);
        Assert.Equal(new AlarmAssignee(user.Id, "Ada", "Lovelace", "operator@example.com"), info.Assignee);
        Assert.Equal(400, (await Assert.ThrowsAsync<PlatformException>(() => alarms.AssignAsync(admin, id, user.Id, default))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.AssignAsync(admin, id, stranger.Id, default))).Status);
        Assert.Equal(user.Id, (await alarms.GetAsync(admin, id, default)).AssigneeId);
        Assert.Null((await alarms.UnassignAsync(admin, id, default)).AssigneeId);
        Assert.Equal(400, (await Assert.ThrowsAsync<PlatformException>(() => alarms.UnassignAsync(admin, id, default))).Status);

        // A viewer changes nothing; another tenant sees nothing.
        var viewer = new Caller(Guid.NewGuid(), tenant.Id, Authority.Viewer, "viewer@example.com");
        Assert.Equal(403, (await Assert.ThrowsAsync<PlatformException>(() => alarms.ClearAsync(viewer, id, default))).Status);
        var outsider = TenantAdmin(otherTenant.Id);
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.GetAsync(outsider, id, default))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.ClearAsync(outsider, id, default))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.DeleteAsync(outsider, id, default))).Status);
        Assert.Equal(0, (await alarms.QueryAsync(outsider, new AlarmQuery(new PageRequest()), default)).TotalElements);
        Assert.False((await alarms.GetAsync(admin, id, default)).Cleared);

        Time.Advance(TimeSpan.FromSeconds(1));
        var cleared = await alarms.ClearAsync(admin, id, default);
        Assert.Equal((true, T0 + 3000, "CLEARED_ACK"), (cleared.Cleared, cleared.ClearTs, cleared.StatusName));
        Assert.Equal(400, (await Assert.ThrowsAsync<PlatformException>(() => alarms.ClearAsync(admin, id, default))).Status);

        await alarms.DeleteAsync(admin, id, default);
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.GetAsync(admin, id, default))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.DeleteAsync(admin, id, default))).Status);

        var log = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 50, SortProperty: "createdTime"));
        Assert.Equal(["ADDED", "ALARM_ACK", "ALARM_ASSIGNED", "ALARM_UNASSIGNED", "ALARM_CLEAR", "DELETED"],
            log.Data.Where(e => e.EntityType == "ALARM" && e.EntityId == id.ToString()).Select(e => e.ActionType));
    }

    [Fact]
    public async Task Alarm_BadInput_IsRefused_AndStoresNothing()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var alarms = NewAlarmService();
        var admin = TenantAdmin(tenant.Id);
        foreach (var (type, details) in new[] { ("", (string?)null), ("  ", null), (new string('t', 256), null), ("nul\0type", null), ("ok", "{\"a\":"),
            ("ok", new string('[', 40) + new string(']', 40)), ("ok", "\"" + new string('x', AlarmService.MaxDetailsLength) + "\"") })
        {
            var e = await Assert.ThrowsAsync<PlatformException>(() => alarms.RaiseAsync(tenant.Id, device.Id, type, AlarmSeverity.Major, details, T0));
            Assert.Equal(400, e.Status);
            var save = await Assert.ThrowsAsync<PlatformException>(() => alarms.SaveAsync(admin, new AlarmDraft(null, device.Id, type, AlarmSeverity.Major, details), default));
            Assert.Equal(400, save.Status);
        }

        Assert.Equal(400, (await Assert.ThrowsAsync<PlatformException>(() =>
            alarms.SaveAsync(admin, new AlarmDraft(null, device.Id, "ok", AlarmSeverity.Major, null, StartTs: T0, EndTs: T0 - 1), default))).Status);
        // An unknown device, or another tenant's, is not found.
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() => alarms.RaiseAsync(tenant.Id, Guid.NewGuid(), "ok", AlarmSeverity.Major, null, T0))).Status);
        var (other, _, _) = await NewTenantWithDeviceAsync();
        Assert.Equal(404, (await Assert.ThrowsAsync<PlatformException>(() =>
            alarms.SaveAsync(TenantAdmin(other.Id), new AlarmDraft(null, device.Id, "ok", AlarmSeverity.Major), default))).Status);
        Assert.Equal(0, (await alarms.QueryAsync(admin, new AlarmQuery(new PageRequest()), default)).TotalElements);
    }

    [Fact]
    public async Task Alarm_QueriesPageFilterAndSort_WithinTheTenant()
    {
        var (tenant, profile, boiler) = await NewTenantWithDeviceAsync("boiler");
        var pump = await NewDeviceAsync(tenant.Id, profile.Id, "pump");
        var alarms = NewAlarmService();
        var admin = TenantAdmin(tenant.Id);
        var severities = new[] { AlarmSeverity.Critical, AlarmSeverity.Major, AlarmSeverity.Minor, AlarmSeverity.Warning, AlarmSeverity.Indeterminate };
        for (var i = 0; i < 10; i++)
        {
            Time.Advance(TimeSpan.FromMilliseconds(1));
            await alarms.RaiseAsync(tenant.Id, i % 2 == 0 ? boiler.Id : pump.Id, "type-" + i, severities[i % 5], null, T0 + i);
        }

        // type-0..3 cleared, type-0, 1, 4, 5 acknowledged.
        foreach (var i in new[] { 0, 1, 4, 5 })
        {
            var found = (await alarms.QueryAsync(admin, new AlarmQuery(new PageRequest(TextSearch: "type-" + i)), default)).Data.Single();
            await alarms.AckAsync(admin, found.Alarm.Id, default);
        }

        for (var i = 0; i < 4; i++)
        {
            await alarms.ClearAsync(tenant.Id, i % 2 == 0 ? boiler.Id : pump.Id, "type-" + i, T0 + 100);
        }

        async Task<string[]> Types(AlarmQuery query) => [.. (await alarms.QueryAsync(admin, query, default)).Data.Select(a => a.Alarm.Type)];

        var newestFirst = await alarms.QueryAsync(admin, new AlarmQuery(new PageRequest(PageSize: 4)), default);
        Assert.Equal((10L, 3, true), (newestFirst.TotalElements, newestFirst.TotalPages, newestFirst.HasNext));
        Assert.Equal(["type-9", "type-8", "type-7", "type-6"], newestFirst.Data.Select(a => a.Alarm.Type));
        Assert.Equal(["type-1", "type-0"], await Types(new AlarmQuery(new PageRequest(PageSize: 4, Page: 2))));
        Assert.Equal(["type-0", "type-2", "type-4", "type-6", "type-8"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "createdTime"), boiler.Id)));

        var activeUnack = new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type"), Status: new AlarmStatusFilter(false, false));
        Assert.Equal(["type-6", "type-7", "type-8", "type-9"], await Types(activeUnack));
        Assert.Equal(["type-0", "type-1"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type"), Status: new AlarmStatusFilter(true, true))));
        Assert.Equal(["type-0", "type-1", "type-4", "type-5"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type"), Status: new AlarmStatusFilter(null, true))));

        Assert.Equal(["type-0", "type-1", "type-5", "type-6"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type"),
            Severities: [AlarmSeverity.Critical, AlarmSeverity.Major])));
        Assert.Equal(["type-3", "type-7"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type"), Types: ["type-3", "type-7", "nope"])));
        Assert.Equal(["type-1", "type-3", "type-5", "type-7", "type-9"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type", TextSearch: "PUMP"))));
        Assert.Equal(["type-3", "type-8"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "type", TextSearch: "warn"))));

        // Severity sorts CRITICAL first when descending, as ThingsBoard's list does; ties newest first by seq.
        var bySeverity = await Types(new AlarmQuery(new PageRequest(PageSize: 3, SortProperty: "severity", Descending: true)));
        Assert.Equal(["type-5", "type-0", "type-6"], bySeverity);

        // createdTime range: the fake clock moved 1 ms per raise from T0.
        Assert.Equal(["type-2", "type-3", "type-4"], await Types(new AlarmQuery(new PageRequest(PageSize: 10, SortProperty: "createdTime"), StartTime: T0 + 3, EndTime: T0 + 5)));

        Assert.Equal(AlarmSeverity.Critical, await alarms.HighestSeverityAsync(admin, new AlarmQuery(new PageRequest(), boiler.Id), default));
        Assert.Equal(AlarmSeverity.Critical, await alarms.HighestSeverityAsync(admin, new AlarmQuery(new PageRequest(), pump.Id, new AlarmStatusFilter(false, null)), default));
        Assert.Equal(AlarmSeverity.Major, await alarms.HighestSeverityAsync(admin, new AlarmQuery(new PageRequest(), boiler.Id, new AlarmStatusFilter(false, false)), default));
        Assert.Equal(AlarmSeverity.Indeterminate, await alarms.HighestSeverityAsync(admin, new AlarmQuery(new PageRequest(), boiler.Id, new AlarmStatusFilter(false, true)), default));
        Assert.Equal(AlarmSeverity.Minor, await alarms.HighestSeverityAsync(admin, new AlarmQuery(new PageRequest(), boiler.Id, new AlarmStatusFilter(true, false)), default));
        var quiet = await NewDeviceAsync(tenant.Id, profile.Id, "quiet");
        Assert.Null(await alarms.HighestSeverityAsync(admin, new AlarmQuery(new PageRequest(), quiet.Id), default));
        Assert.Equal(4, await alarms.CountAsync(admin, activeUnack, default));

        var (other, _, _) = await NewTenantWithDeviceAsync();
        Assert.Null(await alarms.HighestSeverityAsync(TenantAdmin(other.Id), new AlarmQuery(new PageRequest(), boiler.Id), default));
        Assert.Equal(0, await alarms.CountAsync(TenantAdmin(other.Id), new AlarmQuery(new PageRequest()), default));
    }

    [Fact]
    public async Task Alarm_LiveFeed_HearsEachCommittedChange_InOrder_OfItsTenantOnly()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var (other, _, otherDevice) = await NewTenantWithDeviceAsync();
        var feed = new AlarmFeed();
        var heard = new AlarmRecorder(tenant.Id);
        feed.Add(heard);
        var alarms = NewAlarmService(feed);
        await alarms.RaiseAsync(other.Id, otherDevice.Id, "Elsewhere", AlarmSeverity.Major, null, T0);
        var id = (await alarms.RaiseAsync(tenant.Id, device.Id, "Smoke", AlarmSeverity.Major, null, T0)).Alarm!.Id;
        await alarms.RaiseAsync(tenant.Id, device.Id, "Smoke", AlarmSeverity.Major, null, T0);
        await alarms.AckAsync(TenantAdmin(tenant.Id), id, default);
        await alarms.ClearAsync(tenant.Id, device.Id, "Smoke", T0 + 1);
        await alarms.DeleteAsync(TenantAdmin(tenant.Id), id, default);
        feed.Remove(heard);
        await alarms.RaiseAsync(tenant.Id, device.Id, "Smoke", AlarmSeverity.Major, null, T0 + 2);

        Assert.Equal([(AlarmChangeKind.Created, "ACTIVE_UNACK"), (AlarmChangeKind.Updated, "ACTIVE_ACK"), (AlarmChangeKind.Updated, "CLEARED_ACK"), (AlarmChangeKind.Deleted, "CLEARED_ACK")],
            heard.Events.Select(e => (e.Kind, e.Info.Alarm.StatusName)));
        Assert.All(heard.Events, e => Assert.Equal((id, device.Name), (e.Info.Alarm.Id, e.Info.OriginatorName)));
    }

    private sealed class AlarmRecorder(Guid tenantId) : IAlarmSubscriber
    {
        public List<AlarmEvent> Events { get; } = [];

        public Guid TenantId => tenantId;

        public void OnAlarm(AlarmEvent change)
        {
            lock (Events)
            {
                Events.Add(change);
            }
        }
    }
}
