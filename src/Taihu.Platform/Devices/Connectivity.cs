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
/// Design: one owner. Every device's state is read and changed by one loop only (<see cref="ExecuteAsync"/>);
/// connects, disconnects and flushes reach it as messages in a mailbox, so there is no lock on the state and no
/// order in which two threads could interleave a connect and a disconnect. The state holds numbers and the
/// device's identity, never a connection: a later cluster step can move it into a per-device grain as it is.
/// Activity is the one thing on the hot path (every telemetry message): it is not a message but a timestamp in a
/// per-device cell that the owner reads at each flush, so a busy device costs one volatile write per message.
/// A flush (once a second) writes what changed, all devices in one transaction, through the attribute store
/// (whose commit reaches live subscribers) and queues the changes of <c>active</c> into the telemetry pipeline.
/// </remarks>
public sealed partial class ConnectivityTracker(IAttributeStore attributes, IDeviceStore devices, TelemetryIngest ingest, TimeProvider time, ILogger<ConnectivityTracker> logger,
    Events.EventSignal? signal = null)
    : BackgroundService
{
    /// <summary>Profiles' inactivity timeouts, one read per profile (not per device that connects).</summary>
    private readonly ProfileTimeouts _profileTimeouts = new(devices, signal);

    /// <summary>The owner's state, by device row number; touched by the owner loop only.</summary>
    private readonly Dictionary<long, State> _states = [];

    /// <summary>Hot-path activity cells, by device row number: written by anyone, read by the owner.</summary>
    private readonly ConcurrentDictionary<long, ActivityCell> _activity = new();

    private readonly Channel<Message> _mailbox = Channel.CreateUnbounded<Message>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>How often connects, disconnects and inactivity are written.</summary>
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
    /// Other processes write the same devices' connectivity: the nodes of a cluster, to any of which a device may
    /// connect. This process then knows only the devices connected to it, and what it knew of a device that has
    /// since connected to another node is stale: before it marks a device inactive it reads the stored attributes,
    /// and forgets a device another node has connected since (a later <c>lastConnectTime</c>) or takes the later
    /// activity another node wrote; and it writes only the times it changed, so that an old disconnect does not
    /// write back an old connect time over the newer one.
    /// </summary>
    public bool SharedStorage { get; init; }

    public void Connected(Device device) => Post(new Message(MessageKind.Connected, device, Now(), null));

    public void Disconnected(Device device) => Post(new Message(MessageKind.Disconnected, device, Now(), null));

    /// <summary>The device sent something (telemetry over HTTP counts too).</summary>
    public void Activity(Device device)
    {
        if (!_activity.TryGetValue(device.Seq, out var cell))
        {
            cell = _activity.GetOrAdd(device.Seq, static (_, d) => new ActivityCell(d), device);
        }

        // The hot path only stores a number; the owner picks it up at the next flush.
        Volatile.Write(ref cell.Pending, Now());
    }

    /// <summary>
    /// Which of <paramref name="deviceSeqs"/> have a connection to this process now (asked by the node that
    /// succeeds a dead cluster node, to leave alone the devices that live nodes hold).
    /// </summary>
    public Task<long[]> ConnectedAmongAsync(long[] deviceSeqs)
    {
        var query = new ConnectedQuery(deviceSeqs);
        if (!_mailbox.Writer.TryWrite(new Message(MessageKind.ConnectedQuery, null, 0, null, query)))
        {
            query.Result.TrySetResult([]);
        }

        return query.Result.Task;
    }

    /// <summary>
    /// The devices of a cluster node that died at <paramref name="diedAtMs"/> (as detected), shown connected in
    /// storage and connected to no live node: this process takes them as its own, with a disconnect at that time
    /// (written, and sent to the event log, at the next flush), so that they go inactive past their profile's
    /// timeout as any device disconnected here does. A device connected here meanwhile is left as it is.
    /// </summary>
    public void AdoptDevicesOfDeadNode(IReadOnlyList<StoredConnectivity> devices, long diedAtMs) =>
        Post(new Message(MessageKind.AdoptLost, null, diedAtMs, null, devices));

    /// <summary>
    /// Asks the owner to write what changed now and completes when it has (an explicit sync point for tests and
    /// for shutdown). The periodic flush does the same without waiting.
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
        using var timer = time.CreateTimer(
            static state => ((ConnectivityTracker)state!)._mailbox.Writer.TryWrite(new Message(MessageKind.Flush, null, 0, null)),
            this, FlushInterval, FlushInterval);
        var reader = _mailbox.Reader;
        try
        {
            await RestoreAsync(stoppingToken);
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                while (reader.TryRead(out var message))
                {
                    await HandleAsync(message, CancellationToken.None);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        // Stopping: take no more messages, apply what is queued and write it all once more.
        _mailbox.Writer.TryComplete();
        while (reader.TryRead(out var message))
        {
            await HandleAsync(message, CancellationToken.None);
        }

        await WriteChangesAsync(CancellationToken.None);
    }

    /// <summary>
    /// Starts from where storage says connectivity stood: devices shown active stay active (no new point of the
    /// series) until they reconnect or fall silent past their timeout, which is then written as for any device.
    /// Without this, a device active when the server stopped and never heard from again would stay active forever.
    /// Messages that arrive meanwhile wait in the mailbox and are applied after.
    /// </summary>
    private async Task RestoreAsync(CancellationToken cancellationToken)
    {
        IReadOnlyList<StoredConnectivity> stored;
        try
        {
            stored = await devices.ListActiveDevicesAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogRestoreFailed(logger, e);
            return;
        }

        foreach (var record in stored)
        {
            var state = StateOf(record.Device);
            state.Active = true;
            state.LastConnect = record.LastConnect;
            state.LastDisconnect = record.LastDisconnect;
            state.LastConnectRecorded = record.LastConnect;
            state.LastDisconnectRecorded = record.LastDisconnect;
            state.LastActivity = record.LastActivity;
            state.LastActivityWritten = record.LastActivity;
        }
    }

    private async Task HandleAsync(Message message, CancellationToken cancellationToken)
    {
        switch (message.Kind)
        {
            case MessageKind.Connected:
            {
                var state = StateOf(message.Device!);
                state.Connections++;
                state.LastConnect = message.Ts;
                state.LastActivity = Math.Max(state.LastActivity, message.Ts);
                SetActive(state, true, message.Ts);
                state.Dirty = true;
                break;
            }

            case MessageKind.Disconnected:
            {
                var state = StateOf(message.Device!);
                state.Connections = Math.Max(0, state.Connections - 1);
                state.LastDisconnect = message.Ts;
                state.Dirty = true;
                break;
            }

            case MessageKind.Flush:
                try
                {
                    await WriteChangesAsync(cancellationToken);
                }
                finally
                {
                    message.Done?.TrySetResult();
                }

                break;
            case MessageKind.ConnectedQuery:
            {
                var query = (ConnectedQuery)message.Extra!;
                var connected = new List<long>();
                foreach (var seq in query.DeviceSeqs)
                {
                    if (_states.TryGetValue(seq, out var known) && known.Connections > 0)
                    {
                        connected.Add(seq);
                    }
                }

                query.Result.TrySetResult([.. connected]);
                break;
            }

            case MessageKind.AdoptLost:
                foreach (var record in (IReadOnlyList<StoredConnectivity>)message.Extra!)
                {
                    var state = StateOf(record.Device);
                    if (state.Connections > 0 || state.LastConnect > record.LastConnect)
                    {
                        continue;
                    }

                    state.Active = true;
                    state.LastConnect = record.LastConnect;
                    state.LastConnectRecorded = record.LastConnect;
                    state.LastDisconnectRecorded = record.LastDisconnect;
                    state.LastDisconnect = Math.Max(message.Ts, record.LastConnect);
                    state.LastActivity = Math.Max(state.LastActivity, Math.Max(record.LastActivity, record.LastConnect));
                    state.LastActivityWritten = state.LastActivity;
                    state.Dirty = true;
                }

                break;
            case MessageKind.TimeoutLoaded:
                if (_states.TryGetValue(message.Device!.Seq, out var loaded))
                {
                    loaded.InactivityTimeoutMs = message.Ts;
                }

                break;
        }
    }

    /// <summary>
    /// Writes what changed since the last flush and marks silent devices inactive. Activity alone (a device that
    /// keeps sending) is written at most every <see cref="ActivityWriteInterval"/>: a thousand busy devices must
    /// not cost a thousand writes a second.
    /// </summary>
    private async Task WriteChangesAsync(CancellationToken cancellationToken)
    {
        var now = Now();
        foreach (var (seq, cell) in _activity)
        {
            var pending = Interlocked.Exchange(ref cell.Pending, 0);
            if (pending > 0)
            {
                var state = StateOf(cell.Device);
                if (pending > state.LastActivity)
                {
                    state.LastActivity = pending;
                    SetActive(state, true, pending);
                }
            }
        }

        List<long>? silent = null;
        foreach (var (seq, state) in _states)
        {
            var timeout = state.InactivityTimeoutMs;
            if (state.Active && state.Connections == 0 && timeout > 0 && now - state.LastActivity > timeout)
            {
                if (SharedStorage)
                {
                    (silent ??= []).Add(seq);
                }
                else
                {
                    SetActive(state, false, now);
                }
            }
        }

        if (silent is not null)
        {
            await JudgeSilentAsync(silent, now, cancellationToken);
        }

        List<AttributeChange>? changes = null;
        List<Events.DeviceEventRecord>? events = null;
        foreach (var (seq, state) in _states)
        {
            var activityDue = state.LastActivity > state.LastActivityWritten && now - state.LastWritten >= (long)ActivityWriteInterval.TotalMilliseconds;
            if (!state.Dirty && !activityDue)
            {
                continue;
            }

            state.Dirty = false;
            state.LastWritten = now;
            var entries = new List<AttributeEntry>(4) { new("active", now, KvValue.Of(state.Active)) };
            if (!SharedStorage || state.LastActivity > state.LastActivityWritten)
            {
                entries.Add(new AttributeEntry("lastActivityTime", now, KvValue.Of(state.LastActivity)));
            }

            state.LastActivityWritten = state.LastActivity;
            if (state.LastConnect > 0 && (!SharedStorage || state.LastConnect > state.LastConnectRecorded))
            {
                entries.Add(new AttributeEntry("lastConnectTime", now, KvValue.Of(state.LastConnect)));
            }

            if (state.LastDisconnect > 0 && (!SharedStorage || state.LastDisconnect > state.LastDisconnectRecorded))
            {
                entries.Add(new AttributeEntry("lastDisconnectTime", now, KvValue.Of(state.LastDisconnect)));
            }

            (changes ??= []).Add(new AttributeChange(seq, AttributeScope.Server, entries));
            // Connects and disconnects since the last write go to the event log with it (integrations send them).
            if (state.LastConnect > state.LastConnectRecorded)
            {
                (events ??= []).Add(new Events.DeviceEventRecord(seq, Events.PlatformEventType.Connect, state.LastConnect));
            }

            if (state.LastDisconnect > state.LastDisconnectRecorded)
            {
                (events ??= []).Add(new Events.DeviceEventRecord(seq, Events.PlatformEventType.Disconnect, state.LastDisconnect));
            }
        }

        if (changes is not null)
        {
            try
            {
                await attributes.SaveManyAsync(changes, events, cancellationToken);
                foreach (var change in changes)
                {
                    var state = _states[change.DeviceSeq];
                    state.LastConnectRecorded = state.LastConnect;
                    state.LastDisconnectRecorded = state.LastDisconnect;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Not written: mark them again for the next flush.
                foreach (var change in changes)
                {
                    _states[change.DeviceSeq].Dirty = true;
                }

                LogFlushFailed(logger, e, changes.Count);
            }
        }

        await WriteActiveSeriesAsync();
    }

    /// <summary>
    /// With <see cref="SharedStorage"/>: devices silent past their timeout as far as this process knows, judged
    /// against what the other nodes stored (one read for all of them).
    /// </summary>
    private async Task JudgeSilentAsync(List<long> silent, long now, CancellationToken cancellationToken)
    {
        Dictionary<long, List<AttributeEntry>> stored;
        try
        {
            stored = await attributes.GetManyAsync(silent, AttributeScope.Server, ["lastConnectTime", "lastActivityTime"], cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Judged at the next flush.
            LogJudgeFailed(logger, e, silent.Count);
            return;
        }

        foreach (var seq in silent)
        {
            var state = _states[seq];
            long storedConnect = 0, storedActivity = 0;
            if (stored.TryGetValue(seq, out var entries))
            {
                foreach (var entry in entries)
                {
                    if (entry.Value.Type != DataType.Long)
                    {
                        continue;
                    }

                    var value = entry.Value.Long;
                    if (entry.Key == "lastConnectTime")
                    {
                        storedConnect = value;
                    }
                    else if (entry.Key == "lastActivityTime")
                    {
                        storedActivity = value;
                    }
                }
            }

            if (storedConnect > state.LastConnect)
            {
                // Connected to another node since: that node keeps it. Nothing of it is left here to write.
                _states.Remove(seq);
                _activity.TryRemove(seq, out _);
            }
            else if (storedActivity > state.LastActivity && now - storedActivity <= state.InactivityTimeoutMs)
            {
                state.LastActivity = storedActivity;
                state.LastActivityWritten = storedActivity;
            }
            else
            {
                SetActive(state, false, now);
            }
        }
    }

    /// <summary>The changes of <c>active</c> since the last flush, as points of the time series <c>active</c>.</summary>
    private async Task WriteActiveSeriesAsync()
    {
        List<Task>? pending = null;
        foreach (var (seq, state) in _states)
        {
            if (state.ActiveChanges.Count == 0)
            {
                continue;
            }

            var request = ingest.Rent();
            request.DeviceSeq = seq;
            request.TenantId = state.TenantId;
            foreach (var (ts, active) in state.ActiveChanges)
            {
                request.Points.Add(new TelemetryPoint("active", ts, KvValue.Of(active)));
            }

            state.ActiveChanges.Clear();
            (pending ??= []).Add(ingest.SubmitAsync(request).AsTask());
        }

        if (pending is null)
        {
            return;
        }

        foreach (var task in pending)
        {
            try
            {
                await task;
            }
            catch (Exception e)
            {
                LogSeriesFailed(logger, e);
            }
        }
    }

    private static void SetActive(State state, bool active, long ts)
    {
        if (state.Active == active)
        {
            return;
        }

        state.Active = active;
        state.Dirty = true;
        state.ActiveChanges.Add((ts, active));
    }

    private long Now() => time.GetUtcNow().ToUnixTimeMilliseconds();

    private void Post(Message message)
    {
        // Unbounded: connects and disconnects are rare next to telemetry, and losing one would leave a device shown
        // connected forever. After shutdown the write fails and the message is of no use any more.
        _mailbox.Writer.TryWrite(message);
    }

    private State StateOf(Device device)
    {
        if (!_states.TryGetValue(device.Seq, out var state))
        {
            state = new State { TenantId = device.TenantId };
            _states[device.Seq] = state;
            // The profile's timeout is looked up once, off the owner's loop; the answer comes back as a message.
            _ = LoadTimeoutAsync(device);
        }

        return state;
    }

    private async Task LoadTimeoutAsync(Device device)
    {
        try
        {
            Post(new Message(MessageKind.TimeoutLoaded, device, await _profileTimeouts.GetAsync(device.TenantId, device.ProfileId), null));
        }
        catch (Exception e)
        {
            LogProfileFailed(logger, e, device.Seq);
        }
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Writing the connectivity of {Count} device(s) failed; it is tried again at the next flush")]
    private static partial void LogFlushFailed(ILogger logger, Exception exception, long count);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Reading the profile of device {Seq} failed; its inactivity timeout stays at the default")]
    private static partial void LogProfileFailed(ILogger logger, Exception exception, long seq);

    [LoggerMessage(EventId = 2104, Level = LogLevel.Warning, Message = "Reading which devices were active failed; they stay shown active until they are heard from")]
    private static partial void LogRestoreFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Warning, Message = "Reading the stored connectivity of {Count} silent device(s) failed; they are judged at the next flush")]
    private static partial void LogJudgeFailed(ILogger logger, Exception exception, long count);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Warning, Message = "Writing the time series 'active' failed; the attribute 'active' is still right")]
    private static partial void LogSeriesFailed(ILogger logger, Exception exception);

    private enum MessageKind
    {
        Connected,
        Disconnected,
        Flush,
        TimeoutLoaded,
        ConnectedQuery,
        AdoptLost,
    }

    /// <summary>A message to the owner; <c>Ts</c> is the time of the event (or the loaded timeout).</summary>
    private readonly record struct Message(MessageKind Kind, Device? Device, long Ts, TaskCompletionSource? Done, object? Extra = null);

    private sealed class ConnectedQuery(long[] deviceSeqs)
    {
        public long[] DeviceSeqs { get; } = deviceSeqs;
        public TaskCompletionSource<long[]> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class ActivityCell(Device device)
    {
        public readonly Device Device = device;
        public long Pending;
    }

    private sealed class State
    {
        public Guid TenantId;
        public int Connections;
        public bool Active;
        public bool Dirty;
        public long LastConnect;
        public long LastDisconnect;
        public long LastConnectRecorded;
        public long LastDisconnectRecorded;
        public long LastActivity;
        public long LastActivityWritten;
        public long LastWritten;
        public long InactivityTimeoutMs = DeviceProfile.DefaultInactivityTimeoutMs;
        public readonly List<(long Ts, bool Active)> ActiveChanges = [];
    }
}
