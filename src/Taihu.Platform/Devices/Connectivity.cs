using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// Whether each device is active, kept as ThingsBoard keeps it: server attributes <c>active</c>,
/// <c>lastConnectTime</c>, <c>lastDisconnectTime</c> and <c>lastActivityTime</c>. Connects, disconnects and
/// activity are noted in memory on the hot path and written in the background once a second, so a telemetry
/// message never waits for a connectivity write. A device silent for longer than its profile's inactivity timeout
/// becomes inactive.
/// </summary>
public sealed partial class ConnectivityTracker(IAttributeStore attributes, IDeviceStore devices, TimeProvider time, ILogger<ConnectivityTracker> logger)
    : BackgroundService
{
    private readonly ConcurrentDictionary<long, State> _states = new();

    /// <summary>How often connects, disconnects and inactivity are written.</summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How often a device's lastActivityTime is written while it keeps sending.</summary>
    public TimeSpan ActivityWriteInterval { get; init; } = TimeSpan.FromSeconds(10);

    public void Connected(Device device)
    {
        var state = StateOf(device);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (state)
        {
            state.Connections++;
            state.Active = true;
            state.LastConnect = now;
            state.LastActivity = now;
            state.Dirty = true;
        }
    }

    public void Disconnected(Device device)
    {
        var state = StateOf(device);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (state)
        {
            state.Connections = Math.Max(0, state.Connections - 1);
            state.LastDisconnect = now;
            state.Dirty = true;
        }
    }

    /// <summary>The device sent something (telemetry over HTTP counts too).</summary>
    public void Activity(Device device)
    {
        var state = StateOf(device);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        // Written at most once per flush: the hot path only stores a number.
        Volatile.Write(ref state.LastActivityPending, now);
    }

    /// <summary>
    /// Writes what changed since the last call, all devices in one transaction, and marks silent devices inactive.
    /// Activity alone (a device that keeps sending) is written at most every <see cref="ActivityWriteInterval"/>:
    /// a thousand busy devices must not cost a thousand writes a second.
    /// </summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var changes = new List<AttributeChange>();
        foreach (var (seq, state) in _states)
        {
            lock (state)
            {
                var pending = Interlocked.Exchange(ref state.LastActivityPending, 0);
                if (pending > state.LastActivity)
                {
                    state.LastActivity = pending;
                    if (!state.Active)
                    {
                        state.Active = true;
                        state.Dirty = true;
                    }
                }

                var timeout = state.InactivityTimeoutMs;
                if (state.Active && state.Connections == 0 && timeout > 0 && now - state.LastActivity > timeout)
                {
                    state.Active = false;
                    state.Dirty = true;
                }

                var activityDue = state.LastActivity > state.LastActivityWritten && now - state.LastWritten >= (long)ActivityWriteInterval.TotalMilliseconds;
                if (state.Dirty || activityDue)
                {
                    state.Dirty = false;
                    state.LastWritten = now;
                    state.LastActivityWritten = state.LastActivity;
                    var entries = new List<AttributeEntry>(4)
                    {
                        new("active", now, KvValue.Of(state.Active)),
                        new("lastActivityTime", now, KvValue.Of(state.LastActivity)),
                    };
                    if (state.LastConnect > 0)
                    {
                        entries.Add(new AttributeEntry("lastConnectTime", now, KvValue.Of(state.LastConnect)));
                    }

                    if (state.LastDisconnect > 0)
                    {
                        entries.Add(new AttributeEntry("lastDisconnectTime", now, KvValue.Of(state.LastDisconnect)));
                    }

                    changes.Add(new AttributeChange(seq, AttributeScope.Server, entries));
                }
            }
        }

        if (changes.Count == 0)
        {
            return;
        }

        try
        {
            await attributes.SaveManyAsync(changes, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not written: mark them again for the next flush.
            foreach (var change in changes)
            {
                if (_states.TryGetValue(change.DeviceSeq, out var state))
                {
                    lock (state)
                    {
                        state.Dirty = true;
                    }
                }
            }

            LogFlushFailed(logger, e, changes.Count);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(FlushInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                await FlushAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException)
        {
        }

        await FlushAsync(CancellationToken.None);
    }

    private State StateOf(Device device)
    {
        if (_states.TryGetValue(device.Seq, out var state))
        {
            return state;
        }

        state = _states.GetOrAdd(device.Seq, static _ => new State());
        if (Interlocked.Exchange(ref state.TimeoutRequested, 1) == 0)
        {
            // The profile's timeout is looked up once, off the hot path.
            _ = LoadTimeoutAsync(device, state);
        }

        return state;
    }

    private async Task LoadTimeoutAsync(Device device, State state)
    {
        try
        {
            var profile = await devices.GetProfileAsync(device.TenantId, device.ProfileId);
            state.InactivityTimeoutMs = profile?.InactivityTimeoutMs ?? DeviceProfile.DefaultInactivityTimeoutMs;
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

    private sealed class State
    {
        public int Connections;
        public bool Active;
        public bool Dirty;
        public long LastConnect;
        public long LastDisconnect;
        public long LastActivity;
        public long LastActivityPending;
        public long LastActivityWritten;
        public long LastWritten;
        public long InactivityTimeoutMs = DeviceProfile.DefaultInactivityTimeoutMs;
        public int TimeoutRequested;
    }
}
