using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// What one process says of a device's connections to it, at one flush. Absolute, not a change: the number of its
/// connections there now and the latest times it saw, so that the same report taken twice, or a report taken again
/// after the owner was rebuilt, changes nothing.
/// </summary>
public readonly record struct ConnectivityReport(long DeviceSeq, Guid TenantId, Guid ProfileId, int Connections, long LastConnect, long LastDisconnect, long LastActivity);

/// <summary>
/// The one owner of the connectivity of a set of devices (<see cref="ConnectivityTracker"/> describes what is kept):
/// every device of a single server, or the devices of one partition of a cluster (a grain in Taihu.Cluster). It
/// takes the reports of the processes the devices connect to (each under a number of its own), judges the silent
/// devices inactive past their profile's timeout, and writes what changed at each <see cref="FlushAsync"/>. Being
/// the only writer of these devices' connectivity, it never reads it back.
/// </summary>
/// <remarks>
/// Not thread-safe: its owner (the tracker's loop, or the grain's turns) calls it one call at a time.
/// </remarks>
public sealed partial class ConnectivityOwner
{
    private readonly Func<IReadOnlyList<AttributeChange>, IReadOnlyList<Events.DeviceEventRecord>?, CancellationToken, Task> _save;
    private readonly TelemetryIngest _ingest;
    private readonly ProfileTimeouts _timeouts;
    private readonly ILogger _logger;
    private readonly Dictionary<long, State> _states = [];

    internal ConnectivityOwner(IAttributeStore attributes, TelemetryIngest ingest, ProfileTimeouts timeouts, ILogger logger)
        : this(attributes.SaveManyAsync, ingest, timeouts, logger)
    {
    }

    /// <param name="save">Writes the attribute changes and events of a flush in one transaction (or with other owners' in one).</param>
    internal ConnectivityOwner(Func<IReadOnlyList<AttributeChange>, IReadOnlyList<Events.DeviceEventRecord>?, CancellationToken, Task> save, TelemetryIngest ingest,
        ProfileTimeouts timeouts, ILogger logger)
    {
        _save = save;
        _ingest = ingest;
        _timeouts = timeouts;
        _logger = logger;
    }

    /// <summary>How often a device's lastActivityTime is written while it keeps sending (see <see cref="ConnectivityTracker.ActivityWriteInterval"/>).</summary>
    public TimeSpan ActivityWriteInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Devices known.</summary>
    public int Count => _states.Count;

    /// <summary>
    /// Starts from what storage says: devices shown active stay active (no new point of the series) until they
    /// connect again or fall silent past their timeout.
    /// </summary>
    public void Restore(IReadOnlyList<StoredConnectivity> stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        foreach (var record in stored)
        {
            var state = StateOf(record.Device.Seq, record.Device.TenantId, record.Device.ProfileId);
            state.Active = true;
            state.LastConnect = Math.Max(state.LastConnect, record.LastConnect);
            state.LastDisconnect = Math.Max(state.LastDisconnect, record.LastDisconnect);
            state.LastConnectRecorded = Math.Max(state.LastConnectRecorded, record.LastConnect);
            state.LastDisconnectRecorded = Math.Max(state.LastDisconnectRecorded, record.LastDisconnect);
            state.LastActivity = Math.Max(state.LastActivity, record.LastActivity);
            state.LastActivityWritten = Math.Max(state.LastActivityWritten, record.LastActivity);
        }
    }

    /// <summary>Process <paramref name="node"/> says this of the device.</summary>
    public void Report(int node, in ConnectivityReport report)
    {
        var state = StateOf(report.DeviceSeq, report.TenantId, report.ProfileId);
        if (report.LastConnect > state.LastConnect)
        {
            state.LastConnect = report.LastConnect;
            state.LastActivity = Math.Max(state.LastActivity, report.LastConnect);
            SetActive(state, true, report.LastConnect);
            state.Dirty = true;
        }

        if (report.LastDisconnect > state.LastDisconnect)
        {
            state.LastDisconnect = report.LastDisconnect;
            state.Dirty = true;
        }

        if (report.LastActivity > state.LastActivity)
        {
            state.LastActivity = report.LastActivity;
            SetActive(state, true, report.LastActivity);
        }

        state.SetConnections(node, report.Connections);
    }

    /// <summary>
    /// Process <paramref name="node"/> is gone (its process died): its connections are, at <paramref name="ts"/>.
    /// A device it had connected and no other process has is disconnected then, and goes inactive past its timeout.
    /// </summary>
    /// <returns>The devices that were connected through it.</returns>
    public int NodeGone(int node, long ts)
    {
        var lost = 0;
        foreach (var state in _states.Values)
        {
            if (state.SetConnections(node, 0) > 0)
            {
                lost++;
                if (state.Connections == 0 && ts > state.LastDisconnect)
                {
                    state.LastDisconnect = ts;
                    state.Dirty = true;
                }
            }
        }

        return lost;
    }

    /// <summary>
    /// Devices shown connected (a connect later than the last disconnect) that no process reports a connection of
    /// are disconnected at <paramref name="ts"/>: for an owner rebuilt after the process that held it died, once every
    /// live process has said which devices it has.
    /// </summary>
    public int DisconnectUnconnected(long ts)
    {
        var count = 0;
        foreach (var state in _states.Values)
        {
            if (state.Active && state.Connections == 0 && state.LastConnect > state.LastDisconnect && ts > state.LastConnect)
            {
                state.LastDisconnect = ts;
                state.Dirty = true;
                count++;
            }
        }

        return count;
    }

    /// <summary>
    /// Marks devices silent past their profile's timeout inactive and writes what changed, all devices in one
    /// transaction, through the attribute store (whose commit reaches live subscribers); the changes of
    /// <c>active</c> go into the telemetry pipeline. Activity alone is written at most every <see cref="ActivityWriteInterval"/>.
    /// </summary>
    /// <param name="now">The time of the flush.</param>
    /// <param name="judgeInactivity">False while a process may have connections this owner has not heard of yet.</param>
    /// <param name="cancellationToken">Cancels the writes.</param>
    public async Task FlushAsync(long now, CancellationToken cancellationToken, bool judgeInactivity = true)
    {
        foreach (var state in _states.Values)
        {
            if (state.InactivityTimeoutMs < 0)
            {
                state.InactivityTimeoutMs = await TimeoutOfAsync(state);
            }

            var timeout = state.InactivityTimeoutMs;
            if (judgeInactivity && state.Active && state.Connections == 0 && timeout > 0 && now - state.LastActivity > timeout)
            {
                SetActive(state, false, now);
            }
        }

        List<AttributeChange>? changes = null;
        List<State>? changed = null;
        List<Events.DeviceEventRecord>? events = null;
        var activityInterval = (long)ActivityWriteInterval.TotalMilliseconds;
        foreach (var (seq, state) in _states)
        {
            var activityDue = state.LastActivity > state.LastActivityWritten && now - state.LastWritten >= activityInterval;
            if (!state.Dirty && !activityDue)
            {
                continue;
            }

            state.Dirty = false;
            state.LastWritten = now;
            var entries = new List<AttributeEntry>(4)
            {
                new("active", now, KvValue.Of(state.Active)),
                new("lastActivityTime", now, KvValue.Of(state.LastActivity)),
            };
            state.LastActivityWritten = state.LastActivity;
            if (state.LastConnect > 0)
            {
                entries.Add(new AttributeEntry("lastConnectTime", now, KvValue.Of(state.LastConnect)));
            }

            if (state.LastDisconnect > 0)
            {
                entries.Add(new AttributeEntry("lastDisconnectTime", now, KvValue.Of(state.LastDisconnect)));
            }

            (changes ??= []).Add(new AttributeChange(seq, AttributeScope.Server, entries));
            (changed ??= []).Add(state);
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
                await _save(changes, events, cancellationToken);
                foreach (var state in changed!)
                {
                    state.LastConnectRecorded = state.LastConnect;
                    state.LastDisconnectRecorded = state.LastDisconnect;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Not written: marked again for the next flush.
                foreach (var state in changed!)
                {
                    state.Dirty = true;
                }

                LogFlushFailed(_logger, e, changes.Count);
            }
        }

        await WriteActiveSeriesAsync();
    }

    private async Task<long> TimeoutOfAsync(State state)
    {
        try
        {
            return await _timeouts.GetAsync(state.TenantId, state.ProfileId);
        }
        catch (Exception e)
        {
            LogProfileFailed(_logger, e, state.ProfileId);
            return DeviceProfile.DefaultInactivityTimeoutMs;
        }
    }

    /// <summary>The changes of <c>active</c> since the last flush, as points of the time series <c>active</c>.</summary>
    private async Task WriteActiveSeriesAsync()
    {
        List<Task>? pending = null;
        foreach (var (seq, state) in _states)
        {
            if (state.ActiveChanges is not { Count: > 0 } activeChanges)
            {
                continue;
            }

            var request = _ingest.Rent();
            request.DeviceSeq = seq;
            request.TenantId = state.TenantId;
            foreach (var (ts, active) in activeChanges)
            {
                request.Points.Add(new TelemetryPoint("active", ts, KvValue.Of(active)));
            }

            activeChanges.Clear();
            (pending ??= []).Add(_ingest.SubmitAsync(request).AsTask());
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
                LogSeriesFailed(_logger, e);
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
        (state.ActiveChanges ??= []).Add((ts, active));
    }

    private State StateOf(long seq, Guid tenantId, Guid profileId)
    {
        if (!_states.TryGetValue(seq, out var state))
        {
            state = new State { TenantId = tenantId, ProfileId = profileId };
            _states[seq] = state;
        }
        else if (state.ProfileId != profileId)
        {
            // Moved to another profile: its timeout is looked up again.
            state.ProfileId = profileId;
            state.InactivityTimeoutMs = -1;
        }

        return state;
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Writing the connectivity of {Count} device(s) failed; it is tried again at the next flush")]
    private static partial void LogFlushFailed(ILogger logger, Exception exception, long count);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Reading device profile {ProfileId} failed; its devices' inactivity timeout stays at the default")]
    private static partial void LogProfileFailed(ILogger logger, Exception exception, Guid profileId);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Warning, Message = "Writing the time series 'active' failed; the attribute 'active' is still right")]
    private static partial void LogSeriesFailed(ILogger logger, Exception exception);

    private sealed class State
    {
        public Guid TenantId;
        public Guid ProfileId;

        /// <summary>Connections over all processes.</summary>
        public int Connections;

        /// <summary>Connections by process, when any: (process, count) pairs; almost always one.</summary>
        private List<(int Node, int Count)>? _byNode;

        public bool Active;
        public bool Dirty;
        public long LastConnect;
        public long LastDisconnect;
        public long LastConnectRecorded;
        public long LastDisconnectRecorded;
        public long LastActivity;
        public long LastActivityWritten;
        public long LastWritten;

        /// <summary>In milliseconds; negative until looked up (at the next flush).</summary>
        public long InactivityTimeoutMs = -1;

        public List<(long Ts, bool Active)>? ActiveChanges;

        /// <summary>Sets the process's connections; returns what it had.</summary>
        public int SetConnections(int node, int count)
        {
            var byNode = _byNode;
            if (byNode is not null)
            {
                for (var i = 0; i < byNode.Count; i++)
                {
                    if (byNode[i].Node != node)
                    {
                        continue;
                    }

                    var before = byNode[i].Count;
                    if (count > 0)
                    {
                        byNode[i] = (node, count);
                    }
                    else
                    {
                        byNode.RemoveAt(i);
                    }

                    Connections += count - before;
                    return before;
                }
            }

            if (count > 0)
            {
                (_byNode ??= []).Add((node, count));
                Connections += count;
            }

            return 0;
        }
    }
}

/// <summary>
/// Makes the connectivity owners of one process: they share its lookups of profiles' inactivity timeouts (one read
/// per profile, forgotten when the profile changes).
/// </summary>
/// <remarks>
/// Their writes go out together: what the owners flushing at about the same time hand over is written in one
/// transaction, the next as soon as the one before has committed. Each attribute write takes the process's write
/// turn with the telemetry ingest, so a node hosting a dozen partitions that wrote on their own would hold its
/// ingest up a dozen times a second instead of once.
/// </remarks>
public sealed class ConnectivityOwners(IAttributeStore attributes, IDeviceStore devices, TelemetryIngest ingest, ILoggerFactory loggers, Events.EventSignal? signal = null)
{
    private readonly ProfileTimeouts _timeouts = new(devices, signal);
    private readonly GroupedWrites _writes = new(attributes);

    public ConnectivityOwner Create() => new(_writes.SaveAsync, ingest, _timeouts, loggers.CreateLogger<ConnectivityOwner>());

    /// <summary>
    /// One writer for the owners' flushes: each waits for the transaction its changes went out in. A failed
    /// transaction fails every flush in it (each marks its changes again for its next flush).
    /// </summary>
    private sealed class GroupedWrites
    {
        private readonly IAttributeStore _attributes;
        private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });

        public GroupedWrites(IAttributeStore attributes)
        {
            _attributes = attributes;
            _ = Task.Run(WriteAsync);
        }

        public Task SaveAsync(IReadOnlyList<AttributeChange> changes, IReadOnlyList<Events.DeviceEventRecord>? events, CancellationToken cancellationToken)
        {
            var pending = new Pending(changes, events);
            return _queue.Writer.TryWrite(pending) ? pending.Done.Task.WaitAsync(cancellationToken) : Task.FromCanceled(new CancellationToken(true));
        }

        private async Task WriteAsync()
        {
            var reader = _queue.Reader;
            var batch = new List<Pending>();
            var changes = new List<AttributeChange>();
            var events = new List<Events.DeviceEventRecord>();
            while (await reader.WaitToReadAsync())
            {
                batch.Clear();
                changes.Clear();
                events.Clear();
                while (reader.TryRead(out var pending))
                {
                    batch.Add(pending);
                    changes.AddRange(pending.Changes);
                    if (pending.Records is not null)
                    {
                        events.AddRange(pending.Records);
                    }
                }

                try
                {
                    await _attributes.SaveManyAsync(changes, events.Count > 0 ? events : null, CancellationToken.None);
                    foreach (var pending in batch)
                    {
                        pending.Done.TrySetResult();
                    }
                }
                catch (Exception e)
                {
                    foreach (var pending in batch)
                    {
                        pending.Done.TrySetException(e);
                    }
                }
            }
        }

        private sealed class Pending(IReadOnlyList<AttributeChange> changes, IReadOnlyList<Events.DeviceEventRecord>? events)
        {
            public IReadOnlyList<AttributeChange> Changes { get; } = changes;
            public IReadOnlyList<Events.DeviceEventRecord>? Records { get; } = events;
            public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }
}

/// <summary>
/// Where a cluster node's <see cref="ConnectivityTracker"/> hands its reports: the owners of the devices' connectivity,
/// on whichever nodes they live (Taihu.Cluster). A single server has none; its tracker owns every device itself.
/// </summary>
public interface IConnectivityElsewhere
{
    /// <summary>
    /// Hands the reports to their owners; completes when each owner took its share or failed to. The devices whose
    /// reports were not taken are added to <paramref name="notTaken"/> (reported again at the next flush).
    /// </summary>
    Task ReportAsync(IReadOnlyList<ConnectivityReport> reports, ICollection<long> notTaken, CancellationToken cancellationToken);
}
