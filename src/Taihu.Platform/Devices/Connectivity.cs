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

    /// <summary>How often changes are written and inactivity checked.</summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(1);

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

    /// <summary>Writes what changed since the last call and marks silent devices inactive.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var (seq, state) in _states)
        {
            List<AttributeEntry>? entries = null;
            lock (state)
            {
                var pending = Interlocked.Exchange(ref state.LastActivityPending, 0);
                if (pending > state.LastActivity)
                {
                    state.LastActivity = pending;
                    state.Dirty = true;
                    if (!state.Active)
                    {
                        state.Active = true;
                    }
                }

                var timeout = state.InactivityTimeoutMs;
                if (state.Active && state.Connections == 0 && timeout > 0 && now - state.LastActivity > timeout)
                {
                    state.Active = false;
                    state.Dirty = true;
                }

                if (state.Dirty)
                {
                    state.Dirty = false;
                    entries =
                    [
                        new AttributeEntry("active", now, KvValue.Of(state.Active)),
                        new AttributeEntry("lastActivityTime", now, KvValue.Of(state.LastActivity)),
                    ];
                    if (state.LastConnect > 0)
                    {
                        entries.Add(new AttributeEntry("lastConnectTime", now, KvValue.Of(state.LastConnect)));
                    }

                    if (state.LastDisconnect > 0)
                    {
                        entries.Add(new AttributeEntry("lastDisconnectTime", now, KvValue.Of(state.LastDisconnect)));
                    }
                }
            }

            if (entries is not null)
            {
                try
                {
                    await attributes.SaveAsync(seq, AttributeScope.Server, entries, cancellationToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogFlushFailed(logger, e, seq);
                }
            }
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
            LogFlushFailed(logger, e, device.Seq);
        }
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Writing the connectivity of device {Seq} failed")]
    private static partial void LogFlushFailed(ILogger logger, Exception exception, long seq);

    private sealed class State
    {
        public int Connections;
        public bool Active;
        public bool Dirty;
        public long LastConnect;
        public long LastDisconnect;
        public long LastActivity;
        public long LastActivityPending;
        public long InactivityTimeoutMs = DeviceProfile.DefaultInactivityTimeoutMs;
        public int TimeoutRequested;
    }
}
