using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// Whether each device is active, kept as ThingsBoard keeps it: server attributes <c>active</c>,
/// <c>lastConnectTime</c>, <c>lastDisconnectTime</c> and <c>lastActivityTime</c>, and <c>active</c> also as a time
/// series (ThingsBoard's <c>persistToTelemetry</c>), so that a device's connectivity history can be charted.
/// </summary>
/// <remarks>
/// Design: one owner. This process's connections of each device are counted by one loop only
/// (<see cref="ExecuteAsync"/>); connects, disconnects and flushes reach it as messages in a mailbox, so there is no
/// lock and no order in which two threads could interleave a connect and a disconnect. Activity is the one thing on
/// the hot path (every telemetry message): it is not a message but a timestamp in a per-device cell that the loop
/// reads at each flush, so a busy device costs one volatile write per message.
/// At each flush (once a second) the loop reports what changed (<see cref="ConnectivityReport"/>) to the devices'
/// <see cref="ConnectivityOwner"/>, which judges inactivity and writes. On a single server that owner is this
/// tracker's own. On a cluster node the reports go to the owners of the devices' partitions
/// (<see cref="Elsewhere"/>), which take the reports of every node: a device's connectivity is kept in one place
/// cluster-wide, whichever nodes it connects to.
/// </remarks>
public sealed partial class ConnectivityTracker : BackgroundService
{
    private readonly IDeviceStore _devices;
    private readonly TimeProvider _time;
    private readonly ILogger<ConnectivityTracker> _logger;

    private readonly IAttributeStore _attributes;
    private readonly TelemetryIngest _ingest;
    private readonly Events.EventSignal? _signal;

    /// <summary>The single server's owner of every device; null on a cluster node.</summary>
    private ConnectivityOwner? _owner;

    /// <summary>This process's connections and latest times of each device, by row number; touched by the loop only.</summary>
    private readonly Dictionary<long, Local> _locals = [];

    /// <summary>Hot-path activity cells, by device row number: written by anyone, read by the loop.</summary>
    private readonly ConcurrentDictionary<long, ActivityCell> _activity = new();

    private readonly Channel<Message> _mailbox = Channel.CreateUnbounded<Message>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>A cluster node's reports under way to their owners (one at a time); null when none is.</summary>
    private Task? _reporting;

    public ConnectivityTracker(IAttributeStore attributes, IDeviceStore devices, TelemetryIngest ingest, TimeProvider time, ILogger<ConnectivityTracker> logger,
        Events.EventSignal? signal = null)
    {
        _attributes = attributes;
        _devices = devices;
        _ingest = ingest;
        _time = time;
        _logger = logger;
        _signal = signal;
    }

    /// <summary>How often changes are reported (and, on a single server, connects, disconnects and inactivity written).</summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How often a device's lastActivityTime is written while it keeps sending (a change of <c>active</c>, a connect
    /// or a disconnect is written at the next flush). A minute, as ThingsBoard checks device state: with 10 s, a fleet
    /// that reports every 10 s (JT/T 808 terminals) rewrote the attribute of every device at every report, 1,000 rows
    /// a second for 10,000 terminals in one transaction a second, and the reports waiting for their commit behind it
    /// made the p99 from report to answer 58 to 65 ms instead of 32 (docs/benchmarks.md, JT/T 808).
    /// </summary>
    public TimeSpan ActivityWriteInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// On a cluster node: where the reports go (the owners of the devices' partitions). Null on a single server,
    /// whose tracker owns every device itself.
    /// </summary>
    public IConnectivityElsewhere? Elsewhere { get; init; }

    public void Connected(Device device) => Post(new Message(MessageKind.Connected, device, Now(), null));

    public void Disconnected(Device device) => Post(new Message(MessageKind.Disconnected, device, Now(), null));

    /// <summary>The device sent something (telemetry over HTTP counts too).</summary>
    public void Activity(Device device)
    {
        if (!_activity.TryGetValue(device.Seq, out var cell))
        {
            cell = _activity.GetOrAdd(device.Seq, static (_, d) => new ActivityCell(d), device);
        }

        // The hot path only stores a number; the loop picks it up at the next flush.
        Volatile.Write(ref cell.Pending, Now());
    }

    /// <summary>
    /// The devices connected to this process now that <paramref name="which"/> picks (by row number), as reports:
    /// asked by a cluster partition's owner when it is rebuilt on another node.
    /// </summary>
    public Task<ConnectivityReport[]> ConnectedAsync(Func<long, bool> which)
    {
        var query = new ConnectedQuery(which);
        if (!_mailbox.Writer.TryWrite(new Message(MessageKind.ConnectedQuery, null, 0, null, query)))
        {
            query.Result.TrySetResult([]);
        }

        return query.Result.Task;
    }

    /// <summary>
    /// Asks the loop to report (and on a single server write) what changed now, and completes when it has (an
    /// explicit sync point for tests and for shutdown). The periodic flush does the same without waiting.
    /// </summary>
    public Task FlushAsync()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_mailbox.Writer.TryWrite(new Message(MessageKind.Flush, null, 0, done)))
        {
            done.TrySetResult();
        }

        return done.Task;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = _time.CreateTimer(
            static state => ((ConnectivityTracker)state!)._mailbox.Writer.TryWrite(new Message(MessageKind.Flush, null, 0, null)),
            this, FlushInterval, FlushInterval);
        var reader = _mailbox.Reader;
        try
        {
            if (Elsewhere is null)
            {
                _owner = new ConnectivityOwner(_attributes, _ingest, new ProfileTimeouts(_devices, _signal), _logger) { ActivityWriteInterval = ActivityWriteInterval };
                await RestoreAsync(_owner, stoppingToken);
            }

            while (await reader.WaitToReadAsync(stoppingToken))
            {
                while (reader.TryRead(out var message))
                {
                    await HandleAsync(message, waitForReports: false, CancellationToken.None);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        // Stopping: take no more messages, apply what is queued and report (write) it all once more.
        _mailbox.Writer.TryComplete();
        while (reader.TryRead(out var message))
        {
            await HandleAsync(message, waitForReports: true, CancellationToken.None);
        }

        await FlushChangesAsync(waitForReports: true, CancellationToken.None);
    }

    /// <summary>
    /// A single server starts from where storage says connectivity stood: devices shown active stay active (no new
    /// point of the series) until they reconnect or fall silent past their timeout, which is then written as for any
    /// device. Without this, a device active when the server stopped and never heard from again would stay active
    /// forever. Messages that arrive meanwhile wait in the mailbox and are applied after.
    /// </summary>
    private async Task RestoreAsync(ConnectivityOwner owner, CancellationToken cancellationToken)
    {
        try
        {
            owner.Restore(await _devices.ListActiveDevicesAsync(cancellationToken));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogRestoreFailed(_logger, e);
        }
    }

    private async Task HandleAsync(Message message, bool waitForReports, CancellationToken cancellationToken)
    {
        switch (message.Kind)
        {
            case MessageKind.Connected:
            {
                var local = LocalOf(message.Device!);
                local.Connections++;
                local.LastConnect = Math.Max(local.LastConnect, message.Ts);
                local.LastActivity = Math.Max(local.LastActivity, message.Ts);
                local.Dirty = true;
                break;
            }

            case MessageKind.Disconnected:
            {
                var local = LocalOf(message.Device!);
                local.Connections = Math.Max(0, local.Connections - 1);
                local.LastDisconnect = Math.Max(local.LastDisconnect, message.Ts);
                local.Dirty = true;
                break;
            }

            case MessageKind.Flush:
                try
                {
                    // A flush someone waits for waits for the reports too.
                    await FlushChangesAsync(waitForReports || message.Done is not null, cancellationToken);
                }
                finally
                {
                    message.Done?.TrySetResult();
                }

                break;
            case MessageKind.ConnectedQuery:
            {
                var query = (ConnectedQuery)message.Extra!;
                var connected = new List<ConnectivityReport>();
                foreach (var (seq, local) in _locals)
                {
                    if (local.Connections > 0 && query.Which(seq))
                    {
                        connected.Add(local.Report());
                    }
                }

                query.Result.TrySetResult([.. connected]);
                break;
            }

            case MessageKind.Reported:
            {
                // The reports of one flush reached their owners (but those of Extra): a device no longer connected
                // here and unchanged since is forgotten here; the others are reported again at the next flush.
                var (sent, notTaken) = ((List<Local> Sent, HashSet<long> NotTaken))message.Extra!;
                foreach (var local in sent)
                {
                    if (notTaken.Contains(local.Device.Seq))
                    {
                        local.Dirty = true;
                    }
                    else if (!local.Dirty && local.Connections == 0)
                    {
                        _locals.Remove(local.Device.Seq);
                    }
                }

                break;
            }
        }
    }

    /// <summary>
    /// Reports what changed since the last flush: on a single server to its owner, which then writes; on a cluster
    /// node to the partitions' owners, without waiting for them unless asked (a rebuilt owner asks this loop which
    /// devices are connected here while the reports wait for it).
    /// </summary>
    private async Task FlushChangesAsync(bool waitForReports, CancellationToken cancellationToken)
    {
        foreach (var (seq, cell) in _activity)
        {
            var pending = Interlocked.Exchange(ref cell.Pending, 0);
            if (pending > 0)
            {
                var local = LocalOf(cell.Device);
                if (pending > local.LastActivity)
                {
                    local.LastActivity = pending;
                    local.Dirty = true;
                }
            }
        }

        if (_owner is { } owner)
        {
            List<long>? gone = null;
            foreach (var (seq, local) in _locals)
            {
                if (local.Dirty)
                {
                    local.Dirty = false;
                    owner.Report(0, local.Report());
                }

                if (local.Connections == 0)
                {
                    (gone ??= []).Add(seq);
                }
            }

            if (gone is not null)
            {
                foreach (var seq in gone)
                {
                    _locals.Remove(seq);
                }
            }

            await owner.FlushAsync(Now(), cancellationToken);
            return;
        }

        if (_reporting is { IsCompleted: false } underWay)
        {
            if (!waitForReports)
            {
                // One flush's reports at a time: the changes since wait for the next flush.
                return;
            }

            await underWay;
        }

        var reports = new List<ConnectivityReport>();
        var sent = new List<Local>();
        foreach (var local in _locals.Values)
        {
            if (local.Dirty)
            {
                local.Dirty = false;
                reports.Add(local.Report());
                sent.Add(local);
            }
        }

        if (reports.Count == 0)
        {
            return;
        }

        _reporting = ReportAsync(Elsewhere!, reports, sent);
        if (waitForReports)
        {
            await _reporting;
            // Applied here at once: the loop is not reading its mailbox now.
            while (_mailbox.Reader.TryPeek(out var next) && next.Kind == MessageKind.Reported && _mailbox.Reader.TryRead(out next))
            {
                await HandleAsync(next, waitForReports: false, cancellationToken);
            }
        }
    }

    private async Task ReportAsync(IConnectivityElsewhere elsewhere, List<ConnectivityReport> reports, List<Local> sent)
    {
        var notTaken = new HashSet<long>();
        try
        {
            await elsewhere.ReportAsync(reports, notTaken, CancellationToken.None);
        }
        catch (Exception e)
        {
            LogReportFailed(_logger, e, reports.Count);
            foreach (var report in reports)
            {
                notTaken.Add(report.DeviceSeq);
            }
        }

        // Back to the loop, which alone touches the devices' states. After shutdown nobody reads it.
        _mailbox.Writer.TryWrite(new Message(MessageKind.Reported, null, 0, null, (sent, notTaken)));
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private void Post(Message message)
    {
        // Unbounded: connects and disconnects are rare next to telemetry, and losing one would leave a device shown
        // connected forever. After shutdown the write fails and the message is of no use any more.
        _mailbox.Writer.TryWrite(message);
    }

    private Local LocalOf(Device device)
    {
        if (!_locals.TryGetValue(device.Seq, out var local))
        {
            local = new Local(device);
            _locals[device.Seq] = local;
        }

        return local;
    }

    [LoggerMessage(EventId = 2104, Level = LogLevel.Warning, Message = "Reading which devices were active failed; they stay shown active until they are heard from")]
    private static partial void LogRestoreFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Warning, Message = "Reporting the connectivity of {Count} device(s) to their owners failed; it is reported again at the next flush")]
    private static partial void LogReportFailed(ILogger logger, Exception exception, long count);

    private enum MessageKind
    {
        Connected,
        Disconnected,
        Flush,
        ConnectedQuery,
        Reported,
    }

    /// <summary>A message to the loop; <c>Ts</c> is the time of the event.</summary>
    private readonly record struct Message(MessageKind Kind, Device? Device, long Ts, TaskCompletionSource? Done, object? Extra = null);

    private sealed class ConnectedQuery(Func<long, bool> which)
    {
        public Func<long, bool> Which { get; } = which;
        public TaskCompletionSource<ConnectivityReport[]> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class ActivityCell(Device device)
    {
        public readonly Device Device = device;
        public long Pending;
    }

    /// <summary>This process's side of a device: its connections here and the latest times seen here.</summary>
    private sealed class Local(Device device)
    {
        public readonly Device Device = device;
        public int Connections;
        public bool Dirty;
        public long LastConnect;
        public long LastDisconnect;
        public long LastActivity;

        public ConnectivityReport Report() => new(Device.Seq, Device.TenantId, Device.ProfileId, Connections, LastConnect, LastDisconnect, LastActivity);
    }
}
