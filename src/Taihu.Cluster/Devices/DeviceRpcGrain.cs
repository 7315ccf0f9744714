using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Runtime;
using Taihu.Platform;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Rpc;
using Taihu.Platform.Tenants;

namespace Taihu.Cluster.Devices;

/// <summary>
/// The one owner of a device's RPC state on a cluster (keyed by the device's id): its request ids, its lightweight
/// calls waiting for an answer, and its persistent calls in order, with their timers. Every node's API and every
/// node's device connection hand it their part (<see cref="RpcOwnersAcrossNodes"/>); it sends through the node the
/// device is connected to (<see cref="INodeDeviceService.SendRpc"/>).
/// </summary>
public interface IDeviceRpcGrain : IGrainWithGuidKey
{
    /// <summary>A lightweight call; answered by the device's reply or delivery, or by the call's own timeout (at most a day).</summary>
    [ResponseTimeout("1.00:01:00")]
    Task<RemoteRpcOutcome> Call(Guid tenantId, RemoteRpcRequest request);

    /// <summary>Stores a persistent call (QUEUED) and sends it if the device is reachable: its id (empty when the device is gone).</summary>
    Task<Guid> Submit(RemoteCaller caller, Guid tenantId, RemoteRpcRequest request);

    /// <summary>The device's reply to call <paramref name="requestId"/>: an <see cref="RpcReplyResult"/>.</summary>
    Task<int> Reply(Guid tenantId, int requestId, string replyJson, bool failed);

    /// <summary>The device can be reached through <paramref name="node"/> now: what waits is sent there.</summary>
    [OneWay]
    Task Reachable(Guid tenantId, SiloAddress node);

    /// <summary>The device lost a connection to <paramref name="node"/>: calls sent there and not acknowledged are sent again (retries).</summary>
    [OneWay]
    Task Unreachable(Guid tenantId, SiloAddress node);

    /// <summary>Send <paramref name="epoch"/> of call <paramref name="requestId"/> reached the device.</summary>
    [OneWay]
    Task Delivered(int requestId, int epoch);

    [OneWay]
    Task Deleted(Guid tenantId, Guid callId);

    /// <summary>Takes the device's calls not final from the store (once per activation) and sends what waits.</summary>
    Task Wake(Guid tenantId);
}

/// <summary>
/// Hosts the device's <see cref="DeviceRpcOwner"/>, the same owner a single server keeps in its RPC service: the
/// owner orders its work itself (its mailbox), so the grain is reentrant and only hands work on. It is placed on
/// the node that first needs it (the device's, or the API's), and stays while it holds calls: an activation lost
/// with its node is activated again by the dead node's successor, which wakes every device with calls not final,
/// and its state comes back from the store.
/// </summary>
[Reentrant]
[PreferLocalPlacement]
internal sealed partial class DeviceRpcGrain(IRpcStore store, IAuditLog audit, TimeProvider time, ILogger<DeviceRpcGrain> logger, DeviceDirectory devices,
    OnNode<INodeDeviceService> nodes) : Grain, IDeviceRpcGrain, IRpcOwnerHost
{
    /// <summary>How long a node has to say whether it sent a command.</summary>
    private static readonly TimeSpan s_offerTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How often an activation looks whether it still holds calls.</summary>
    private static readonly TimeSpan s_idleCheck = TimeSpan.FromMinutes(5);

    private DeviceRpcOwner? _owner;

    // The node the device was last reached through: offered a send first. Read by the owner's work, set by Reachable.
    private volatile SiloAddress? _route;

    // The node the latest persistent call was sent through: its calls not acknowledged are lost when the device is
    // reached through another node, or that node is gone (it cannot say it lost the device).
    private volatile SiloAddress? _sentThrough;

    // Whether every node was told that the device has calls waiting (read and set by the owner's work only).
    private bool _waitingTold;

    IRpcStore IRpcOwnerHost.Store => store;

    IAuditLog IRpcOwnerHost.Audit => audit;

    TimeProvider IRpcOwnerHost.Time => time;

    ILogger IRpcOwnerHost.Logger => logger;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // Kept while it holds calls (their expiries and reply timeouts are the owner's timers); let go once it holds none.
        DelayDeactivation(Timeout.InfiniteTimeSpan);
        this.RegisterGrainTimer(() =>
        {
            if (_owner is null || !_owner.HoldsCalls)
            {
                DeactivateOnIdle();
            }

            return Task.CompletedTask;
        }, new GrainTimerCreationOptions { DueTime = s_idleCheck, Period = s_idleCheck, KeepAlive = false });
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_owner is { } owner)
        {
            // No timer of this activation may act once another activation owns the device.
            await owner.CloseAsync().WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
        }
    }

    private async Task<(DeviceRpcOwner Owner, Device Device)?> OwnerAsync(Guid tenantId)
    {
        if (await devices.GetAsync(tenantId, this.GetPrimaryKey(), CancellationToken.None) is not { } device)
        {
            return null;
        }

        _owner ??= new DeviceRpcOwner(this, device);
        return (_owner, device);
    }

    public async Task<RemoteRpcOutcome> Call(Guid tenantId, RemoteRpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (await OwnerAsync(tenantId) is not var (owner, device))
        {
            return new RemoteRpcOutcome(RpcOutcomeKind.NotConnected, null);
        }

        var outcome = await owner.CallAsync(device, request.ToRequest(), CancellationToken.None);
        return new RemoteRpcOutcome(outcome.Kind, outcome.ReplyJson);
    }

    public async Task<Guid> Submit(RemoteCaller caller, Guid tenantId, RemoteRpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(request);
        if (await OwnerAsync(tenantId) is not var (owner, device))
        {
            return Guid.Empty;
        }

        return (await owner.SubmitAsync(caller.ToCaller(), device, request.ToRequest(persistent: true))).Id;
    }

    public async Task<int> Reply(Guid tenantId, int requestId, string replyJson, bool failed) =>
        await OwnerAsync(tenantId) is var (owner, device)
            ? (int)await owner.ReplyAsync(device, requestId, replyJson, failed)
            : (int)RpcReplyResult.Unknown;

    public async Task Reachable(Guid tenantId, SiloAddress node)
    {
        ArgumentNullException.ThrowIfNull(node);
        _route = node;
        if (await OwnerAsync(tenantId) is var (owner, device))
        {
            if (_sentThrough is { } through && !through.Equals(node))
            {
                // The device came back through another node: what the former one sent and had no acknowledgement for
                // is sent again here. The former node tells the same when it sees the connection go, if it lives: the
                // sends are this node's from now, so that is ignored, and one move costs one retry.
                _sentThrough = node;
                owner.Unreachable();
            }

            owner.Reachable(device);
        }
    }

    public async Task Unreachable(Guid tenantId, SiloAddress node)
    {
        if (_sentThrough is { } through && !through.Equals(node))
        {
            // Its calls went out through another node since: nothing in flight was lost with this connection.
            return;
        }

        if (await OwnerAsync(tenantId) is var (owner, _))
        {
            _sentThrough = null;
            owner.Unreachable();
        }
    }

    public Task Delivered(int requestId, int epoch)
    {
        // No owner: this activation never sent it (the one that did is gone); the call is sent again.
        _owner?.Delivered(requestId, epoch);
        return Task.CompletedTask;
    }

    public Task Deleted(Guid tenantId, Guid callId)
    {
        _owner?.Deleted(callId);
        return Task.CompletedTask;
    }

    public async Task Wake(Guid tenantId)
    {
        if (await OwnerAsync(tenantId) is var (owner, device))
        {
            if (_sentThrough is { } through && !nodes.IsActive(through))
            {
                // Woken after a death: calls sent through the dead node and not acknowledged are sent again.
                _sentThrough = null;
                owner.Unreachable();
            }

            owner.Reachable(device);
            await owner.IdleAsync();
        }
    }

    async ValueTask<bool> IRpcOwnerHost.TrySendAsync(DeviceRpcOwner owner, Device device, int requestId, string method, string paramsJson, int epoch)
    {
        var route = _route;
        if (route is not null && await OfferAsync(route, device, requestId, method, paramsJson, epoch))
        {
            Sent(route, epoch);
            return true;
        }

        // One node at a time, so that one send is made at most.
        foreach (var node in nodes.Active())
        {
            if (!node.Equals(route) && await OfferAsync(node, device, requestId, method, paramsJson, epoch))
            {
                _route = node;
                Sent(node, epoch);
                return true;
            }
        }

        return false;
    }

    private void Sent(SiloAddress node, int epoch)
    {
        if (epoch != 0)
        {
            _sentThrough = node;
        }
    }

    private async Task<bool> OfferAsync(SiloAddress node, Device device, int requestId, string method, string paramsJson, int epoch)
    {
        try
        {
            return await nodes.At(node).SendRpc(device.TenantId, device.Id, requestId, method, paramsJson, epoch).WaitAsync(s_offerTimeout);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
        {
            // A node dying, or too slow to say: taken as not sent (a send it made late is acknowledged as a retry's would be).
            LogOfferFailed(logger, device.Id, node, e);
            return false;
        }
    }

    void IRpcOwnerHost.CallsWaiting(Device device)
    {
        // Once per activation: a node never forgets a device it was told of (a restarted one reads them all from the
        // store), and a node where the device is connected but cannot take commands (not subscribed to RPC) would
        // otherwise wake the owner again at each telling, and be told again.
        if (_waitingTold)
        {
            return;
        }

        _waitingTold = true;
        foreach (var node in nodes.Active())
        {
            _ = nodes.At(node).CallsWaiting(device.TenantId, device.Id);
        }
    }

    [LoggerMessage(EventId = 2679, Level = LogLevel.Warning, Message = "Offering RPC command for device {DeviceId} to node {Node} failed")]
    private static partial void LogOfferFailed(ILogger logger, Guid deviceId, SiloAddress node, Exception exception);
}

/// <summary>
/// <see cref="IRpcOwners"/> on a cluster node: everything a node's API or a node's device connection does with a
/// device's RPC goes to the device's grain (<see cref="IDeviceRpcGrain"/>).
/// </summary>
/// <remarks>
/// A grain whose node dies while a call waits on it fails that call: the caller gets 503 (the device may have had
/// the command), never a hang. A reply is offered twice, since the second reaches the grain activated again
/// elsewhere, which finds a persistent call in the store (a lightweight call died with its owner).
/// </remarks>
internal sealed partial class RpcOwnersAcrossNodes(IGrainFactory grains, ILocalSiloDetails self, ILogger<RpcOwnersAcrossNodes> logger) : IRpcOwners
{
    private IDeviceRpcGrain Of(Guid deviceId) => grains.GetGrain<IDeviceRpcGrain>(deviceId);

    private static PlatformException OwnerUnavailable() =>
        PlatformException.Unavailable("The owner of the device's RPC calls could not be reached (a node of the cluster is failing); try again in a few seconds.");

    public async Task<RpcOutcome> CallAsync(Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(request);
        try
        {
            var outcome = await Of(device.Id).Call(device.TenantId, RemoteRpcRequest.Of(request)).WaitAsync(cancellationToken);
            return new RpcOutcome(outcome.Kind, outcome.ReplyJson);
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            LogOwnerUnreachable(logger, device.Id, e);
            throw OwnerUnavailable();
        }
    }

    public async Task<Guid> SubmitAsync(Caller caller, Device device, RpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(request);
        Guid id;
        try
        {
            id = await Of(device.Id).Submit(RemoteCaller.Of(caller), device.TenantId, RemoteRpcRequest.Of(request));
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            LogOwnerUnreachable(logger, device.Id, e);
            throw OwnerUnavailable();
        }

        return id != Guid.Empty ? id : throw PlatformException.NotFound("The device");
    }

    public async Task<RpcReplyResult> ReplyAsync(Device device, int requestId, string replyJson, bool failed)
    {
        ArgumentNullException.ThrowIfNull(device);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return (RpcReplyResult)await Of(device.Id).Reply(device.TenantId, requestId, replyJson, failed);
            }
            catch (Exception e) when (e is OrleansException or TimeoutException)
            {
                LogOwnerUnreachable(logger, device.Id, e);
                if (attempt == 2)
                {
                    throw OwnerUnavailable();
                }
            }
        }
    }

    public void Reachable(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        _ = Of(device.Id).Reachable(device.TenantId, self.SiloAddress);
    }

    public void Unreachable(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        _ = Of(device.Id).Unreachable(device.TenantId, self.SiloAddress);
    }

    public void Deleted(Device device, Guid callId)
    {
        ArgumentNullException.ThrowIfNull(device);
        _ = Of(device.Id).Deleted(device.TenantId, callId);
    }

    /// <summary>A device whose owner cannot be woken now is logged and left: the next sweep, or its next connect, wakes it.</summary>
    public async Task WakeAsync(Guid tenantId, Guid deviceId)
    {
        try
        {
            await Of(deviceId).Wake(tenantId);
        }
        catch (Exception e) when (e is OrleansException or TimeoutException)
        {
            LogOwnerUnreachable(logger, deviceId, e);
        }
    }

    [LoggerMessage(EventId = 2680, Level = LogLevel.Warning, Message = "The RPC owner of device {DeviceId} could not be reached")]
    private static partial void LogOwnerUnreachable(ILogger logger, Guid deviceId, Exception exception);
}
