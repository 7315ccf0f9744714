using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Audit;
using Taihu.Broker.Extensibility;
using Taihu.Platform.Devices;
using Taihu.Platform.Hosting;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Rpc;

/// <summary>
/// Server-side RPC: lightweight calls (answered in the HTTP request) and persistent ones (stored, with
/// ThingsBoard's states), each handed to the owner of its device's RPC state (<see cref="DeviceRpcOwner"/>).
/// The device side (MQTT, HTTP, gateway) comes in through <see cref="ReplyAsync"/>, <see cref="Reachable"/>
/// and <see cref="Unreachable"/>.
/// </summary>
/// <remarks>
/// A single server keeps the owners itself, one per device, and is their host (<see cref="IRpcOwnerHost"/>). A
/// cluster node has <paramref name="clusterOwners"/>: each device's owner lives once cluster-wide (a grain), and
/// this service hands everything to it; the owner sends through the node the device is connected to
/// (<see cref="SendHere"/>).
/// </remarks>
public sealed partial class RpcService(IRpcStore store, IAuditLog audit, IDeviceStore devices, RpcDeviceLink link, TimeProvider time, ILogger<RpcService> logger,
    IRpcOwners? clusterOwners = null, IMeterFactory? meters = null) : IRpcOwnerHost
{
    private readonly ConcurrentDictionary<Guid, DeviceRpcOwner> _owners = new();

    // The server's share of a lightweight call's latency, beside what a client measures (which adds its own
    // HTTP stack, scheduling and collections): from the call handed to this service to the device's answer.
    private readonly Histogram<double> _callDuration = (meters?.Create(PlatformMetrics.MeterName) ?? new Meter(PlatformMetrics.MeterName))
        .CreateHistogram("taihu.rpc.call.duration", "ms", "From a lightweight call handed to the RPC service to the device's answer (two-way) or receipt (one-way); calls not answered are not counted.",
            tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250, 500, 1000, 5000, 10000] });

    // Devices that have (or had, since the start) persistent calls: only these have anything to send when they
    // connect, so a storm of connects by devices without calls costs no store query.
    private readonly ConcurrentDictionary<Guid, bool> _withPersistentCalls = new();

    IRpcStore IRpcOwnerHost.Store => store;

    IAuditLog IRpcOwnerHost.Audit => audit;

    TimeProvider IRpcOwnerHost.Time => time;

    ILogger IRpcOwnerHost.Logger => logger;

    ValueTask<bool> IRpcOwnerHost.TrySendAsync(DeviceRpcOwner owner, Device device, int requestId, string method, string paramsJson, int epoch) =>
        new(link.TrySend(device, requestId, method, paramsJson, new DeviceRpcOwner.Delivery(owner, requestId, epoch)));

    void IRpcOwnerHost.CallsWaiting(Device device)
    {
    }

    /// <summary>Who changes a call's state when no user does (the device, a timeout): recorded in the audit log under this name.</summary>
    public static Caller SystemCaller(Guid tenantId) => new(Guid.Empty, tenantId, Authority.TenantAdmin, "rpc");

    // Owners are kept for the life of the process: a few hundred bytes per device that ever had a call.
    private DeviceRpcOwner OwnerOf(Device device) => _owners.GetOrAdd(device.Id, static (_, arg) => new DeviceRpcOwner(arg.Service, arg.Device), (Service: this, Device: device));

    /// <summary>A lightweight call to a device of the caller's tenant (the caller checked the device).</summary>
    /// <remarks>
    /// Every call goes to the audit log as <c>RPC_CALL</c> on the device, as ThingsBoard records it: a failure when
    /// the device was not connected or did not answer in time. The entry is queued after the answer as a draft
    /// (<see cref="IAuditLog.Append"/>: no task, no text on this path) and written in the audit log's next group;
    /// the caller does not wait for it.
    /// </remarks>
    public async Task<RpcOutcome> CallAsync(Caller caller, Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        caller.RequireWrite();
        var started = Stopwatch.GetTimestamp();
        var outcome = clusterOwners is null
            ? await OwnerOf(device).CallAsync(device, request, cancellationToken)
            : await clusterOwners.CallAsync(device, request, cancellationToken);

        var failure = outcome.Kind switch
        {
            RpcOutcomeKind.NotConnected => "The device is not connected.",
            RpcOutcomeKind.TimedOut when request.OneWay => $"The device did not receive the command within {request.TimeoutMs} ms.",
            RpcOutcomeKind.TimedOut => $"The device did not reply within {request.TimeoutMs} ms.",
            _ => null,
        };
        if (failure is null)
        {
            _callDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        audit.Append(new AuditDraft(caller, "RPC_CALL", "DEVICE", device.Id, new AuditText(request.OneWay ? "one-way " : "two-way ", request.Method, " to ", device.Name), failure));
        return outcome;
    }

    /// <summary>
    /// On a cluster node: the device's owner (wherever it lives) sends a command through this node, if the device
    /// is reachable here; false at once otherwise. <paramref name="listener"/> tells the owner of its delivery.
    /// </summary>
    public bool SendHere(Device device, int requestId, string method, string paramsJson, bool persistent, IDeliveryListener listener)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (persistent)
        {
            // This node tells the owner when the device goes or comes back.
            _withPersistentCalls[device.Id] = true;
        }

        return link.TrySend(device, requestId, method, paramsJson, listener);
    }

    /// <summary>Stores a persistent call; it goes out when the device is reachable, in order.</summary>
    public async Task<PersistentRpc> SubmitAsync(Caller caller, Device device, RpcRequest request)
    {
        caller.RequireWrite();
        _withPersistentCalls[device.Id] = true;
        if (clusterOwners is null)
        {
            return await OwnerOf(device).SubmitAsync(caller, device, request);
        }

        var id = await clusterOwners.SubmitAsync(caller, device, request);
        return await store.GetAsync(device.TenantId, id) ?? throw PlatformException.NotFound("The RPC call");
    }

    /// <summary>
    /// On a cluster node: the device's owner has calls waiting that it could not send. This node remembers the
    /// device, so that it wakes the owner when the device connects here; if the device is reachable here already
    /// (it connected as the owner tried), the owner is woken now.
    /// </summary>
    public void CallsWaitingHere(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        _withPersistentCalls[device.Id] = true;
        if (link.IsReachable(device))
        {
            clusterOwners?.Reachable(device);
        }
    }

    public async Task<PersistentRpc> GetAsync(Caller caller, Guid id, CancellationToken cancellationToken) =>
        await store.GetAsync(caller.RequireTenant(), id, cancellationToken) ?? throw PlatformException.NotFound("The RPC call");

    public Task<Page<PersistentRpc>> ListAsync(Caller caller, Guid deviceId, RpcStatus? status, PageRequest request, CancellationToken cancellationToken) =>
        store.ListAsync(caller.RequireTenant(), deviceId, status, request, cancellationToken);

    public async Task DeleteAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        caller.RequireWrite();
        var call = await store.GetAsync(caller.RequireTenant(), id, cancellationToken) ?? throw PlatformException.NotFound("The RPC call");
        if (!await store.DeleteAsync(caller.RequireTenant(), id, cancellationToken))
        {
            throw PlatformException.NotFound("The RPC call");
        }

        if (clusterOwners is not null)
        {
            if (await devices.GetDeviceAsync(call.TenantId, call.DeviceId, cancellationToken) is { } device)
            {
                clusterOwners.Deleted(device, id);
            }
        }
        else if (_owners.TryGetValue(call.DeviceId, out var owner))
        {
            owner.Deleted(id);
        }

        await audit.WriteAsync(caller, "RPC_DELETED", "RPC", id.ToString(), $"{call.Method} #{call.RequestId}", cancellationToken: cancellationToken);
    }

    /// <summary>A device's reply to call <paramref name="requestId"/>.</summary>
    public Task<RpcReplyResult> ReplyAsync(Device device, int requestId, ReadOnlySpan<byte> reply) =>
        ReplyAsync(device, requestId, RpcRequest.ReplyJson(reply), failed: false);

    /// <summary>
    /// A protocol adapter's reply to call <paramref name="requestId"/>, as JSON text it wrote; <paramref name="failed"/>
    /// when the device refused or failed the command (a persistent call ends <c>FAILED</c> with this response).
    /// </summary>
    public Task<RpcReplyResult> ReplyAsync(Device device, int requestId, string replyJson, bool failed) =>
        clusterOwners is null ? OwnerOf(device).ReplyAsync(device, requestId, replyJson, failed) : clusterOwners.ReplyAsync(device, requestId, replyJson, failed);

    /// <summary>The device can be reached now: what waits for it is sent.</summary>
    public void Reachable(Device device)
    {
        if (_withPersistentCalls.ContainsKey(device.Id))
        {
            if (clusterOwners is null)
            {
                OwnerOf(device).Reachable(device);
            }
            else
            {
                clusterOwners.Reachable(device);
            }
        }
    }

    /// <summary>The device lost a connection: calls sent on it and not acknowledged will be retried.</summary>
    public void Unreachable(Device device)
    {
        if (clusterOwners is not null)
        {
            if (_withPersistentCalls.ContainsKey(device.Id))
            {
                clusterOwners.Unreachable(device);
            }
        }
        else if (_owners.TryGetValue(device.Id, out var owner))
        {
            owner.Unreachable();
        }
    }

    /// <summary>
    /// Completes once the device's owner has done everything handed to it before this call (a timer's work
    /// included): the sync point for tests that move a fake clock.
    /// </summary>
    /// <summary>A cluster node: each device's owner lives once cluster-wide, not here.</summary>
    internal bool Clustered => clusterOwners is not null;

    internal Task IdleAsync(Device device) => OwnerOf(device).IdleAsync();

    /// <summary>
    /// After a restart, and on a cluster by the successor of a node that died: the owners of devices with calls not
    /// final take them back from the store, so that their expiries and reply timeouts run again, and what waits is
    /// sent to the devices reachable now. On a cluster each device's owner is woken where it lives (an owner that
    /// lived on the dead node is activated again). Returns how many devices have such calls.
    /// </summary>
    public async Task<int> ResumeAsync(CancellationToken cancellationToken)
    {
        var withCalls = await store.DevicesWithActiveCallsAsync(cancellationToken);
        foreach (var (_, deviceId) in withCalls)
        {
            _withPersistentCalls[deviceId] = true;
        }

        if (clusterOwners is not null)
        {
            // A few at a time: each wake may read the device's calls and offer what waits to the nodes.
            var options = new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken };
            await Parallel.ForEachAsync(withCalls, options, async (device, _) => await clusterOwners.WakeAsync(device.TenantId, device.DeviceId));
            return withCalls.Count;
        }

        foreach (var (tenantId, deviceId) in withCalls)
        {
            if (await devices.GetDeviceAsync(tenantId, deviceId, cancellationToken) is { } device)
            {
                OwnerOf(device).Reachable(device);
            }
        }

        return withCalls.Count;
    }
}

/// <summary>
/// Takes persistent calls back after a restart. A single server does it before it starts listening; a cluster
/// node once the host has started (its silo active), in the background, waking each device's owner where it lives.
/// </summary>
internal sealed partial class RpcStartup(RpcService rpc, IHostApplicationLifetime lifetime, ILogger<RpcStartup> logger) : BackgroundService
{
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!rpc.Clustered)
        {
            await rpc.ResumeAsync(cancellationToken);
        }

        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!rpc.Clustered || !await lifetime.StartedAsync(stoppingToken))
        {
            return;
        }

        try
        {
            await rpc.ResumeAsync(stoppingToken);
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested)
        {
            // The successor of the next death sweeps again; a device's connect here wakes its owner meanwhile.
            LogResumeFailed(logger, e);
        }
    }

    [LoggerMessage(EventId = 2504, Level = LogLevel.Warning, Message = "Taking persistent RPC calls back at start failed")]
    private static partial void LogResumeFailed(ILogger logger, Exception exception);
}
