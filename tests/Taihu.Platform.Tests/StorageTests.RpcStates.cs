using Microsoft.Extensions.Logging.Abstractions;
using Taihu.Broker;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>
/// The time-driven states of RPC calls, on a fake clock: EXPIRED, TIMEOUT, a missing acknowledgement resent
/// until the retries are used up (FAILED), and a lightweight call's timeout. The device is reached through the
/// HTTP long poll of the real <see cref="RpcDeviceLink"/>; "delivered" is the poll's delivery listener, which
/// the HTTP endpoint calls once it has written the command. The owner's mailbox is the sync point
/// (<see cref="RpcService.IdleAsync"/>).
/// </summary>
public abstract partial class StorageTests
{
    private static readonly TimeSpan LongPoll = TimeSpan.FromDays(1);

    private async Task<(RpcService Rpc, RpcDeviceLink Link, Device Device, Caller Caller, IRpcStore Store, MqttBroker Broker)> NewRpcAsync()
    {
        var tenant = await NewTenantAsync();
        var device = await NewDeviceAsync(tenant.Id, (await NewProfileAsync(tenant.Id, isDefault: true)).Id);
        // A real broker with no listener: nothing is connected over MQTT, so commands go to HTTP polls.
        var broker = new MqttBroker(new BrokerOptions(), Time, new BrokerMetrics());
        var link = new RpcDeviceLink(broker);
        var store = new SqlRpcStore(Database, Time);
        var rpc = new RpcService(store, Audit, Devices, link, Time, NullLogger<RpcService>.Instance);
        return (rpc, link, device, TenantAdmin(tenant.Id), store, broker);
    }

    private static RpcRequest Request(string method, bool oneWay, long now, long timeout = 10_000, long? expiration = null, int retries = 5, bool persistent = true) =>
        new(method, "{}", oneWay, timeout, expiration ?? now + timeout, persistent, retries, null);

    private long Now => Time.GetUtcNow().ToUnixTimeMilliseconds();

    [Fact]
    public async Task RpcStates_AQueuedCallExpires_AtItsExpirationTime()
    {
        var (rpc, _, device, caller, store, broker) = await NewRpcAsync();
        using var _ = broker;
        var call = await rpc.SubmitAsync(caller, device, Request("late", oneWay: true, Now, expiration: Now + 60_000));
        Time.Advance(TimeSpan.FromSeconds(59));
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Queued, (await store.GetAsync(device.TenantId, call.Id))!.Status);

        Time.Advance(TimeSpan.FromSeconds(1));
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Expired, (await store.GetAsync(device.TenantId, call.Id))!.Status);
    }

    [Fact]
    public async Task RpcStates_ADeliveredTwoWayCallWithoutReply_TimesOut_AndALateReplyFindsItFinished()
    {
        var (rpc, link, device, caller, store, broker) = await NewRpcAsync();
        using var _ = broker;
        var poll = link.WaitForCommandAsync(device.Id, LongPoll, Time, () => rpc.Reachable(device), CancellationToken.None);
        var call = await rpc.SubmitAsync(caller, device, Request("read", oneWay: false, Now, timeout: 10_000, expiration: Now + 3_600_000));
        var command = (await poll)!;
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Sent, (await store.GetAsync(device.TenantId, call.Id))!.Status);

        command.Listener.OnDelivered(Mqtt.QoS.AtMostOnce);
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Delivered, (await store.GetAsync(device.TenantId, call.Id))!.Status);

        Time.Advance(TimeSpan.FromSeconds(10));
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Timeout, (await store.GetAsync(device.TenantId, call.Id))!.Status);
        Assert.Equal(RpcReplyResult.Finished, await rpc.ReplyAsync(device, call.RequestId, "{}"u8));
        Assert.Equal(RpcReplyResult.Unknown, await rpc.ReplyAsync(device, call.RequestId + 1, "{}"u8));
    }

    [Fact]
    public async Task RpcStates_ADeliveredCall_TakenBackAfterARestart_TimesOutFromItsDelivery()
    {
        var (rpc, _, device, _, store, broker) = await NewRpcAsync();
        using var _ = broker;
        // Delivered 4 s ago by a process that is gone (its row as that process left it: updated when delivered).
        var delivered = Now - 4_000;
        var call = new PersistentRpc(Guid.CreateVersion7(), device.TenantId, device.Id, 7, "read", "{}", OneWay: false, TimeoutMs: 10_000,
            ExpirationTime: Now + 3_600_000, Retries: 5, Attempts: 1, RpcStatus.Delivered, null, null, delivered);
        await store.InsertAsync(call);

        Assert.Equal(1, await rpc.ResumeAsync(CancellationToken.None));
        await rpc.IdleAsync(device);

        // Its reply timeout runs from the delivery: 6 s from now, not 10.
        Time.Advance(TimeSpan.FromSeconds(5));
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Delivered, (await store.GetAsync(device.TenantId, call.Id))!.Status);
        Time.Advance(TimeSpan.FromSeconds(1));
        await rpc.IdleAsync(device);
        Assert.Equal(RpcStatus.Timeout, (await store.GetAsync(device.TenantId, call.Id))!.Status);

        // Request ids go on after it, and a late reply finds it finished.
        Assert.Equal(RpcReplyResult.Finished, await rpc.ReplyAsync(device, 7, "{}"u8));
    }

    [Fact]
    public async Task RpcStates_AMissingAcknowledgement_IsResent_UntilTheRetriesAreUsedUp()
    {
        var (rpc, link, device, caller, store, broker) = await NewRpcAsync();
        using var _ = broker;
        var first = link.WaitForCommandAsync(device.Id, LongPoll, Time, () => rpc.Reachable(device), CancellationToken.None);
        var call = await rpc.SubmitAsync(caller, device, Request("flaky", oneWay: true, Now, timeout: 10_000, expiration: Now + 3_600_000, retries: 1));
        Assert.NotNull(await first);

        // Never acknowledged: after the timeout it goes to the next poll (a retry).
        var second = link.WaitForCommandAsync(device.Id, LongPoll, Time, () => { }, CancellationToken.None);
        Time.Advance(TimeSpan.FromSeconds(10));
        Assert.NotNull(await second);
        await rpc.IdleAsync(device);
        var resent = (await store.GetAsync(device.TenantId, call.Id))!;
        Assert.Equal((RpcStatus.Sent, 2), (resent.Status, resent.Attempts));

        // Again no acknowledgement and no retries left: FAILED.
        Time.Advance(TimeSpan.FromSeconds(10));
        await rpc.IdleAsync(device);
        var failed = (await store.GetAsync(device.TenantId, call.Id))!;
        Assert.Equal((RpcStatus.Failed, 2), (failed.Status, failed.Attempts));
    }

    [Fact]
    public async Task RpcStates_ALightweightCall_TimesOut_ThenItsReplyIsRefusedAsFinished()
    {
        var (rpc, link, device, caller, _, broker) = await NewRpcAsync();
        using var _ = broker;
        Assert.Equal(RpcOutcomeKind.NotConnected, (await rpc.CallAsync(caller, device, Request("now", false, Now, persistent: false), CancellationToken.None)).Kind);

        var poll = link.WaitForCommandAsync(device.Id, LongPoll, Time, () => { }, CancellationToken.None);
        var pending = rpc.CallAsync(caller, device, Request("slow", false, Now, timeout: 5_000, persistent: false), CancellationToken.None);
        var command = (await poll)!;
        var requestId = System.Text.Json.JsonDocument.Parse(command.Payload).RootElement.GetProperty("id").GetInt32();
        Time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(RpcOutcomeKind.TimedOut, (await pending).Kind);
        await rpc.IdleAsync(device);
        Assert.Equal(RpcReplyResult.Finished, await rpc.ReplyAsync(device, requestId, "{}"u8));

        // One that is answered in time returns the reply.
        poll = link.WaitForCommandAsync(device.Id, LongPoll, Time, () => { }, CancellationToken.None);
        pending = rpc.CallAsync(caller, device, Request("fast", false, Now, persistent: false), CancellationToken.None);
        requestId = System.Text.Json.JsonDocument.Parse((await poll)!.Payload).RootElement.GetProperty("id").GetInt32();
        Assert.Equal(RpcReplyResult.Accepted, await rpc.ReplyAsync(device, requestId, "{\"v\":1}"u8));
        Assert.Equal(new RpcOutcome(RpcOutcomeKind.Replied, "{\"v\":1}"), await pending);
    }
}
