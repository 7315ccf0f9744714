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
using Taihu.Platform.Tenants;

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

    /// <summary>Stores and sends a persistent call if the device is connected to this node: its id; null at once otherwise.</summary>
    Task<Guid?> Submit(RemoteCaller caller, Guid tenantId, Guid deviceId, RemoteRpcRequest request);

    /// <summary>Another node stored persistent calls for the device: sent from here if it is connected here.</summary>
    [OneWay]
    Task CallsWaiting(Guid tenantId, Guid deviceId);

    /// <summary>
    /// A node died and its successor took its persistent calls back from the store: this node remembers every device
    /// with calls not final and sends what waits to those connected here (they may have come here before).
    /// </summary>
    [OneWay]
    Task ResumeCalls();

    /// <summary>Another node changed or deleted a device: this node's caches forget it.</summary>
    [OneWay]
    Task DeviceChanged(long deviceSeq);

    /// <summary>Another node changed or deleted a device profile: this node's caches forget it.</summary>
    [OneWay]
    Task ProfileChanged(Guid profileId);

    /// <summary>Another node changed a device's credentials or deleted it: its connections here are closed.</summary>
    [OneWay]
    Task DisconnectDevice(Guid deviceId, string reason);

    /// <summary>Another node is deleting a tenant: its devices' connections here are closed.</summary>
    [OneWay]
    Task DisconnectTenant(Guid tenantId, string reason);

    /// <summary>Integrations changed through another node: the registry is read again.</summary>
    Task IntegrationsChanged();

    /// <summary>An alarm was created or changed on another node: this node's live subscribers of its tenant hear of it.</summary>
    [OneWay]
    Task AlarmChanged(int kind, Guid tenantId, Guid alarmId);

    /// <summary>A webhook called by another node answered (or, null, declined) a device's client-side RPC request: taken if it waits here.</summary>
    [OneWay]
    Task ClientRpcAnswered(Guid eventId, byte[]? reply);

    /// <summary>The devices of the connectivity partition with a connection to this node now (<see cref="ConnectivityPartitions"/>).</summary>
    Task<DeviceReport[]> ConnectedIn(int partition);
}

/// <summary>Reaches a GrainService of <typeparamref name="TService"/> on a given node, or on every other active node.</summary>
internal sealed class OnNode<TService>(IServiceProvider services, IClusterMembershipService membership, ILocalSiloDetails self) : GrainServiceClient<TService>(services)
    where TService : IGrainService
{
    public TService At(SiloAddress node) => GetGrainService(node);

    /// <summary>The service on each active node other than this one, as this node's membership view has them.</summary>
    public IEnumerable<TService> Others()
    {
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active && !member.SiloAddress.Equals(self.SiloAddress))
            {
                yield return At(member.SiloAddress);
            }
        }
    }
}

[Reentrant]
internal sealed class NodeDeviceService(GrainId id, Silo silo, ILoggerFactory loggerFactory, RpcService rpc, DeviceDirectory devices, EventSignal events,
    DeviceService deviceService, IntegrationRegistry integrations, AlarmFeed alarmFeed, IAlarmStore alarms, ClientRpcRequests clientRpc, ConnectivityTracker connectivity)
    : GrainService(id, silo, loggerFactory), INodeDeviceService
{
    public Task DeviceChanged(long deviceSeq)
    {
        events.NotifyDeviceChanged(deviceSeq);
        return Task.CompletedTask;
    }

    public Task ProfileChanged(Guid profileId)
    {
        events.NotifyProfileChanged(profileId);
        return Task.CompletedTask;
    }

    public Task DisconnectDevice(Guid deviceId, string reason)
    {
        deviceService.DisconnectDeviceHere(deviceId, reason);
        return Task.CompletedTask;
    }

    public Task DisconnectTenant(Guid tenantId, string reason)
    {
        deviceService.DisconnectTenantHere(tenantId, reason);
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

    public async Task ResumeCalls() => await rpc.ResumeAsync(CancellationToken.None, reachableOnly: true);

    public async Task<DeviceReport[]> ConnectedIn(int partition)
    {
        var connected = await connectivity.ConnectedAsync(seq => ConnectivityPartitions.Of(seq) == partition);
        var result = new DeviceReport[connected.Length];
        for (var i = 0; i < connected.Length; i++)
        {
            result[i] = DeviceReport.From(connected[i]);
        }

        return result;
    }

    public Task ClientRpcAnswered(Guid eventId, byte[]? reply)
    {
        clientRpc.TryAnswerHere(eventId, reply);
        return Task.CompletedTask;
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

    public async Task<Guid?> Submit(RemoteCaller caller, Guid tenantId, Guid deviceId, RemoteRpcRequest request) =>
        await devices.GetAsync(tenantId, deviceId, CancellationToken.None) is { } device
            ? await rpc.SubmitHereAsync(caller.ToCaller(), device, request.ToRequest(persistent: true))
            : null;

    public async Task CallsWaiting(Guid tenantId, Guid deviceId)
    {
        if (await devices.GetAsync(tenantId, deviceId, CancellationToken.None) is { } device)
        {
            rpc.CallsWaitingHere(device);
        }
    }
}

/// <summary>
/// <see cref="IRpcElsewhere"/> on a cluster node: a call for a device that is not connected here is offered to
/// every other active node at once; the node that has the device connected makes it (the device's own RPC owner
/// there, as for a call taken on that node) and its outcome is the answer. The others answer NotConnected at
/// once. While a device is being taken over between two nodes both could have it for a moment; the first
/// outcome other than NotConnected is taken.
/// </summary>
internal sealed class RpcAcrossNodes(OnNode<INodeDeviceService> nodes) : IRpcElsewhere
{
    public async Task<RpcOutcome> CallAsync(Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(request);
        var remote = RemoteRpcRequest.Of(request);
        var calls = new List<Task<RemoteRpcOutcome>>();
        foreach (var node in nodes.Others())
        {
            calls.Add(node.Call(device.TenantId, device.Id, remote));
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

    public async Task<Guid?> SubmitAsync(Caller caller, Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(request);
        var remote = RemoteRpcRequest.Of(request);
        var who = RemoteCaller.Of(caller);
        var offers = new List<Task<Guid?>>();
        foreach (var node in nodes.Others())
        {
            offers.Add(node.Submit(who, device.TenantId, device.Id, remote));
        }

        // Only a node with the device connected stores the call; while a device moves between two nodes both could,
        // and each stored call is then sent by its node's owner (the caller gets the first).
        Guid? taken = null;
        while (offers.Count > 0)
        {
            var done = await Task.WhenAny(offers).WaitAsync(cancellationToken);
            offers.Remove(done);
            if (done.IsCompletedSuccessfully && done.Result is { } id)
            {
                taken ??= id;
            }
        }

        return taken;
    }

    public void CallsWaiting(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        foreach (var node in nodes.Others())
        {
            _ = node.CallsWaiting(device.TenantId, device.Id);
        }
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
    [property: Id(5)] string? AdditionalInfoJson,
    [property: Id(6)] int Retries = 0)
{
    public static RemoteRpcRequest Of(RpcRequest request) =>
        new(request.Method, request.ParamsJson, request.OneWay, request.TimeoutMs, request.ExpirationTime, request.AdditionalInfoJson, request.Retries);

    public RpcRequest ToRequest(bool persistent = false) => new(Method, ParamsJson, OneWay, TimeoutMs, ExpirationTime, persistent, persistent ? Retries : 0, AdditionalInfoJson);
}

/// <summary>Who made a call, as it crosses to another node (recorded there in the audit log).</summary>
[GenerateSerializer]
[Immutable]
public sealed record RemoteCaller(
    [property: Id(0)] Guid UserId,
    [property: Id(1)] Guid? TenantId,
    [property: Id(2)] int AuthorityValue,
    [property: Id(3)] string Name)
{
    public static RemoteCaller Of(Caller caller) => new(caller.UserId, caller.TenantId, (int)caller.Authority, caller.Name);

    public Caller ToCaller() => new(UserId, TenantId, (Authority)AuthorityValue, Name);
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
