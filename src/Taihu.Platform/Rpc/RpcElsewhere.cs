using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Rpc;

/// <summary>
/// Lightweight calls to a device connected to another node of a cluster. A single server has none; a cluster node
/// registers one (Taihu.Cluster), and <see cref="RpcService.CallAsync"/> hands it a call whose device is not
/// connected here.
/// </summary>
public interface IRpcElsewhere
{
    /// <summary>
    /// Makes the call on the node the device is connected to, and gives its outcome there;
    /// <see cref="RpcOutcomeKind.NotConnected"/> when no other node has the device connected.
    /// </summary>
    Task<RpcOutcome> CallAsync(Device device, RpcRequest request, CancellationToken cancellationToken);

    /// <summary>
    /// Has the node the device is connected to store and send a persistent call (<see cref="RpcService.SubmitHereAsync"/>);
    /// the call's id, or null when no other node has the device connected.
    /// </summary>
    Task<Guid?> SubmitAsync(Caller caller, Device device, RpcRequest request, CancellationToken cancellationToken);

    /// <summary>Tells every other node that calls for the device were stored here (<see cref="RpcService.CallsWaitingHere"/>), without waiting.</summary>
    void CallsWaiting(Device device);
}
