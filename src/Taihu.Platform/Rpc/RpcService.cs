using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Rpc;

/// <summary>
/// Server-side RPC: lightweight calls (answered in the HTTP request) and persistent ones (stored, with
/// ThingsBoard's states), each handed to the owner of its device's RPC state (<see cref="DeviceRpcOwner"/>).
/// The device side (MQTT, HTTP, gateway) comes in through <see cref="ReplyAsync"/>, <see cref="Reachable"/>
/// and <see cref="Unreachable"/>.
/// </summary>
public sealed partial class RpcService(IRpcStore store, IAuditLog audit, IDeviceStore devices, RpcDeviceLink link, TimeProvider time, ILogger<RpcService> logger,
    IRpcElsewhere? elsewhere = null, IMeterFactory? meters = null)
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

    internal IRpcStore Store => store;

    internal IAuditLog Audit => audit;

    internal RpcDeviceLink Link => link;

    internal TimeProvider Time => time;

    internal ILogger Logger => logger;

    /// <summary>A node of a cluster: other nodes' owners of a device may change its stored calls.</summary>
    internal bool Clustered => elsewhere is not null;

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
        var outcome = await OwnerOf(device).CallAsync(device, request, cancellationToken);
        if (outcome.Kind == RpcOutcomeKind.NotConnected && elsewhere is not null)
        {
            // A cluster node: the device may be connected to another node, which then makes the call.
            outcome = await elsewhere.CallAsync(device, request, cancellationToken);
        }

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
    /// A lightweight call that another node of a cluster hands this one: made only if the device is connected here
    /// (<see cref="RpcOutcomeKind.NotConnected"/> at once otherwise). The node that took the call audits it.
    /// </summary>
    public Task<RpcOutcome> CallHereAsync(Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(request);
        return link.IsReachable(device)
            ? OwnerOf(device).CallAsync(device, request, cancellationToken)
            : Task.FromResult(new RpcOutcome(RpcOutcomeKind.NotConnected));
    }

    /// <summary>Stores a persistent call; it goes out when the device is reachable, in order.</summary>
    /// <remarks>
    /// On a cluster, a call for a device connected to another node is made by the device's owner there (in order
    /// with the calls it sends, with its request ids); a device connected nowhere gets the call stored here, and
    /// every other node is told, so that the node it connects to next sends it.
    /// </remarks>
    public async Task<PersistentRpc> SubmitAsync(Caller caller, Device device, RpcRequest request)
    {
        caller.RequireWrite();
        if (elsewhere is not null && !link.IsReachable(device)
            && await elsewhere.SubmitAsync(caller, device, request, CancellationToken.None) is { } id)
        {
            return await store.GetAsync(device.TenantId, id) ?? throw PlatformException.NotFound("The RPC call");
        }

        _withPersistentCalls[device.Id] = true;
        var call = await OwnerOf(device).SubmitAsync(caller, device, request);
        if (elsewhere is not null && !link.IsReachable(device))
        {
            elsewhere.CallsWaiting(device);
        }

        return call;
    }

    /// <summary>
    /// A persistent call that another node of a cluster hands this one: stored and sent by the device's owner here
    /// if the device is connected here; null at once otherwise.
    /// </summary>
    public async Task<Guid?> SubmitHereAsync(Caller caller, Device device, RpcRequest request)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!link.IsReachable(device))
        {
            return null;
        }

        _withPersistentCalls[device.Id] = true;
        return (await OwnerOf(device).SubmitAsync(caller, device, request)).Id;
    }

    /// <summary>Another node of a cluster stored calls for the device: sent from here if it is connected here.</summary>
    public void CallsWaitingHere(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        _withPersistentCalls[device.Id] = true;
        if (link.IsReachable(device))
        {
            OwnerOf(device).Resync(device);
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

        if (_owners.TryGetValue(call.DeviceId, out var owner))
        {
            owner.Deleted(id);
        }

        await audit.WriteAsync(caller, "RPC_DELETED", "RPC", id.ToString(), $"{call.Method} #{call.RequestId}", cancellationToken: cancellationToken);
    }

    /// <summary>A device's reply to call <paramref name="requestId"/>.</summary>
    public Task<RpcReplyResult> ReplyAsync(Device device, int requestId, ReadOnlySpan<byte> reply) =>
        OwnerOf(device).ReplyAsync(device, requestId, RpcRequest.ReplyJson(reply));

    /// <summary>
    /// A protocol adapter's reply to call <paramref name="requestId"/>, as JSON text it wrote; <paramref name="failed"/>
    /// when the device refused or failed the command (a persistent call ends <c>FAILED</c> with this response).
    /// </summary>
    public Task<RpcReplyResult> ReplyAsync(Device device, int requestId, string replyJson, bool failed) =>
        OwnerOf(device).ReplyAsync(device, requestId, replyJson, failed);

    /// <summary>The device can be reached now: what waits for it is sent.</summary>
    public void Reachable(Device device)
    {
        if (_withPersistentCalls.ContainsKey(device.Id))
        {
            if (elsewhere is null)
            {
                OwnerOf(device).Reachable(device);
            }
            else
            {
                // Another node may have sent, ended or stored calls since this node's owner last looked.
                OwnerOf(device).Resync(device);
            }
        }
    }

    /// <summary>The device lost a connection: calls sent on it and not acknowledged will be retried.</summary>
    public void Unreachable(Device device)
    {
        if (_owners.TryGetValue(device.Id, out var owner))
        {
            owner.Unreachable();
        }
    }

    /// <summary>
    /// Completes once the device's owner has done everything handed to it before this call (a timer's work
    /// included): the sync point for tests that move a fake clock.
    /// </summary>
    internal Task IdleAsync(Device device) => OwnerOf(device).AskAsync(static () => Task.FromResult(true));

    /// <summary>
    /// After a restart, and on a cluster by the successor of a node that died: the owners of devices with calls not
    /// final take them back from the store, so that their expiries and reply timeouts run again, and what waits is
    /// sent to the devices connected here. Returns how many devices have such calls.
    /// </summary>
    /// <param name="reachableOnly">
    /// Take back only the calls of devices connected here now (the other nodes of a cluster when one died: the
    /// successor takes all); every device with calls is remembered, so that it gets them when it connects here.
    /// </param>
    public async Task<int> ResumeAsync(CancellationToken cancellationToken, bool reachableOnly = false)
    {
        var count = 0;
        foreach (var (tenantId, deviceId) in await store.DevicesWithActiveCallsAsync(cancellationToken))
        {
            count++;
            _withPersistentCalls[deviceId] = true;
            if (await devices.GetDeviceAsync(tenantId, deviceId, cancellationToken) is { } device && !(reachableOnly && !link.IsReachable(device)))
            {
                if (elsewhere is null)
                {
                    OwnerOf(device).Reachable(device);
                }
                else
                {
                    // Another node may have stored, moved or ended calls since this node's owner last looked.
                    OwnerOf(device).Resync(device);
                }
            }
        }

        return count;
    }

    /// <summary>On a cluster: the device left this node with calls still to send; the other nodes are told.</summary>
    internal void CallsWaitingElsewhere(Device device) => elsewhere?.CallsWaiting(device);
}

/// <summary>Takes persistent calls back after a restart.</summary>
internal sealed class RpcStartup(RpcService rpc) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => rpc.ResumeAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
