using System.Buffers;
using System.Collections.Concurrent;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Rules;

/// <summary>Receives what a device's alarm rules decided. The list is the owner's and is valid only during the call.</summary>
public interface IAlarmDecisionSink
{
    void OnDecisions(Guid deviceId, IReadOnlyList<AlarmDecision> decisions);
}

/// <summary>
/// The one owner of a device's alarm rule state. Committed telemetry, attribute changes, a change of the profile's
/// rules and the periodic recheck are handed to it as work (<c>Post*</c>) and done one at a time, in the order they
/// came, on the thread that finds the owner idle (the rules engine's loop, or the recheck timer's): nothing else
/// touches the state and it needs no lock. The recheck runs every <c>recheckPeriod</c> of the injected <see cref="TimeProvider"/>, so a DURATION rule
/// fires on server time without a new point (ThingsBoard rechecks on a timer too). The owner holds no connection;
/// decisions go to an <see cref="IAlarmDecisionSink"/>. <see cref="AlarmRulesEngine"/> feeds it from the event log.
/// </summary>
public sealed class DeviceAlarmRulesOwner : IAsyncDisposable
{
    private readonly AlarmRuleEvaluator _evaluator;
    private readonly IAlarmDecisionSink _sink;
    private readonly ConcurrentQueue<Work> _mailbox = new();
    private readonly ITimer _recheck;
    private int _draining;
    private bool _disposed;

    // The state. Touched only by work run from the mailbox, one item at a time.
    private DeviceRuleState _state;
    private OwnerAttributes _owners;
    private readonly List<AlarmDecision> _decisions = [];

    // Whether the last snapshot kept (or a stored one restored) had progress.
    private bool _kept;

    public DeviceAlarmRulesOwner(Guid deviceId, DeviceRuleState state, AlarmRuleEvaluator evaluator, TimeProvider time, TimeSpan recheckPeriod, IAlarmDecisionSink sink,
        bool stored = false)
    {
        _kept = stored;
        ArgumentNullException.ThrowIfNull(time);
        DeviceId = deviceId;
        _state = state;
        _evaluator = evaluator;
        _sink = sink;
        _recheck = time.CreateTimer(_ => Post(new Work(WorkKind.Recheck)), null, recheckPeriod, recheckPeriod);
    }

    public Guid DeviceId { get; }

    /// <summary>How many work items failed (an exception in the evaluator or the sink); the owner goes on with the next.</summary>
    public int Failures { get; private set; }

    /// <summary>Hands over a device's committed points, in ts order; the owner keeps the array.</summary>
    public void PostTelemetry(TelemetryPoint[] points, long committed = 0) => Post(new Work(WorkKind.Telemetry) { Points = points, Committed = committed });

    /// <summary>
    /// The commit time (ms) of the work whose decisions the sink is being told (0 for a recheck or a change of rules);
    /// read by the sink during its call.
    /// </summary>
    public long CurrentCommitted { get; private set; }

    /// <summary>Hands over changed attributes of the device; the owner keeps the array.</summary>
    public void PostAttributes(AttributeEntry[] attributes, long committed = 0) => Post(new Work(WorkKind.Attributes) { Attributes = attributes, Committed = committed });

    /// <summary>The alarm of this type was cleared elsewhere; a create rule that holds again raises a new one.</summary>
    public void PostAlarmCleared(string alarmType) => Post(new Work(WorkKind.AlarmCleared) { AlarmType = alarmType });

    /// <summary>The customer's and tenant's attributes changed (dynamic values may read them).</summary>
    public void PostOwnerAttributes(OwnerAttributes owners) => Post(new Work(WorkKind.Owners) { Owners = owners });

    /// <summary>The profile's rules changed: the state moves over by snapshot, keeping what the new rules still have.</summary>
    public void PostRules(CompiledAlarmRules rules) => Post(new Work(WorkKind.Rules) { Rules = rules });

    /// <summary>A snapshot of the state (DeviceRuleState.Restore reads it), taken in turn with the other work.</summary>
    public Task<byte[]> SnapshotAsync()
    {
        var done = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(new Work(WorkKind.Snapshot) { Snapshot = done });
        return done.Task;
    }

    /// <summary>
    /// The snapshot to keep, taken in turn: <c>Changed</c> false when there is nothing to write (no progress now nor
    /// at the last one); a null <c>State</c> with <c>Changed</c> true when the kept one should go (the progress ended).
    /// </summary>
    public Task<(bool Changed, byte[]? State)> SnapshotToKeepAsync()
    {
        var done = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(new Work(WorkKind.KeepSnapshot) { Snapshot = done });
        return Unwrap(done.Task);

        static async Task<(bool, byte[]?)> Unwrap(Task<byte[]> task)
        {
            var bytes = await task;
            return bytes.Length == 0 ? (false, null) : bytes.Length == 1 ? (true, null) : (true, bytes);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _recheck.DisposeAsync();
        var done = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(new Work(WorkKind.Stop) { Snapshot = done });
        await done.Task;
    }

    private void Post(Work work)
    {
        _mailbox.Enqueue(work);
        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            // Idle: the work runs now, on the caller's thread (evaluating a message takes a microsecond or so, less
            // than handing it to the thread pool). Work posted meanwhile from elsewhere is drained here too, in order.
            Drain();
        }
    }

    private void Drain()
    {
        while (true)
        {
            while (_mailbox.TryDequeue(out var work))
            {
                Run(work);
            }

            Volatile.Write(ref _draining, 0);
            // Work posted after the queue looked empty but before the flag was cleared would otherwise wait.
            if (_mailbox.IsEmpty || Interlocked.Exchange(ref _draining, 1) != 0)
            {
                return;
            }
        }
    }

    private void Run(Work work)
    {
        if (_disposed)
        {
            work.Snapshot?.TrySetResult([]);
            return;
        }

        try
        {
            switch (work.Kind)
            {
                case WorkKind.Telemetry:
                    _evaluator.EvaluateTelemetry(_state, work.Points, _owners, _decisions);
                    break;
                case WorkKind.Attributes:
                    _evaluator.EvaluateAttributes(_state, work.Attributes, _owners, _decisions);
                    break;
                case WorkKind.Recheck:
                    _evaluator.Recheck(_state, _owners, _decisions);
                    break;
                case WorkKind.AlarmCleared:
                    _ = _state.ForgetRaised(work.AlarmType!);
                    break;
                case WorkKind.Owners:
                    _owners = work.Owners;
                    break;
                case WorkKind.Rules:
                    _state = DeviceRuleState.Restore(work.Rules!, Snapshot());
                    break;
                case WorkKind.Snapshot:
                    work.Snapshot!.TrySetResult(Snapshot());
                    break;
                case WorkKind.KeepSnapshot:
                    // Empty: nothing to write; one byte: delete what was kept; else the state.
                    var progress = _state.HasProgress;
                    work.Snapshot!.TrySetResult(progress ? Snapshot() : _kept ? [0] : []);
                    _kept = progress;
                    break;
                case WorkKind.Stop:
                    _disposed = true;
                    work.Snapshot!.TrySetResult([]);
                    break;
            }

            if (_decisions.Count > 0)
            {
                CurrentCommitted = work.Committed;
                _sink.OnDecisions(DeviceId, _decisions);
            }
        }
#pragma warning disable CA1031 // One bad item must not stop the device's rules; it is counted.
        catch (Exception exception)
#pragma warning restore CA1031
        {
            Failures++;
            work.Snapshot?.TrySetException(exception);
        }
        finally
        {
            _decisions.Clear();
        }
    }

    private byte[] Snapshot()
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        _state.WriteSnapshot(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    private enum WorkKind
    {
        Telemetry,
        Attributes,
        Recheck,
        AlarmCleared,
        Owners,
        Rules,
        Snapshot,
        KeepSnapshot,
        Stop,
    }

    private readonly record struct Work(WorkKind Kind)
    {
        public TelemetryPoint[]? Points { get; init; }

        public AttributeEntry[]? Attributes { get; init; }

        public OwnerAttributes Owners { get; init; }

        public string? AlarmType { get; init; }

        public CompiledAlarmRules? Rules { get; init; }

        public TaskCompletionSource<byte[]>? Snapshot { get; init; }

        public long Committed { get; init; }
    }
}
