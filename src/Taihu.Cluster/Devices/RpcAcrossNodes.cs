using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Runtime.Services;
using Orleans.Services;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Integrations;
using Taihu.Platform.Rpc;
using Taihu.Platform.Tenants;

namespace Taihu.Cluster.Devices;

/// <summary>
/// Each node's end of device work across nodes (an Orleans GrainService, addressed by its node): a device's RPC
/// owner (<see cref="IDeviceRpcGrain"/>) sends a command through the node the device is connected to, or another
/// node tells this one of a change made there (<see cref="ChangesAcrossNodes"/>).
/// </summary>
public interface INodeDeviceService : IGrainService
{
    /// <summary>
    /// Sends command <paramref name="requestId"/> to the device if it is reachable through this node (its delivery
    /// is told to the device's owner as <see cref="IDeviceRpcGrain.Delivered"/>); false at once otherwise.
    /// <paramref name="epoch"/> 0 is a lightweight call's send, any other a persistent call's.
    /// </summary>
    Task<bool> SendRpc(Guid tenantId, Guid deviceId, int requestId, string method, string paramsJson, int epoch);

    /// <summary>
    /// The device's owner has persistent calls it could not send: this node wakes it when the device connects here
    /// (at once if it is connected here already).
    /// </summary>
    [OneWay]
    Task CallsWaiting(Guid tenantId, Guid deviceId);

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

    /// <summary>This node.</summary>
    public SiloAddress Self => self.SiloAddress;

    /// <summary>Whether <paramref name="node"/> is active in this node's membership view.</summary>
    public bool IsActive(SiloAddress node) => membership.CurrentSnapshot.GetSiloStatus(node) == SiloStatus.Active;

    /// <summary>Every active node, this one among them, as this node's membership view has them.</summary>
    public IEnumerable<SiloAddress> Active()
    {
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active)
            {
                yield return member.SiloAddress;
            }
        }
    }

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
    DeviceService deviceService, IntegrationRegistry integrations, AlarmFeed alarmFeed, IAlarmStore alarms, ClientRpcRequests clientRpc, ConnectivityTracker connectivity,
    IGrainFactory grains)
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

    public async Task<bool> SendRpc(Guid tenantId, Guid deviceId, int requestId, string method, string paramsJson, int epoch)
    {
        // The owner offers a send to the node it last reached the device through first, to the others only then:
        // the directory's cache spares each of them a read of the device.
        if (await devices.GetAsync(tenantId, deviceId, CancellationToken.None) is not { } device)
        {
            return false;
        }

        return rpc.SendHere(device, requestId, method, paramsJson, persistent: epoch != 0,
            new DeliveryToOwner(grains.GetGrain<IDeviceRpcGrain>(deviceId), requestId, epoch));
    }

    public async Task CallsWaiting(Guid tenantId, Guid deviceId)
    {
        if (await devices.GetAsync(tenantId, deviceId, CancellationToken.None) is { } device)
        {
            rpc.CallsWaitingHere(device);
        }
    }

    /// <summary>Tells the device's owner, wherever it lives, that one send reached the device. Holds no connection.</summary>
    private sealed class DeliveryToOwner(IDeviceRpcGrain owner, int requestId, int epoch) : IDeliveryListener
    {
        private int _told;

        public void OnDelivered(QoS qos)
        {
            if (Interlocked.Exchange(ref _told, 1) == 0)
            {
                _ = owner.Delivered(requestId, epoch);
            }
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
