using Taihu.Platform.Rpc;

namespace Taihu.Platform.Tests;

/// <summary>Persistent RPC calls: stored with their state, listed per device (paged, filtered, sorted), never across tenants.</summary>
public abstract partial class StorageTests
{
    private PersistentRpc NewCall(Guid tenantId, Guid deviceId, int requestId, string method = "setGpio", long createdTime = T0, RpcStatus status = RpcStatus.Queued) =>
        new(Guid.CreateVersion7(), tenantId, deviceId, requestId, method, "{\"pin\":4}", false, 10_000, createdTime + 60_000, 5, 0, status, null, "{\"by\":\"test\"}", createdTime);

    [Fact]
    public async Task Rpc_CallRoundTrips_AndMovesThroughItsStates()
    {
        var tenant = await NewTenantAsync();
        var device = await NewDeviceAsync(tenant.Id, (await NewProfileAsync(tenant.Id, isDefault: true)).Id);
        var store = new SqlRpcStore(Database, Time);
        var call = NewCall(tenant.Id, device.Id, 1);
        await store.InsertAsync(call);
        // Read back with the time of its last change: made at its creation.
        Assert.Equal(call with { UpdatedTime = call.CreatedTime }, await store.GetAsync(tenant.Id, call.Id));

        Assert.True(await store.UpdateAsync(call.Id, RpcStatus.Queued, RpcStatus.Sent, 1, null));
        Time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(await store.UpdateAsync(call.Id, RpcStatus.Sent, RpcStatus.Successful, 1, "{\"ok\":true}"));
        Assert.Equal(call with { Status = RpcStatus.Successful, Attempts = 1, ResponseJson = "{\"ok\":true}", UpdatedTime = Time.GetUtcNow().ToUnixTimeMilliseconds() },
            await store.GetAsync(tenant.Id, call.Id));
        Assert.False(await store.UpdateAsync(Guid.NewGuid(), RpcStatus.Queued, RpcStatus.Sent, 1, null));

        // A move from a state the call is no longer in (another node's owner moved it) changes nothing.
        Assert.False(await store.UpdateAsync(call.Id, RpcStatus.Sent, RpcStatus.Expired, 1, null));
        Assert.False(await store.UpdateAsync(call.Id, RpcStatus.Queued, RpcStatus.Expired, 1, null));
        Assert.Equal(RpcStatus.Successful, (await store.GetAsync(tenant.Id, call.Id))!.Status);
    }

    [Fact]
    public async Task Rpc_ActiveCallsComeInTheOrderMade_AndRequestIdsGoOnFromTheHighest()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, isDefault: true);
        var device = await NewDeviceAsync(tenant.Id, profile.Id);
        var other = await NewDeviceAsync(tenant.Id, profile.Id);
        var store = new SqlRpcStore(Database, Time);
        Assert.Equal(0, await store.MaxRequestIdAsync(device.Id));
        var calls = new List<PersistentRpc>();
        for (var i = 1; i <= 4; i++)
        {
            // All in one millisecond: the order they were stored in is what counts.
            calls.Add(NewCall(tenant.Id, device.Id, i));
            await store.InsertAsync(calls[^1]);
        }

        await store.InsertAsync(NewCall(tenant.Id, other.Id, 9));
        await store.UpdateAsync(calls[1].Id, RpcStatus.Queued, RpcStatus.Successful, 1, "{}");
        await store.UpdateAsync(calls[2].Id, RpcStatus.Queued, RpcStatus.Delivered, 1, null);

        Assert.Equal([1, 3, 4], (await store.ListActiveAsync(device.Id)).Select(c => c.RequestId));
        Assert.Equal(4, await store.MaxRequestIdAsync(device.Id));
        Assert.Equal(9, await store.MaxRequestIdAsync(other.Id));
        var active = await store.DevicesWithActiveCallsAsync();
        Assert.Contains((tenant.Id, device.Id), active);
        Assert.Contains((tenant.Id, other.Id), active);
    }

    [Fact]
    public async Task Rpc_ListPagesFiltersAndSorts_WithinTheTenant()
    {
        var tenant = await NewTenantAsync();
        var device = await NewDeviceAsync(tenant.Id, (await NewProfileAsync(tenant.Id, isDefault: true)).Id);
        var store = new SqlRpcStore(Database, Time);
        for (var i = 1; i <= 25; i++)
        {
            await store.InsertAsync(NewCall(tenant.Id, device.Id, i, method: i % 2 == 0 ? "even" : "odd", createdTime: T0 + i,
                status: i <= 5 ? RpcStatus.Successful : RpcStatus.Queued));
        }

        var first = await store.ListAsync(tenant.Id, device.Id, null, new PageRequest(PageSize: 10));
        Assert.Equal((25L, 3, true), (first.TotalElements, first.TotalPages, first.HasNext));
        Assert.Equal(Enumerable.Range(16, 10).Reverse(), first.Data.Select(c => c.RequestId));

        var last = await store.ListAsync(tenant.Id, device.Id, null, new PageRequest(PageSize: 10, Page: 2, SortProperty: "createdTime"));
        Assert.Equal(Enumerable.Range(21, 5), last.Data.Select(c => c.RequestId));
        Assert.False(last.HasNext);

        var done = await store.ListAsync(tenant.Id, device.Id, RpcStatus.Successful, new PageRequest(PageSize: 100, SortProperty: "createdTime"));
        Assert.Equal([1, 2, 3, 4, 5], done.Data.Select(c => c.RequestId));
        var even = await store.ListAsync(tenant.Id, device.Id, RpcStatus.Queued, new PageRequest(PageSize: 100, TextSearch: "EVEN", SortProperty: "requestId"));
        Assert.Equal(Enumerable.Range(6, 20).Where(i => i % 2 == 0), even.Data.Select(c => c.RequestId));

        var stranger = await NewTenantAsync();
        Assert.Empty((await store.ListAsync(stranger.Id, device.Id, null, new PageRequest())).Data);
        var one = first.Data[0];
        Assert.Null(await store.GetAsync(stranger.Id, one.Id));
        Assert.False(await store.DeleteAsync(stranger.Id, one.Id));
        Assert.True(await store.DeleteAsync(tenant.Id, one.Id));
        Assert.Null(await store.GetAsync(tenant.Id, one.Id));
    }

    [Fact]
    public async Task Rpc_CallsGoWithTheirDevice()
    {
        var tenant = await NewTenantAsync();
        var device = await NewDeviceAsync(tenant.Id, (await NewProfileAsync(tenant.Id, isDefault: true)).Id);
        var store = new SqlRpcStore(Database, Time);
        var call = NewCall(tenant.Id, device.Id, 1);
        await store.InsertAsync(call);
        Assert.True(await Devices.DeleteDeviceAsync(tenant.Id, device.Id));
        Assert.Null(await store.GetAsync(tenant.Id, call.Id));
        Assert.Empty(await store.ListActiveAsync(device.Id));
    }
}
