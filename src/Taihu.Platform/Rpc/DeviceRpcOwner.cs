using Microsoft.Extensions.Logging;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Rpc;

/// <summary>How a lightweight call ended.</summary>
public enum RpcOutcomeKind
{
    /// <summary>Two-way: the device replied (<see cref="RpcOutcome.ReplyJson"/>).</summary>
    Replied,

    /// <summary>One-way: the device received it.</summary>
    Delivered,

    /// <summary>Nothing reaches the device now (no connection subscribed to RPC, no long poll, no gateway).</summary>
    NotConnected,

    /// <summary>No reply (two-way) or no delivery (one-way) within the timeout.</summary>
    TimedOut,
}

public readonly record struct RpcOutcome(RpcOutcomeKind Kind, string? ReplyJson = null);

/// <summary>What became of a device's reply to a call.</summary>
public enum RpcReplyResult
{
    Accepted,

    /// <summary>This device was never sent a call with that id.</summary>
    Unknown,

    /// <summary>The call has already ended (answered, timed out, expired or failed).</summary>
    Finished,
}

/// <summary>
/// The one owner of a device's RPC state: its request id counter, its lightweight calls waiting for delivery or
/// a reply, and its persistent calls in order. Everything that changes that state is handed to the owner as work
/// (<see cref="Post"/>) and done one item at a time, in the order it came, on the thread pool: callers never take
/// a lock on the state, and the state never holds a connection (the owner asks <see cref="RpcDeviceLink"/> to
/// send). That is the shape of an Orleans grain: the mailbox becomes the grain's turn-based scheduling and the
/// fields its state, when the cluster issue moves it.
/// </summary>
public sealed partial class DeviceRpcOwner : IThreadPoolWorkItem
{
    private readonly IRpcOwnerHost _host;
    // A plain queue under its own lock: a concurrent queue starts with a 32-slot segment (about 770 bytes), and
    // every device that was ever called keeps its owner.
    private readonly Queue<Func<Task>> _mailbox = new();
    private int _draining;

    // The state. Touched only by work items run from the mailbox, one at a time.
    private Device _device;
    private bool _loaded;
    private int _lastRequestId;
    private readonly Dictionary<int, PendingCall> _pending = [];
    private readonly List<ActiveCall> _persistent = [];
    private int _sendEpoch;
    private bool _closed;

    public DeviceRpcOwner(IRpcOwnerHost host, Device device)
    {
        _host = host;
        _device = device;
    }

    public Guid DeviceId => _device.Id;

    /// <summary>Whether calls not ended are held (read without the owner's turn, as of its last work: a hint for its host's lifetime).</summary>
    public bool HoldsCalls => Volatile.Read(ref _callCount) > 0;

    private int _callCount;

    /// <summary>Completes once the owner has done everything handed to it before this call.</summary>
    public Task IdleAsync() => AskAsync(static () => Task.FromResult(true));

    /// <summary>Hands the owner a piece of work; it runs after everything handed before it.</summary>
    internal void Post(Func<Task> work)
    {
        lock (_mailbox)
        {
            _mailbox.Enqueue(work);
        }

        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            // The owner itself is the thread pool's work item (queued once at a time, by whoever set _draining):
            // no task or delegate per wake-up, and the poster's execution context (an HTTP request's) stays with it.
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    void IThreadPoolWorkItem.Execute() => _ = DrainAsync();

    /// <summary>Hands the owner work with a result.</summary>
    internal Task<T> AskAsync<T>(Func<Task<T>> work)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(async () =>
        {
            try
            {
                result.TrySetResult(await work());
            }
            catch (Exception e)
            {
                result.TrySetException(e);
            }
        });
        return result.Task;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            while (TryTake(out var work))
            {
                if (_closed)
                {
                    // Closed by its host (a grain deactivated): what is left is dropped; callers waiting time out.
                    continue;
                }

                try
                {
                    await work();
                }
                catch (Exception e)
                {
                    LogWorkFailed(_host.Logger, _device.Id, e);
                }

                Volatile.Write(ref _callCount, _persistent.Count + _pending.Count);
            }

            Volatile.Write(ref _draining, 0);
            // Work posted between the last dequeue and the reset above would otherwise wait for the next post.
            if (IsEmpty() || Interlocked.Exchange(ref _draining, 1) == 1)
            {
                return;
            }
        }
    }

    private bool TryTake(out Func<Task> work)
    {
        lock (_mailbox)
        {
            return _mailbox.TryDequeue(out work!);
        }
    }

    private bool IsEmpty()
    {
        lock (_mailbox)
        {
            return _mailbox.Count == 0;
        }
    }

    private async Task EnsureLoadedAsync()
    {
        if (_loaded)
        {
            return;
        }

        // Ids go on from the highest a stored call has, so a reply after a restart finds its call.
        _lastRequestId = Math.Max(_lastRequestId, await _host.Store.MaxRequestIdAsync(_device.Id));
        var unacknowledged = 0;
        foreach (var call in await _host.Store.ListActiveAsync(_device.Id))
        {
            _persistent.Add(Take(call));
            unacknowledged += call.Status == RpcStatus.Sent ? 1 : 0;
        }

        _loaded = true;
        if (unacknowledged > 0)
        {
            // Sent by an earlier owner (before a restart, or on a cluster an owner whose node died or whose place
            // in the grain directory was lost with a node): whether they reached the device is not known here.
            LogSentAgain(_host.Logger, _device.Id, unacknowledged);
        }
    }

    /// <summary>
    /// A call read from the store: its expiry armed, and, when it was delivered (by this process before a restart,
    /// or by another node, one that died among them), its reply timeout, counted from its delivery.
    /// </summary>
    private ActiveCall Take(PersistentRpc call)
    {
        var active = new ActiveCall(call);
        ArmExpiry(active);
        if (call.Status == RpcStatus.Delivered)
        {
            ArmDeliveredTimeout(active);
        }

        return active;
    }

    private void ArmDeliveredTimeout(ActiveCall active)
    {
        var left = active.Call.UpdatedTime + active.Call.TimeoutMs - _host.Time.GetUtcNow().ToUnixTimeMilliseconds();
        ArmReplyTimeout(active, active.Epoch, TimeSpan.FromMilliseconds(Math.Max(0, left)));
    }

    // ---- lightweight calls ----

    /// <summary>A lightweight call: sent now if the device is reachable, answered by its reply or delivery, or by the timeout.</summary>
    public async Task<RpcOutcome> CallAsync(Device device, RpcRequest request, CancellationToken cancellationToken)
    {
        var call = new PendingCall(request.OneWay);
        Post(async () =>
        {
            _device = device;
            await EnsureLoadedAsync();
            var id = ++_lastRequestId;
            call.RequestId = id;
            _pending[id] = call;
            if (!await _host.TrySendAsync(this, device, id, request.Method, request.ParamsJson, 0))
            {
                _pending.Remove(id);
                call.Result.TrySetResult(new RpcOutcome(RpcOutcomeKind.NotConnected));
            }
        });

        try
        {
            return await call.Result.Task.WaitAsync(TimeSpan.FromMilliseconds(request.TimeoutMs), _host.Time, cancellationToken);
        }
        catch (TimeoutException)
        {
            Forget(call);
            return call.Result.Task.IsCompletedSuccessfully ? call.Result.Task.Result : new RpcOutcome(RpcOutcomeKind.TimedOut);
        }
        catch (OperationCanceledException)
        {
            Forget(call);
            throw;
        }
    }

    private void Forget(PendingCall call) => Post(() =>
    {
        if (_pending.TryGetValue(call.RequestId, out var found) && ReferenceEquals(found, call))
        {
            _pending.Remove(call.RequestId);
        }

        call.Result.TrySetResult(new RpcOutcome(RpcOutcomeKind.TimedOut));
        return Task.CompletedTask;
    });

    // ---- what the device does ----

    /// <summary>
    /// The device replied to call <paramref name="requestId"/> (<paramref name="replyJson"/> as JSON text).
    /// <paramref name="failed"/> is a protocol's explicit refusal (a JT/T 808 general reply with a failure result, an
    /// HJ 212 execution result that is not success): a persistent call ends <c>FAILED</c> with the reply kept as its
    /// response; a lightweight call returns the reply to its caller as any other.
    /// </summary>
    public Task<RpcReplyResult> ReplyAsync(Device device, int requestId, string replyJson, bool failed = false) => AskAsync(async () =>
    {
        _device = device;
        await EnsureLoadedAsync();
        if (_pending.Remove(requestId, out var pending))
        {
            pending.Result.TrySetResult(pending.OneWay ? new RpcOutcome(RpcOutcomeKind.Delivered) : new RpcOutcome(RpcOutcomeKind.Replied, replyJson));
            return RpcReplyResult.Accepted;
        }

        if (Find(requestId) is { Call.Status: RpcStatus.Sent or RpcStatus.Delivered } active)
        {
            // A reply also says the command arrived, should its acknowledgement still be on the way.
            await MoveAsync(active, failed ? RpcStatus.Failed : RpcStatus.Successful, active.Call.OneWay && !failed ? null : replyJson);
            return RpcReplyResult.Accepted;
        }

        return requestId > 0 && requestId <= _lastRequestId ? RpcReplyResult.Finished : RpcReplyResult.Unknown;
    });

    /// <summary>
    /// The device can be reached now (it connected, subscribed to RPC, or opened a long poll), or its owner was
    /// woken after a restart or a node's death: what waits is sent. On a cluster, what could not be sent is told to
    /// every node, so that the node the device connects to next calls for it.
    /// </summary>
    public void Reachable(Device device) => Post(async () =>
    {
        _device = device;
        await EnsureLoadedAsync();
        await SendWaitingAsync();
        if (HasUnsent())
        {
            _host.CallsWaiting(device);
        }
    });

    /// <summary>
    /// Stops the owner for good (its host goes away): its timers are disposed and work handed to it later is
    /// dropped. Completes once the work running now has finished.
    /// </summary>
    public Task CloseAsync() => AskAsync(() =>
    {
        _closed = true;
        foreach (var active in _persistent)
        {
            active.Dispose();
        }

        return Task.FromResult(true);
    });

    /// <summary>
    /// The device lost a way it was reached by. Persistent calls sent and not yet acknowledged will be sent again
    /// (each resend is a retry) or, with no retries left, have failed.
    /// </summary>
    public void Unreachable() => Post(async () =>
    {
        await EnsureLoadedAsync();
        _sendEpoch++;
        foreach (var active in _persistent.ToArray())
        {
            if (active.Call.Status == RpcStatus.Sent && active.InFlight)
            {
                active.InFlight = false;
                if (active.Call.Attempts > active.Call.Retries)
                {
                    await MoveAsync(active, RpcStatus.Failed);
                }
            }
        }

        // Still reachable another way (or, on a cluster, on another node): sent again there. Otherwise, on a
        // cluster, the device may connect to another node next: every node is told there are calls to send.
        await SendWaitingAsync();
        if (HasUnsent())
        {
            _host.CallsWaiting(_device);
        }
    });

    /// <summary>Whether a persistent call waits to be sent (queued, or sent on a connection that went away).</summary>
    private bool HasUnsent()
    {
        foreach (var active in _persistent)
        {
            if (active.Call.Status == RpcStatus.Queued || (active.Call.Status == RpcStatus.Sent && !active.InFlight))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Send <paramref name="epoch"/> of call <paramref name="requestId"/> reached the device (0: a lightweight call).</summary>
    public void Delivered(int requestId, int epoch) => Post(async () =>
    {
        if (_pending.TryGetValue(requestId, out var pending))
        {
            if (pending.OneWay)
            {
                _pending.Remove(requestId);
                pending.Result.TrySetResult(new RpcOutcome(RpcOutcomeKind.Delivered));
            }

            return;
        }

        if (Find(requestId) is { } active && active.Call.Status == RpcStatus.Sent && active.Epoch == epoch)
        {
            await MoveAsync(active, RpcStatus.Delivered);
            if (active.Call.OneWay)
            {
                await MoveAsync(active, RpcStatus.Successful);
            }
        }
    });

    // ---- persistent calls ----

    /// <summary>Stores a persistent call (QUEUED) and sends it at once if the device is reachable and nothing waits before it.</summary>
    public Task<PersistentRpc> SubmitAsync(Caller caller, Device device, RpcRequest request) => AskAsync(async () =>
    {
        _device = device;
        await EnsureLoadedAsync();
        var now = _host.Time.GetUtcNow().ToUnixTimeMilliseconds();
        var call = new PersistentRpc(Guid.CreateVersion7(), device.TenantId, device.Id, ++_lastRequestId, request.Method, request.ParamsJson, request.OneWay,
            request.TimeoutMs, request.ExpirationTime, request.Retries, 0, RpcStatus.Queued, null, request.AdditionalInfoJson, now);
        await _host.Store.InsertAsync(call);
        await _host.Audit.WriteAsync(caller, "RPC_QUEUED", "RPC", call.Id.ToString(), $"{call.Method} #{call.RequestId} to {device.Name}");
        var active = new ActiveCall(call);
        _persistent.Add(active);
        ArmExpiry(active);
        await SendWaitingAsync();
        if (HasUnsent())
        {
            _host.CallsWaiting(device);
        }

        return call;
    });

    /// <summary>The call was deleted: it is forgotten, and a late reply to it finds it finished.</summary>
    public void Deleted(Guid id) => Post(() =>
    {
        var index = _persistent.FindIndex(a => a.Call.Id == id);
        if (index >= 0)
        {
            _persistent[index].Dispose();
            _persistent.RemoveAt(index);
        }

        return Task.CompletedTask;
    });

    /// <summary>Sends, in order, the persistent calls that wait: queued ones, and sent ones whose connection went away.</summary>
    private async Task SendWaitingAsync()
    {
        var now = _host.Time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var active in _persistent.ToArray())
        {
            if (active.InFlight || active.Call.Status is not (RpcStatus.Queued or RpcStatus.Sent))
            {
                continue;
            }

            if (now >= active.Call.ExpirationTime)
            {
                await MoveAsync(active, RpcStatus.Expired);
                continue;
            }

            if (active.Call.Attempts > active.Call.Retries)
            {
                await MoveAsync(active, RpcStatus.Failed);
                continue;
            }

            var epoch = ++_sendEpoch;
            if (!await _host.TrySendAsync(this, _device, active.Call.RequestId, active.Call.Method, active.Call.ParamsJson, epoch))
            {
                // Not reachable: this one and every later one wait, so that they still arrive in order.
                return;
            }

            active.InFlight = true;
            active.Epoch = epoch;
            active.Call = active.Call with { Attempts = active.Call.Attempts + 1 };
            await MoveAsync(active, RpcStatus.Sent);
            ArmReplyTimeout(active, epoch);
        }
    }

    private async Task MoveAsync(ActiveCall active, RpcStatus status, string? responseJson = null)
    {
        var from = active.Call.Status;
        var call = active.Call = active.Call with
        {
            Status = status,
            ResponseJson = responseJson ?? active.Call.ResponseJson,
            UpdatedTime = _host.Time.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        if (status.IsFinal())
        {
            active.Dispose();
            _persistent.Remove(active);
        }

        if (!await _host.Store.UpdateAsync(call.Id, from, status, call.Attempts, call.ResponseJson))
        {
            // Deleted meanwhile, or (on a cluster) moved by the device's owner on another node: the stored state counts.
            active.Dispose();
            _persistent.Remove(active);
            return;
        }

        await _host.Audit.WriteAsync(RpcService.SystemCaller(call.TenantId), "RPC_" + status.Name(), "RPC", call.Id.ToString(),
            $"{call.Method} #{call.RequestId} to {_device.Name}" + (status == RpcStatus.Sent && call.Attempts > 1 ? $" (retry {call.Attempts - 1} of {call.Retries})" : ""));
    }

    private ActiveCall? Find(int requestId)
    {
        foreach (var active in _persistent)
        {
            if (active.Call.RequestId == requestId)
            {
                return active;
            }
        }

        return null;
    }

    private void ArmExpiry(ActiveCall active)
    {
        var due = TimeSpan.FromMilliseconds(Math.Max(0, active.Call.ExpirationTime - _host.Time.GetUtcNow().ToUnixTimeMilliseconds()));
        var id = active.Call.Id;
        active.ExpiryTimer = _host.Time.CreateTimer(_ => Post(async () =>
        {
            // Past its expirationTime and not delivered: EXPIRED. A delivered two-way call still waits for its reply timeout.
            if (_persistent.Find(a => a.Call.Id == id) is { } found && found.Call.Status is RpcStatus.Queued or RpcStatus.Sent)
            {
                await MoveAsync(found, RpcStatus.Expired);
            }
        }), null, due, Timeout.InfiniteTimeSpan);
    }

    private void ArmReplyTimeout(ActiveCall active, int epoch) => ArmReplyTimeout(active, epoch, TimeSpan.FromMilliseconds(active.Call.TimeoutMs));

    private void ArmReplyTimeout(ActiveCall active, int epoch, TimeSpan due)
    {
        active.ReplyTimer?.Dispose();
        var id = active.Call.Id;
        active.ReplyTimer = _host.Time.CreateTimer(_ => Post(async () =>
        {
            if (_persistent.Find(a => a.Call.Id == id) is not { } found || found.Epoch != epoch)
            {
                return;
            }

            if (found.Call.Status == RpcStatus.Delivered)
            {
                await MoveAsync(found, RpcStatus.Timeout);
            }
            else if (found.Call.Status == RpcStatus.Sent)
            {
                // No acknowledgement in time: send it again (a retry), or fail when none are left.
                found.InFlight = false;
                if (found.Call.Attempts > found.Call.Retries)
                {
                    await MoveAsync(found, RpcStatus.Failed);
                }
                else
                {
                    await SendWaitingAsync();
                }
            }
        }), null, due, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Tells the owner, through its mailbox, that one send reached the device. Holds no connection.</summary>
    internal sealed class Delivery(DeviceRpcOwner owner, int requestId, int epoch) : IDeliveryListener
    {
        private int _told;

        public void OnDelivered(QoS qos)
        {
            if (Interlocked.Exchange(ref _told, 1) == 0)
            {
                owner.Delivered(requestId, epoch);
            }
        }
    }

    private sealed class PendingCall(bool oneWay)
    {
        public bool OneWay { get; } = oneWay;

        public int RequestId { get; set; }

        public TaskCompletionSource<RpcOutcome> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class ActiveCall(PersistentRpc call) : IDisposable
    {
        public PersistentRpc Call { get; set; } = call;

        /// <summary>Sent on the current connection and not yet acknowledged.</summary>
        public bool InFlight { get; set; }

        public int Epoch { get; set; }

        public ITimer? ExpiryTimer { get; set; }

        public ITimer? ReplyTimer { get; set; }

        public void Dispose()
        {
            ExpiryTimer?.Dispose();
            ReplyTimer?.Dispose();
        }
    }

    [LoggerMessage(EventId = 2505, Level = LogLevel.Information, Message = "RPC owner of device {DeviceId} took {Count} call(s) from the store that an earlier owner sent and saw no acknowledgement for: each is sent again when the device can be reached (a retry)")]
    private static partial void LogSentAgain(ILogger logger, Guid deviceId, int count);

    [LoggerMessage(EventId = 2501, Level = LogLevel.Error, Message = "RPC work for device {DeviceId} failed")]
    private static partial void LogWorkFailed(ILogger logger, Guid deviceId, Exception exception);
}
