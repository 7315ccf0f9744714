using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Runtime.Services;
using Orleans.Services;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Integrations;
using Taihu.Platform.Rpc;

namespace Taihu.Cluster.Devices;

/// <summary>
/// Each node's end of device calls across nodes (an Orleans GrainService, addressed by its node): another node
/// hands it a lightweight RPC call for a device that may be connected here, or tells it of a change made there
/// (<see cref="ChangesAcrossNodes"/>).
/// </summary>
public interface INodeDeviceService : IGrainService
{
    /// <summary>Makes the call if the device is connected to this node; <see cref="RpcOutcomeKind.NotConnected"/> at once otherwise.</summary>
    Task<RemoteRpcOutcome> Call(Guid tenantId, Guid deviceId, RemoteRpcRequest request);

    /// <summary>A device profile changed through another node (its alarm rules may have).</summary>
    Task ProfileChanged(Guid profileId);

    /// <summary>A device changed (renamed, moved to another profile) or was deleted through another node.</summary>
    Task DeviceChanged(long deviceSeq);

    /// <summary>Integrations changed through another node: the registry is read again.</summary>
    Task IntegrationsChanged();

    /// <summary>An alarm was created or changed on another node: this node's live subscribers of its tenant hear of it.</summary>
    Task AlarmChanged(int kind, Guid tenantId, Guid alarmId);
}

/// <summary>Reaches a GrainService of <typeparamref name="TService"/> on a given node.</summary>
internal sealed class OnNode<TService>(IServiceProvider services) : GrainServiceClient<TService>(services)
    where TService : IGrainService
{
    public TService At(SiloAddress node) => GetGrainService(node);
}

[Reentrant]
internal sealed class NodeDeviceService(GrainId id, Silo silo, ILoggerFactory loggerFactory, RpcService rpc, DeviceDirectory devices, EventSignal signal,
    IntegrationRegistry integrations, AlarmFeed alarmFeed, IAlarmStore alarms)
    : GrainService(id, silo, loggerFactory), INodeDeviceService
{
    public Task ProfileChanged(Guid profileId)
    {
        signal.NotifyProfileChanged(profileId, elsewhere: true);
        return Task.CompletedTask;
    }

    public Task DeviceChanged(long deviceSeq)
    {
        signal.NotifyDeviceChanged(deviceSeq, elsewhere: true);
        return Task.CompletedTask;
    }

    public async Task IntegrationsChanged() => await integrations.ReloadAsync(CancellationToken.None);

    public async Task AlarmChanged(int kind, Guid tenantId, Guid alarmId)
    {
        // Read here, as the node that made the change reads it for its own subscribers: the alarm as it is now.
        if (alarmFeed.HasSubscribers(tenantId) && await alarms.GetInfoAsync(tenantId, alarmId) is { } info)
        {
            alarmFeed.Publish(new AlarmEvent((AlarmChangeKind)kind, info));
        }
    }

    public async Task<RemoteRpcOutcome> Call(Guid tenantId, Guid deviceId, RemoteRpcRequest request)
    {
        // Every other node is offered each such call: the directory's cache spares each of them a read of the device.
        if (await devices.GetAsync(tenantId, deviceId, CancellationToken.None) is not { } device)
        {
            return new RemoteRpcOutcome(RpcOutcomeKind.NotConnected, null);
        }

        var outcome = await rpc.CallHereAsync(device, request.ToRequest(), CancellationToken.None);
        return new RemoteRpcOutcome(outcome.Kind, outcome.ReplyJson);
    }
}

/// <summary>
/// <see cref="IRpcElsewhere"/> on a cluster node: a call for a device that is not connected here is offered to
/// every other active node at once; the node that has the device connected makes it (the device's own RPC owner
/// there, as for a call taken on that node) and its outcome is the answer. The others answer NotConnected at
/// once. While a device is being taken over between two nodes both could have it for a moment; the first
/// outcome other than NotConnected is taken.
/// </summary>
internal sealed class RpcAcrossNodes(IClusterMembershipService membership, ILocalSiloDetails self, OnNode<INodeDeviceService> nodes) : IRpcElsewhere
{
    public async Task<RpcOutcome> CallAsync(Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(request);
        var remote = RemoteRpcRequest.Of(request);
        var calls = new List<Task<RemoteRpcOutcome>>();
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active && !member.SiloAddress.Equals(self.SiloAddress))
            {
                calls.Add(nodes.At(member.SiloAddress).Call(device.TenantId, device.Id, remote));
            }
        }

        while (calls.Count > 0)
        {
            var done = await Task.WhenAny(calls).WaitAsync(cancellationToken);
            calls.Remove(done);
            if (done.IsCompletedSuccessfully && done.Result.Kind != RpcOutcomeKind.NotConnected)
            {
                return new RpcOutcome(done.Result.Kind, done.Result.ReplyJson);
            }
        }

        return new RpcOutcome(RpcOutcomeKind.NotConnected);
    }
}

/// <summary>A lightweight call as it crosses to another node.</summary>
[GenerateSerializer]
[Immutable]
public sealed record RemoteRpcRequest(
    [property: Id(0)] string Method,
    [property: Id(1)] string ParamsJson,
    [property: Id(2)] bool OneWay,
    [property: Id(3)] long TimeoutMs,
    [property: Id(4)] long ExpirationTime,
    [property: Id(5)] string? AdditionalInfoJson)
{
    public static RemoteRpcRequest Of(RpcRequest request) =>
        new(request.Method, request.ParamsJson, request.OneWay, request.TimeoutMs, request.ExpirationTime, request.AdditionalInfoJson);

    public RpcRequest ToRequest() => new(Method, ParamsJson, OneWay, TimeoutMs, ExpirationTime, Persistent: false, Retries: 0, AdditionalInfoJson);
}

[GenerateSerializer]
[Immutable]
public sealed record RemoteRpcOutcome([property: Id(0)] int KindValue, [property: Id(1)] string? ReplyJson)
{
    public RemoteRpcOutcome(RpcOutcomeKind kind, string? replyJson)
        : this((int)kind, replyJson)
    {
    }

    public RpcOutcomeKind Kind => (RpcOutcomeKind)KindValue;
}
