using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Concurrency;
using Orleans.Runtime;
using Taihu.Platform.Devices;
using Taihu.Platform.Hosting;

namespace Taihu.Cluster.Devices;

/// <summary>
/// The owner of the connectivity of one partition of the devices (<see cref="ConnectivityPartitions"/>), cluster-wide.
/// Every node reports the connections its devices have there once a flush (<see cref="ConnectivityTracker"/>); the
/// partition adds them up, judges inactivity and writes.
/// </summary>
public interface IConnectivityPartitionGrain : IGrainWithIntegerKey
{
    /// <summary><paramref name="node"/> says this of its connections of these devices (each report absolute).</summary>
    Task Report(SiloAddress node, DeviceReport[] reports);

    /// <summary>Nothing but the activation: a partition no device reports to is still kept, and rebuilt after its node died.</summary>
    Task Wake();
}

/// <summary><see cref="ConnectivityReport"/> across nodes.</summary>
[GenerateSerializer]
[Immutable]
public readonly record struct DeviceReport(
    [property: Id(0)] long DeviceSeq,
    [property: Id(1)] Guid TenantId,
    [property: Id(2)] Guid ProfileId,
    [property: Id(3)] int Connections,
    [property: Id(4)] long LastConnect,
    [property: Id(5)] long LastDisconnect,
    [property: Id(6)] long LastActivity)
{
    public static DeviceReport From(in ConnectivityReport r) => new(r.DeviceSeq, r.TenantId, r.ProfileId, r.Connections, r.LastConnect, r.LastDisconnect, r.LastActivity);

    public ConnectivityReport ToReport() => new(DeviceSeq, TenantId, ProfileId, Connections, LastConnect, LastDisconnect, LastActivity);
}

/// <summary>Where a device's connectivity is owned.</summary>
public static class ConnectivityPartitions
{
    /// <summary>
    /// Partition grains: enough to spread the devices' connectivity over the nodes; few enough that each is
    /// activated once and stays, and that rebuilding those of a dead node is a few dozen reads (the partitions on
    /// one node write together: <see cref="ConnectivityOwners"/>).
    /// </summary>
    public const int Count = 32;

    /// <summary>The partition of a device, by its row number.</summary>
    public static int Of(long deviceSeq) => (int)(deviceSeq % Count);

    /// <summary>The reports sorted by partition, each as it goes across nodes.</summary>
    public static List<DeviceReport>?[] ByPartition(IReadOnlyList<ConnectivityReport> reports)
    {
        var lists = new List<DeviceReport>?[Count];
        foreach (var report in reports)
        {
            (lists[Of(report.DeviceSeq)] ??= []).Add(DeviceReport.From(report));
        }

        return lists;
    }
}

/// <summary>
/// One partition's connectivity owner. Kept active for good (it judges silent devices inactive on its own timer),
/// and in memory only: when the node hosting it dies, it is activated again on another node (at the next report,
/// or woken by every node as soon as the death is known: <see cref="ConnectivityPartitionsAwake"/>). It then starts
/// from the devices storage shows active, asks every live node which of its devices are connected there, and
/// disconnects, at that moment, the devices shown connected that no live node has. A node that dies while its
/// partitions live elsewhere has its connections dropped there at the first flush after its death is known.
/// Not reentrant: reports, flushes and the rebuild run one at a time.
/// </summary>
[KeepAlive]
internal sealed partial class ConnectivityPartitionGrain(ConnectivityOwners owners, IDeviceStore devices, OnNode<INodeDeviceService> nodes,
    IClusterMembershipService membership, TimeProvider time, ILogger<ConnectivityPartitionGrain> logger)
    : Grain, IConnectivityPartitionGrain
{
    private static readonly TimeSpan s_askTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan s_flushInterval = TimeSpan.FromSeconds(1);

    private readonly ConnectivityOwner _owner = owners.Create();

    /// <summary>
    /// Live nodes that have not said yet which of this partition's devices they have connected (asked at
    /// activation, and again at each flush until each answers or is dead). Until then nothing is judged inactive:
    /// a device connected to such a node may not have been reported here.
    /// </summary>
    private readonly HashSet<SiloAddress> _unheard = [];

    /// <summary>The number each reporting node has in the owner.</summary>
    private readonly Dictionary<SiloAddress, int> _nodes = [];
    private int _lastNodeId;

    private int _partition;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var partition = _partition = (int)this.GetPrimaryKeyLong();
        try
        {
            _owner.Restore(await devices.ListActiveDevicesAsync(partition, ConnectivityPartitions.Count, cancellationToken));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not activated: the next report or wake tries again.
            LogRestoreFailed(logger, e, partition);
            throw;
        }

        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active)
            {
                _unheard.Add(member.SiloAddress);
            }
        }

        var nodeCount = _unheard.Count;
        var connected = await AskUnheardAsync(cancellationToken);
        var disconnected = _unheard.Count == 0 ? _owner.DisconnectUnconnected(Now()) : 0;
        LogActivated(logger, partition, _owner.Count, connected, nodeCount, disconnected);
        this.RegisterGrainTimer(static (self, cancellation) => self.TickAsync(cancellation), this,
            new GrainTimerCreationOptions { DueTime = s_flushInterval, Period = s_flushInterval, KeepAlive = true });
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // The node is stopping: what changed since the last flush is written now, or by the partition's next activation.
        try
        {
            await _owner.FlushAsync(Now(), cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogFlushFailed(logger, e, _partition);
        }
    }

    public Task Report(SiloAddress node, DeviceReport[] reports)
    {
        // A node declared dead is not heard any more: its connections were dropped (it is stopped if it still runs).
        if (membership.CurrentSnapshot.GetSiloStatus(node) == SiloStatus.Dead)
        {
            return Task.CompletedTask;
        }

        var id = IdOf(node);
        foreach (var report in reports)
        {
            _owner.Report(id, report.ToReport());
        }

        return Task.CompletedTask;
    }

    public Task Wake() => Task.CompletedTask;

    private async Task TickAsync(CancellationToken cancellationToken)
    {
        var now = Now();
        var snapshot = membership.CurrentSnapshot;
        List<SiloAddress>? gone = null;
        foreach (var node in _nodes.Keys)
        {
            if (snapshot.GetSiloStatus(node) == SiloStatus.Dead)
            {
                (gone ??= []).Add(node);
            }
        }

        if (gone is not null)
        {
            foreach (var node in gone)
            {
                var lost = _owner.NodeGone(_nodes[node], now);
                _nodes.Remove(node);
                LogNodeGone(logger, _partition, node, lost);
            }
        }

        if (_unheard.Count > 0)
        {
            await AskUnheardAsync(cancellationToken);
            if (_unheard.Count == 0)
            {
                var disconnected = _owner.DisconnectUnconnected(now);
                LogAllHeard(logger, _partition, disconnected);
            }
        }

        await _owner.FlushAsync(now, cancellationToken, judgeInactivity: _unheard.Count == 0);
    }

    /// <summary>
    /// Asks each live node not heard yet which of this partition's devices are connected to it; a node that answers,
    /// or is no longer active, is heard. Returns the devices connected.
    /// </summary>
    private async Task<int> AskUnheardAsync(CancellationToken cancellationToken)
    {
        var snapshot = membership.CurrentSnapshot;
        var asks = new List<(SiloAddress Node, Task<DeviceReport[]> Connected)>();
        foreach (var node in _unheard)
        {
            if (snapshot.GetSiloStatus(node) == SiloStatus.Active)
            {
                asks.Add((node, nodes.At(node).ConnectedIn(_partition).WaitAsync(s_askTimeout, cancellationToken)));
            }
        }

        // Those gone meanwhile have nothing to say (their connections are dropped if they were reported).
        _unheard.RemoveWhere(node => snapshot.GetSiloStatus(node) != SiloStatus.Active);
        var connected = 0;
        foreach (var (node, ask) in asks)
        {
            try
            {
                var answer = await ask;
                var id = IdOf(node);
                foreach (var report in answer)
                {
                    _owner.Report(id, report.ToReport());
                    connected++;
                }

                _unheard.Remove(node);
            }
            catch (Exception e) when (e is TimeoutException or OrleansException or SiloUnavailableException)
            {
                LogAskFailed(logger, _partition, node.ToString(), e.Message);
            }
        }

        return connected;
    }

    private int IdOf(SiloAddress node)
    {
        if (!_nodes.TryGetValue(node, out var id))
        {
            id = ++_lastNodeId;
            _nodes[node] = id;
        }

        return id;
    }

    private long Now() => time.GetUtcNow().ToUnixTimeMilliseconds();

    [LoggerMessage(EventId = 2671, Level = LogLevel.Warning, Message = "Connectivity partition {Partition}: reading its active devices failed; activated again at the next report")]
    private static partial void LogRestoreFailed(ILogger logger, Exception exception, int partition);

    [LoggerMessage(EventId = 2672, Level = LogLevel.Warning, Message = "Connectivity partition {Partition}: node {Node} did not say which devices are connected to it ({Error}); asked again at the next flush, and no device is judged inactive until it answers")]
    private static partial void LogAskFailed(ILogger logger, int partition, string node, string error);

    [LoggerMessage(EventId = 2673, Level = LogLevel.Information, Message = "Connectivity partition {Partition} activated: {Devices} device(s) known, {Connected} connected to {Nodes} node(s), {Disconnected} shown connected to no live node disconnected")]
    private static partial void LogActivated(ILogger logger, int partition, int devices, int connected, int nodes, int disconnected);

    [LoggerMessage(EventId = 2678, Level = LogLevel.Information, Message = "Connectivity partition {Partition}: every live node has now said which devices it has; {Disconnected} shown connected to no live node disconnected")]
    private static partial void LogAllHeard(ILogger logger, int partition, int disconnected);

    [LoggerMessage(EventId = 2674, Level = LogLevel.Information, Message = "Connectivity partition {Partition}: node {Node} is dead; {Devices} device(s) connected through it lost that connection")]
    private static partial void LogNodeGone(ILogger logger, int partition, SiloAddress node, int devices);

    [LoggerMessage(EventId = 2675, Level = LogLevel.Warning, Message = "Connectivity partition {Partition}: writing at deactivation failed; its next activation writes from storage and the nodes")]
    private static partial void LogFlushFailed(ILogger logger, Exception exception, int partition);
}

/// <summary>
/// A cluster node's <see cref="IConnectivityElsewhere"/>: the reports of one flush go to their partitions, one call
/// per partition, all at once.
/// </summary>
internal sealed partial class ConnectivityAcrossNodes(IGrainFactory grains, ILocalSiloDetails self, ILogger<ConnectivityAcrossNodes> logger) : IConnectivityElsewhere
{
    private static readonly TimeSpan s_reportTimeout = TimeSpan.FromSeconds(10);

    public async Task ReportAsync(IReadOnlyList<ConnectivityReport> reports, ICollection<long> notTaken, CancellationToken cancellationToken)
    {
        var byPartition = ConnectivityPartitions.ByPartition(reports);
        var calls = new List<(List<DeviceReport> Reports, Task Call)>();
        for (var partition = 0; partition < byPartition.Length; partition++)
        {
            if (byPartition[partition] is { } list)
            {
                calls.Add((list, grains.GetGrain<IConnectivityPartitionGrain>(partition).Report(self.SiloAddress, [.. list]).WaitAsync(s_reportTimeout, cancellationToken)));
            }
        }

        Exception? failure = null;
        var failed = 0;
        foreach (var (list, call) in calls)
        {
            try
            {
                await call;
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                failure ??= e;
                failed++;
                foreach (var report in list)
                {
                    notTaken.Add(report.DeviceSeq);
                }
            }
        }

        if (failure is not null)
        {
            LogReportFailed(logger, failure, failed, calls.Count);
        }
    }

    [LoggerMessage(EventId = 2676, Level = LogLevel.Warning, Message = "{Failed} of {Partitions} connectivity partition(s) did not take this node's reports; they are reported again at the next flush")]
    private static partial void LogReportFailed(ILogger logger, Exception exception, int failed, int partitions);
}

/// <summary>
/// Wakes every connectivity partition when this node has started, whenever a node is seen dead, and every few
/// seconds: a partition that lived on the dead node, or that Orleans deactivated because its directory entry lived
/// there, is rebuilt at once, not at its devices' next report (an idle device's may never come).
/// </summary>
internal sealed partial class ConnectivityPartitionsAwake(IGrainFactory grains, IClusterMembershipService membership, IHostApplicationLifetime lifetime, TimeProvider time,
    ILogger<ConnectivityPartitionsAwake> logger) : BackgroundService
{
    /// <summary>How often every partition is woken besides the deaths: 32 calls per node, a partition that is up answers at once.</summary>
    private static readonly TimeSpan s_wakeInterval = TimeSpan.FromSeconds(3);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!await lifetime.StartedAsync(stoppingToken))
        {
            return;
        }

        var dead = new HashSet<SiloAddress>();
        var wake = true;
        var known = -1L;
        var nextWake = time.GetUtcNow();
        while (!stoppingToken.IsCancellationRequested)
        {
            // Also every few seconds: Orleans deactivates the activations whose directory entries lived on a node
            // that died (here, partitions on the surviving nodes), after the wake that the death caused, and a
            // partition with no reports to take would stay down, its dead node's devices shown connected.
            if (time.GetUtcNow() >= nextWake)
            {
                wake = true;
            }

            var snapshot = membership.CurrentSnapshot;
            if (snapshot.Version.Value != known)
            {
                known = snapshot.Version.Value;
                foreach (var (address, member) in snapshot.Members)
                {
                    if (member.Status == SiloStatus.Dead && dead.Add(address))
                    {
                        wake = true;
                    }
                }
            }

            if (wake)
            {
                wake = !await WakeAllAsync(stoppingToken);
                nextWake = time.GetUtcNow() + s_wakeInterval;
            }

            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>True when every partition answered.</summary>
    private async Task<bool> WakeAllAsync(CancellationToken cancellationToken)
    {
        var calls = new Task[ConnectivityPartitions.Count];
        for (var partition = 0; partition < calls.Length; partition++)
        {
            calls[partition] = grains.GetGrain<IConnectivityPartitionGrain>(partition).Wake().WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }

        try
        {
            await Task.WhenAll(calls);
            return true;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            LogWakeFailed(logger, e);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    [LoggerMessage(EventId = 2677, Level = LogLevel.Warning, Message = "Waking the connectivity partitions failed; tried again shortly")]
    private static partial void LogWakeFailed(ILogger logger, Exception exception);
}
