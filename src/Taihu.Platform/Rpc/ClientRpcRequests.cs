using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Integrations;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Rpc;

/// <summary>
/// A device's client-side RPC request as it goes through the platform: recorded in the event log (type
/// <c>RPC_REQUEST</c>, so that integrations send it), then answered by the first webhook integration that answers
/// it (<c>answerRpc</c>), or else as the server always did (<see cref="ClientRpc.Answer"/>).
/// </summary>
/// <remarks>
/// The request is recorded before the device is told it arrived (MQTT's PUBACK, the HTTP call's wait), so an
/// acknowledged request is sent to integrations even across a crash. The wait for an answer holds nothing but a
/// pending entry and a timer: the answer is published when it comes, never in front of the device's connection.
/// A request waits for an answer only when some enabled webhook of the device's tenant with <c>answerRpc</c> takes
/// <c>RPC_REQUEST</c> events of the device's profile, and at most <see cref="IntegrationOptions.ClientRpcTimeoutMs"/>;
/// when every such webhook declined (a 2xx with an empty body, or the event was dead-lettered) it is answered at
/// once. <c>getCurrentTime</c> is always the server's. The entries live in this process: a restart forgets them
/// (the device already has its answer or gave up), while the events stay in the outboxes and are still sent. In a
/// cluster the webhook is called by the node that holds the event log's lease; its answer reaches the node the
/// request waits on through <see cref="TellOthers"/>.
/// </remarks>
public sealed class ClientRpcRequests(PlatformDatabase database, IntegrationRegistry integrations, IOptions<IntegrationOptions> options, TimeProvider time,
    EventSignal? signal = null)
{
    private readonly ConcurrentDictionary<Guid, Pending> _pending = new();
    private int _pendingCount;

    /// <summary>Requests waiting for an integration's answer now.</summary>
    public int PendingCount => Volatile.Read(ref _pendingCount);

    /// <summary>
    /// Records the request and returns, once it is recorded, the task of its answer (completed at once unless an
    /// integration may answer). A request that is not a JSON object with a method is answered at once and not recorded.
    /// </summary>
    /// <param name="requestId">The id of the MQTT topic the request came on; null over HTTP.</param>
    public async Task<Task<byte[]>> RequestAsync(Device device, string? requestId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        // The server's own answer, also what the device gets when no integration answers.
        var fallback = ClientRpc.Answer(payload.Span, now);
        if (!TryParse(payload, out var method, out var parameters))
        {
            return Task.FromResult(fallback);
        }

        var timeout = options.Value.ClientRpcTimeoutMs;
        var answerers = method == "getCurrentTime" ? 0 : integrations.CountRpcAnswerers(device);
        var data = EventData(requestId, method!, parameters, now + timeout);
        var body = EventCodec.EncodeEvents([new DeviceEventRecord(device.Seq, PlatformEventType.RpcRequest, now, data)]);
        Pending? pending = null;
        await using (var connection = await database.OpenAsync(cancellationToken))
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var position = await EventLog.AppendAsync(database, connection, transaction, EventLogKind.Device, body, now, cancellationToken);
            // Registered before the commit: once committed, an answer can come at any moment.
            if (answerers > 0 && Interlocked.Increment(ref _pendingCount) <= options.Value.MaxPendingClientRpc)
            {
                pending = new Pending(PlatformEvent.IdOf(position, 0), answerers, fallback);
                _pending[pending.EventId] = pending;
            }
            else if (answerers > 0)
            {
                Interlocked.Decrement(ref _pendingCount);
            }

            try
            {
                await transaction.CommitAsync(cancellationToken);
            }
            catch
            {
                if (pending is not null)
                {
                    Forget(pending);
                }

                throw;
            }
        }

        signal?.Notify();
        if (pending is null)
        {
            return Task.FromResult(fallback);
        }

        pending.Arm(time, TimeSpan.FromMilliseconds(timeout), this);
        return pending.Answer.Task;
    }

    /// <summary>
    /// In a cluster: hands an answer to the other nodes, for a request that does not wait on this one (it may wait on
    /// the node the device sent it to, while this node holds the event log's lease and called the webhook).
    /// </summary>
    public Action<Guid, byte[]?>? TellOthers { get; set; }

    /// <summary>
    /// An integration's answer to the request recorded as event <paramref name="eventId"/>: its reply, or null when it
    /// declined (answered without a body, or gave up on the event). When the request does not wait here, the answer
    /// goes to the other nodes (<see cref="TellOthers"/>), where the one it waits on takes it. False when nobody
    /// waits for it here.
    /// </summary>
    public bool TryAnswer(Guid eventId, byte[]? reply)
    {
        if (TryAnswerHere(eventId, reply))
        {
            return true;
        }

        TellOthers?.Invoke(eventId, reply);
        return false;
    }

    /// <summary>As <see cref="TryAnswer"/>, for a request waiting on this node only (an answer told by another node).</summary>
    public bool TryAnswerHere(Guid eventId, byte[]? reply)
    {
        if (!_pending.TryGetValue(eventId, out var pending))
        {
            return false;
        }

        if (reply is null)
        {
            if (Interlocked.Decrement(ref pending.Remaining) > 0)
            {
                return true;
            }

            reply = pending.Fallback;
        }

        if (pending.Answer.TrySetResult(reply))
        {
            Forget(pending);
            return true;
        }

        return false;
    }

    private void Forget(Pending pending)
    {
        if (_pending.TryRemove(pending.EventId, out _))
        {
            Interlocked.Decrement(ref _pendingCount);
        }

        pending.Dispose();
    }

    private void Expire(Pending pending)
    {
        if (pending.Answer.TrySetResult(pending.Fallback))
        {
            Forget(pending);
        }
    }

    /// <summary><c>{"method","params"}</c> with a non-empty string method; params is kept as the raw JSON (or null).</summary>
    private static bool TryParse(ReadOnlyMemory<byte> request, out string? method, out string? parameters)
    {
        method = null;
        parameters = null;
        try
        {
            // Not a hot path (a device asks now and then): the plain DOM is clearest.
            using var document = JsonDocument.Parse(request);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("method", out var m) || m.ValueKind != JsonValueKind.String)
            {
                return false;
            }

            method = m.GetString();
            if (root.TryGetProperty("params", out var p) && p.ValueKind != JsonValueKind.Null)
            {
                parameters = p.GetRawText();
            }

            return !string.IsNullOrEmpty(method);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The event's data: <c>{"requestId","method","params","expirationTime"}</c> (requestId only over MQTT).</summary>
    private static string EventData(string? requestId, string method, string? parameters, long expirationTime)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            if (requestId is not null)
            {
                writer.WriteString("requestId", requestId);
            }

            writer.WriteString("method", method);
            writer.WritePropertyName("params");
            if (parameters is null)
            {
                writer.WriteStartObject();
                writer.WriteEndObject();
            }
            else
            {
                writer.WriteRawValue(parameters);
            }

            writer.WriteNumber("expirationTime", expirationTime);
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private sealed class Pending(Guid eventId, int answerers, byte[] fallback) : IDisposable
    {
        public int Remaining = answerers;
        private ITimer? _timer;

        public Guid EventId { get; } = eventId;

        public byte[] Fallback { get; } = fallback;

        public TaskCompletionSource<byte[]> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Arm(TimeProvider time, TimeSpan timeout, ClientRpcRequests owner)
        {
            var timer = time.CreateTimer(_ => owner.Expire(this), null, timeout, Timeout.InfiniteTimeSpan);
            if (Interlocked.CompareExchange(ref _timer, timer, null) is not null || Answer.Task.IsCompleted)
            {
                // Answered before the timer was armed.
                timer.Dispose();
            }
        }

        public void Dispose()
        {
            // A marker timer, so that Arm after this disposes its own.
            Interlocked.Exchange(ref _timer, DisposedTimer.Instance)?.Dispose();
        }
    }

    private sealed class DisposedTimer : ITimer
    {
        public static readonly DisposedTimer Instance = new();

        public bool Change(TimeSpan dueTime, TimeSpan period) => false;

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
