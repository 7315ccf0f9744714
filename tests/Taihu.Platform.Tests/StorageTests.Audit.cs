using Taihu.Platform.Audit;

namespace Taihu.Platform.Tests;

/// <summary>The audit log: newest first, paged, filtered by time and text, never across tenants.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Audit_ListsOnlyTheTenantsOwnEntries()
    {
        var a = await NewTenantAsync();
        var b = await NewTenantAsync();
        await Audit.WriteAsync(TenantAdmin(a.Id), "ADDED", "DEVICE", "1", "a-device");
        await Audit.WriteAsync(TenantAdmin(b.Id), "ADDED", "DEVICE", "2", "b-device");
        await Audit.WriteAsync(SysAdmin(), "ADDED", "TENANT", a.Id.ToString(), a.Title);

        Assert.Equal(["a-device"], (await Audit.ListAsync(a.Id, new PageRequest())).Data.Select(e => e.EntityName));
        Assert.Equal(["b-device"], (await Audit.ListAsync(b.Id, new PageRequest())).Data.Select(e => e.EntityName));
        Assert.Equal([a.Title], (await Audit.ListAsync(null, new PageRequest())).Data.Select(e => e.EntityName));
        Assert.Empty((await Audit.ListAsync(Guid.NewGuid(), new PageRequest())).Data);
    }

    [Fact]
    public async Task Audit_EntryRoundTrips()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id, "jane@example.com");
        await Audit.WriteAsync(caller, "DELETED", "DEVICE", "dev-1", "meter", failure: "Device is in use.");

        var entry = Assert.Single((await Audit.ListAsync(tenant.Id, new PageRequest())).Data);
        Assert.Equal(new AuditEntry(entry.Id, tenant.Id, caller.UserId, "jane@example.com", "DELETED", "DEVICE", "dev-1", "meter", false, "Device is in use.", T0), entry);
        Assert.NotEqual(Guid.Empty, entry.Id);
    }

    [Fact]
    public async Task Audit_PagesNewestFirst()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id);
        for (var i = 0; i < 25; i++)
        {
            await Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, $"entry-{i:D2}");
            Time.Advance(TimeSpan.FromSeconds(1));
        }

        var first = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 10));
        Assert.Equal(25, first.TotalElements);
        Assert.Equal(3, first.TotalPages);
        Assert.True(first.HasNext);
        Assert.Equal(Enumerable.Range(15, 10).Reverse().Select(i => $"entry-{i:D2}"), first.Data.Select(e => e.EntityName));

        var last = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 10, Page: 2));
        Assert.False(last.HasNext);
        Assert.Equal(["entry-04", "entry-03", "entry-02", "entry-01", "entry-00"], last.Data.Select(e => e.EntityName));

        var ascending = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 3, SortProperty: "createdTime"));
        Assert.Equal(["entry-00", "entry-01", "entry-02"], ascending.Data.Select(e => e.EntityName));
    }

    [Fact]
    public async Task Audit_EntriesOfOneMillisecond_KeepTheOrderTheyWereWritten()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id);
        await Audit.WriteAsync(caller, "ADDED", "DEVICE", null, "first");
        await Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, "second");
        await Audit.WriteAsync(caller, "DELETED", "DEVICE", null, "third");

        Assert.Equal(["third", "second", "first"], (await Audit.ListAsync(tenant.Id, new PageRequest())).Data.Select(e => e.EntityName));
        Assert.Equal(["first", "second", "third"],
            (await Audit.ListAsync(tenant.Id, new PageRequest(SortProperty: "createdTime"))).Data.Select(e => e.EntityName));
    }

    [Fact]
    public async Task Audit_FiltersByTimeRange()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id);
        for (var i = 0; i < 5; i++)
        {
            await Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, $"e{i}");
            Time.Advance(TimeSpan.FromMilliseconds(100));
        }

        var page = await Audit.ListAsync(tenant.Id, new PageRequest(), startTime: T0 + 100, endTime: T0 + 300);
        Assert.Equal(["e3", "e2", "e1"], page.Data.Select(e => e.EntityName));
        Assert.Equal(3, page.TotalElements);
        Assert.Equal(["e1", "e0"], (await Audit.ListAsync(tenant.Id, new PageRequest(), endTime: T0 + 100)).Data.Select(e => e.EntityName));
        Assert.Equal(["e4"], (await Audit.ListAsync(tenant.Id, new PageRequest(), startTime: T0 + 400)).Data.Select(e => e.EntityName));
    }

    [Fact]
    public async Task Audit_TextSearch_MatchesEntityActionOrUser_WildcardsLiteral()
    {
        var tenant = await NewTenantAsync();
        await Audit.WriteAsync(TenantAdmin(tenant.Id, "alice@example.com"), "ADDED", "DEVICE", null, "Boiler_1");
        await Audit.WriteAsync(TenantAdmin(tenant.Id, "bob@example.com"), "DELETED", "DEVICE", null, "BoilerX1");
        await Audit.WriteAsync(TenantAdmin(tenant.Id, "carol@example.com"), "LOGIN", null, null, null);

        static string[] Names(Page<AuditEntry> page) => page.Data.Select(e => e.EntityName ?? "").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["BoilerX1", "Boiler_1"], Names(await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: "boiler"))));
        Assert.Equal(["Boiler_1"], Names(await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: "r_1"))));
        Assert.Equal(["BoilerX1"], Names(await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: "deleted"))));
        Assert.Equal(["Boiler_1"], Names(await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: "ALICE"))));
        var login = await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: "carol"));
        Assert.Equal("LOGIN", Assert.Single(login.Data).ActionType);
        Assert.Empty((await Audit.ListAsync(tenant.Id, new PageRequest(TextSearch: "%"))).Data);
    }

    [Fact]
    public async Task Audit_ManyWritersAtOnce_AllWritten_InTheOrderTheyWereQueued()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id);
        // More than one group's worth, queued from one thread so the queue order is known, awaited together.
        var writes = new List<Task>();
        for (var i = 0; i < SqlAuditLog.MaxBatch + 300; i++)
        {
            writes.Add(Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, $"e{i:D4}"));
        }

        await Task.WhenAll(writes);
        var page = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 10_000, SortProperty: "createdTime"));
        Assert.Equal(writes.Count, page.TotalElements);
        Assert.Equal(Enumerable.Range(0, writes.Count).Select(i => $"e{i:D4}"), page.Data.Select(e => e.EntityName));
    }

    [Fact]
    public async Task Audit_TextThatCannotBeStored_IsReplaced_NotRefused()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id, "nul\0user");
        await Task.WhenAll(
            Audit.WriteAsync(caller, "UPDATED", "DEVICE", "id\0", "name\0", failure: "why\0"),
            Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, "plain"));

        var entries = (await Audit.ListAsync(tenant.Id, new PageRequest(SortProperty: "createdTime"))).Data;
        Assert.Equal(["name\uFFFD", "plain"], entries.Select(e => e.EntityName));
        Assert.Equal("nul\uFFFDuser", entries[0].UserName);
        Assert.Equal("id\uFFFD", entries[0].EntityId);
        Assert.Equal("why\uFFFD", entries[0].FailureDetails);
    }

    [Fact]
    public async Task Audit_AppendedDrafts_AreWrittenAsText_InOrderWithTheOthers()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id, "rpc@example.com");
        var deviceId = Guid.NewGuid();
        Audit.Append(new AuditDraft(caller, "RPC_CALL", "DEVICE", deviceId, new AuditText("two-way ", "getValue", " to ", "meter-1")));
        await Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, "between");
        Audit.Append(new AuditDraft(caller, "RPC_CALL", "DEVICE", deviceId, new AuditText("one-way ", "reboot", " to ", "meter\0-1"), "The device is not connected."));
        // Entries are written in the order they were queued: once this one is written, the drafts before it are too.
        await Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, "last");

        var entries = (await Audit.ListAsync(tenant.Id, new PageRequest(SortProperty: "createdTime"))).Data;
        Assert.Equal(["two-way getValue to meter-1", "between", "one-way reboot to meter\uFFFD-1", "last"], entries.Select(e => e.EntityName));
        Assert.Equal(new AuditEntry(entries[0].Id, tenant.Id, caller.UserId, "rpc@example.com", "RPC_CALL", "DEVICE", deviceId.ToString(), "two-way getValue to meter-1", true, null, T0),
            entries[0]);
        Assert.False(entries[2].Success);
        Assert.Equal("The device is not connected.", entries[2].FailureDetails);
    }

    [Fact]
    public async Task Audit_ManyAppendedDrafts_AllWritten_InOrder()
    {
        var tenant = await NewTenantAsync();
        var caller = TenantAdmin(tenant.Id);
        // More than one group's worth, as a thousand lightweight RPC calls a second queue them.
        var count = SqlAuditLog.MaxBatch + 300;
        for (var i = 0; i < count; i++)
        {
            Audit.Append(new AuditDraft(caller, "RPC_CALL", "DEVICE", Guid.Empty, new AuditText("call ", i.ToString("D4", System.Globalization.CultureInfo.InvariantCulture))));
        }

        await Audit.WriteAsync(caller, "UPDATED", "DEVICE", null, "after");
        var page = await Audit.ListAsync(tenant.Id, new PageRequest(PageSize: 10_000, SortProperty: "createdTime"));
        Assert.Equal(Enumerable.Range(0, count).Select(i => $"call {i:D4}").Append("after"), page.Data.Select(e => e.EntityName));
    }
}
