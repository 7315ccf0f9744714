using Microsoft.Extensions.Logging;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Rpc;

/// <summary>
/// Where a device's RPC owner (<see cref="DeviceRpcOwner"/>) lives, and what it needs from there: the store, the
/// audit log, the clock, and a way to the device. On a single server that is <see cref="RpcService"/>, whose way is
/// this process's <see cref="RpcDeviceLink"/>; on a cluster it is the device's grain (Taihu.Cluster), whose way is
/// the node the device is connected to.
/// </summary>
public interface IRpcOwnerHost
{
    IRpcStore Store { get; }

    IAuditLog Audit { get; }

    TimeProvider Time { get; }

    ILogger Logger { get; }

    /// <summary>
    /// Sends command <paramref name="requestId"/> to the device by whatever reaches it now; false when nothing does.
    /// Its delivery is told to <paramref name="owner"/> as <see cref="DeviceRpcOwner.Delivered"/>(<paramref name="requestId"/>, <paramref name="epoch"/>).
    /// </summary>
    ValueTask<bool> TrySendAsync(DeviceRpcOwner owner, Device device, int requestId, string method, string paramsJson, int epoch);

    /// <summary>
    /// Persistent calls wait and nothing reaches the device now. On a cluster every node is told, so that the one
    /// the device connects to next wakes the owner; a single server has nothing to do (its own connects do).
    /// </summary>
    void CallsWaiting(Device device);
}

/// <summary>
/// The owners of devices' RPC state on a cluster, one per device cluster-wide (Taihu.Cluster: a grain per device).
/// A single server has none: <see cref="RpcService"/> keeps its owners itself. Every method stands for the same
/// method of the device's owner.
/// </summary>
public interface IRpcOwners
{
    /// <summary>A lightweight call, made by the device's owner wherever it lives, through the node the device is connected to.</summary>
    Task<RpcOutcome> CallAsync(Device device, RpcRequest request, CancellationToken cancellationToken);

    /// <summary>Stores a persistent call through the device's owner; its id.</summary>
    Task<Guid> SubmitAsync(Caller caller, Device device, RpcRequest request);

    Task<RpcReplyResult> ReplyAsync(Device device, int requestId, string replyJson, bool failed);

    /// <summary>The device can be reached through this node now (or, after a death or a start, its owner is woken): what waits is sent.</summary>
    void Reachable(Device device);

    /// <summary>The device lost a connection to this node.</summary>
    void Unreachable(Device device);

    /// <summary>The call was deleted from the store.</summary>
    void Deleted(Device device, Guid callId);

    /// <summary>Wakes the device's owner, which takes its calls not final from the store and sends what waits; completes once it has.</summary>
    Task WakeAsync(Guid tenantId, Guid deviceId);
}
