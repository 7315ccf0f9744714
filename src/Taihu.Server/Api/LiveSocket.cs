using System.Diagnostics;
using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>
/// One client of the live WebSocket API: reads its command frames, keeps its subscriptions, and sends their
/// updates: first a snapshot from the store, then each committed change.
/// </summary>
/// <remarks>
/// Design: two loops per socket, as for MQTT connections. The receive loop parses frames and runs commands one at a
/// time (a snapshot read delays only this socket's next command). Updates reach the socket on the thread that
/// committed them (the ingest writer) and only go into a bounded outbound queue, which the send loop drains and
/// serializes: the writer never waits for a socket. A subscription holds back what is committed while its snapshot
/// is read, and releases it behind the snapshot, so a client always gets the snapshot first and misses nothing
/// (a change committed during the read may come twice: a point is unique by key and ts, so this is harmless).
/// A subscription's changes that wait together go out as one frame (see <see cref="Subscription"/>), but each
/// counts against <see cref="LiveOptions.OutboundQueueLimit"/> as the replies do: past it the client is reading
/// too slowly, what waits is dropped and counted, and the socket is closed with 1008 and the reason; a client that
/// does not even take the close frame is aborted after <see cref="LiveOptions.CloseTimeout"/>.
/// </remarks>
internal sealed partial class LiveSocket : IDisposable
{
    private static readonly JsonEncodedText SubscriptionIdName = JsonEncodedText.Encode("subscriptionId");
    private static readonly JsonEncodedText ErrorCodeName = JsonEncodedText.Encode("errorCode");
    private static readonly JsonEncodedText ErrorMsgName = JsonEncodedText.Encode("errorMsg");
    private static readonly JsonEncodedText DataName = JsonEncodedText.Encode("data");
    private static readonly JsonEncodedText LatestValuesName = JsonEncodedText.Encode("latestValues");

    // Beyond these a frame's buffers are let go once it is sent instead of being kept for the next.
    private const int LargeFrameBytes = 1 << 20;
    private const int LargeFramePoints = 4096;

    private static readonly AttributeScope[] AllScopes = [AttributeScope.Client, AttributeScope.Shared, AttributeScope.Server];

    private readonly WebSocket _ws;
    private readonly LiveServices _services;
    private readonly LiveOptions _options;
    private readonly Channel<Outbound> _outbound;
    private readonly Dictionary<int, Subscription> _subscriptions = [];
    private readonly CancellationTokenSource _sendAborted = new();
    private Caller? _caller;
    private int _slow;
    private int _waiting;
    private int _closing;
    private ITimer? _abortTimer;
    private ITimer? _expiryTimer;
    private WebSocketCloseStatus _closeStatus = WebSocketCloseStatus.NormalClosure;
    private string _closeReason = "";

    private LiveSocket(WebSocket ws, LiveServices services)
    {
        _ws = ws;
        _services = services;
        _options = services.Options;
        // Unbounded as a channel, bounded by what it holds: every item is a counted update or reply, or a marker for
        // counted updates (CountWaiting).
        _outbound = Channel.CreateUnbounded<Outbound>(new UnboundedChannelOptions { SingleReader = true });
    }

    /// <summary>
    /// Serves one socket until it closes. <paramref name="queryToken"/> is the older path's <c>?token=</c>
    /// (authenticated before any frame); without it the first frame must carry <c>authCmd</c>.
    /// </summary>
    public static async Task RunAsync(WebSocket ws, LiveServices services, bool tokenInQuery, string? queryToken, CancellationToken stopping)
    {
        using var socket = new LiveSocket(ws, services);
        services.Sockets.Add(1);
        try
        {
            await socket.RunCoreAsync(tokenInQuery, queryToken, stopping);
        }
        finally
        {
            services.Sockets.Add(-1);
        }
    }

    public void Dispose()
    {
        _expiryTimer?.Dispose();
        _abortTimer?.Dispose();
        _sendAborted.Dispose();
    }

    private async Task RunCoreAsync(bool tokenInQuery, string? queryToken, CancellationToken stopping)
    {
        var sending = SendLoopAsync();
        if (!tokenInQuery)
        {
            // A socket that never authenticates must not stay open: it gets a deadline for its authCmd.
            _expiryTimer = _services.Time.CreateTimer(static state => ((LiveSocket)state!).AuthenticationTimedOut(), this,
                _options.AuthenticationTimeout, Timeout.InfiniteTimeSpan);
        }

        // Stopping closes the socket with a close frame (1001); cancelling a receive would abort it without one.
        using var stop = stopping.Register(static state => ((LiveSocket)state!).Close(WebSocketCloseStatus.EndpointUnavailable, "Server shutting down"), this);
        try
        {
            if (!tokenInQuery || await AuthenticateAsync(0, queryToken, stopping))
            {
                await ReceiveLoopAsync(stopping);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // A snapshot read cut short by the shutdown: the close frame is on its way.
        }
        catch (WebSocketException)
        {
            // The client went away without a close frame: nothing to answer.
        }
        finally
        {
            foreach (var subscription in _subscriptions.Values)
            {
                Remove(subscription);
            }

            _subscriptions.Clear();
            foreach (var subscription in _alarmSubscriptions.Values)
            {
                Remove(subscription);
            }

            _alarmSubscriptions.Clear();
            Volatile.Write(ref _closing, 1);
            _outbound.Writer.TryComplete();
            await sending;
        }
    }

    private async Task ReceiveLoopAsync(CancellationToken stopping)
    {
        var max = _options.MaxFrameBytes;
        var buffer = ArrayPool<byte>.Shared.Rent(max);
        try
        {
            while (_ws.State == WebSocketState.Open && Volatile.Read(ref _slow) == 0)
            {
                var count = 0;
                var tooLarge = false;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (count == max)
                    {
                        // Past the limit: the rest of the frame is read and dropped, never kept.
                        tooLarge = true;
                        count = 0;
                    }

                    result = await _ws.ReceiveAsync(buffer.AsMemory(count, max - count), CancellationToken.None);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        Close(WebSocketCloseStatus.NormalClosure, "");
                        return;
                    }

                    count += result.Count;
                }
                while (!result.EndOfMessage);

                if (tooLarge)
                {
                    Reply(0, LiveErrorCode.BadRequest, $"The frame is larger than {max} bytes (Live:MaxFrameBytes); it was dropped.");
                    continue;
                }

                if (!await HandleFrameAsync(buffer.AsMemory(0, count), stopping))
                {
                    return;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Runs the commands of one frame; false when the socket is to close.</summary>
    private async Task<bool> HandleFrameAsync(ReadOnlyMemory<byte> utf8, CancellationToken cancellationToken)
    {
        LiveFrame frame;
        try
        {
            frame = LiveCommandParser.Parse(utf8);
        }
        catch (JsonException e)
        {
            Reply(0, LiveErrorCode.BadRequest, $"The frame is not valid JSON: {e.Message}");
            if (_caller is null)
            {
                // The first frame is the authentication; a socket that cannot give it ends here.
                Close(WebSocketCloseStatus.PolicyViolation, "Unauthorized");
                return false;
            }

            return true;
        }

        if (_caller is null)
        {
            if (!frame.HasAuth)
            {
                Reply(0, LiveErrorCode.Unauthorized, "Not authenticated: the first frame carries authCmd {\"cmdId\":0,\"token\":\"<JWT>\"}.");
                Close(WebSocketCloseStatus.PolicyViolation, "Unauthorized");
                return false;
            }

            if (!await AuthenticateAsync(frame.AuthCmdId, frame.Token, cancellationToken))
            {
                return false;
            }
        }

        foreach (var error in frame.Errors)
        {
            if (error.UpdateType is { } updateType)
            {
                ReplyAlarm(error.CmdId, updateType, LiveErrorCode.BadRequest, error.Message);
            }
            else
            {
                Reply(error.CmdId, LiveErrorCode.BadRequest, error.Message);
            }
        }

        foreach (var command in frame.Commands)
        {
            await RunAsync(command, cancellationToken);
        }

        foreach (var command in frame.AlarmCommands)
        {
            await RunAlarmAsync(command, cancellationToken);
        }

        return true;
    }

    private async Task<bool> AuthenticateAsync(int cmdId, string? token, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(token))
        {
            Reply(cmdId, LiveErrorCode.Unauthorized, "Not authenticated: a JWT is required (authCmd.token, or ?token= on /api/ws/plugins/telemetry).");
            Close(WebSocketCloseStatus.PolicyViolation, "Unauthorized");
            return false;
        }

        try
        {
            (var caller, var expires) = await _services.Tokens.ValidateWithExpiryAsync(token, cancellationToken);
            _expiryTimer?.Dispose();
            Volatile.Write(ref _caller, caller);
            // The socket lives no longer than its token, as a request with it would not: at expiry it is told
            // (errorCode 3) and closed, and the client connects again with a fresh token.
            var left = expires - _services.Time.GetUtcNow();
            _expiryTimer = _services.Time.CreateTimer(static state => ((LiveSocket)state!).TokenExpired(), this,
                left > TimeSpan.Zero ? left : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
            return true;
        }
        catch (PlatformException e) when (e.Status == 401)
        {
            Reply(cmdId, LiveErrorCode.Unauthorized, e.Message);
            Close(WebSocketCloseStatus.PolicyViolation, "Unauthorized");
            return false;
        }
    }

    private async Task RunAsync(LiveCommand command, CancellationToken cancellationToken)
    {
        if (command.Kind != LiveCommandKind.History)
        {
            // A cmdId names one subscription: unsubscribing ends it, and a new command under the same id replaces it.
            RemoveSubscription(command.CmdId);
        }

        if (command.Unsubscribe)
        {
            return;
        }

        if (command.Kind != LiveCommandKind.History && SubscriptionCount >= _options.MaxSubscriptionsPerSocket)
        {
            Reply(command.CmdId, LiveErrorCode.BadRequest, $"This socket holds {SubscriptionCount} subscriptions, the most allowed (Live:MaxSubscriptionsPerSocket); unsubscribe one first.");
            return;
        }

        var caller = _caller!;
        if (caller.TenantId is not { } tenantId)
        {
            Reply(command.CmdId, LiveErrorCode.Unauthorized, "The system administrator sees no tenant's devices; log in as a user of the tenant.");
            return;
        }

        Device? device;
        try
        {
            device = await _services.Devices.GetDeviceAsync(tenantId, command.EntityId, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogCommandFailed(_services.Logger, e, command.CmdId);
            Reply(command.CmdId, LiveErrorCode.Internal, "The server failed to read the device; the error is in its log.");
            return;
        }

        if (device is null)
        {
            // Another tenant's device is answered exactly as one that does not exist.
            Reply(command.CmdId, LiveErrorCode.Unauthorized, $"Device {command.EntityId} was not found, or this user may not read it.");
            return;
        }

        Subscription? subscription = null;
        if (command.Kind != LiveCommandKind.History)
        {
            // Registered before the snapshot is read, so that nothing committed meanwhile is missed.
            subscription = new Subscription(this, command, device.Seq);
            _subscriptions[command.CmdId] = subscription;
            _services.Feed.Add(subscription);
            _services.Subscriptions.Add(1);
        }

        TelemetryPoint[] snapshot;
        try
        {
            snapshot = await SnapshotAsync(command, device.Seq, cancellationToken);
        }
        catch (PlatformException e)
        {
            FailSubscription(subscription);
            Reply(command.CmdId, LiveErrorCode.BadRequest, e.Message);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            FailSubscription(subscription);
            LogCommandFailed(_services.Logger, e, command.CmdId);
            Reply(command.CmdId, LiveErrorCode.Internal, "The server failed to read the data; the error is in its log.");
            return;
        }

        var first = new Outbound(subscription, command.CmdId, LiveErrorCode.None, null, snapshot);
        if (subscription is null)
        {
            Enqueue(first);
        }
        else
        {
            subscription.Release(first);
        }
    }

    private void FailSubscription(Subscription? subscription)
    {
        if (subscription is not null)
        {
            _subscriptions.Remove(subscription.CmdId);
            Remove(subscription);
        }
    }

    private async Task<TelemetryPoint[]> SnapshotAsync(LiveCommand command, long deviceSeq, CancellationToken cancellationToken)
    {
        var result = new List<TelemetryPoint>();
        switch (command.Kind)
        {
            case LiveCommandKind.Attributes:
                foreach (var scope in command.Scope is { } one ? [one] : AllScopes)
                {
                    foreach (var entry in await _services.Attributes.GetAsync(deviceSeq, scope, command.Keys, cancellationToken))
                    {
                        result.Add(new TelemetryPoint(entry.Key, entry.LastUpdateTs, entry.Value));
                    }
                }

                break;
            case LiveCommandKind.Timeseries when command.TimeWindow == 0:
                result.AddRange(await _services.Telemetry.GetLatestAsync(deviceSeq, command.Keys, cancellationToken));
                break;
            default:
            {
                long start, end;
                if (command.Kind == LiveCommandKind.History)
                {
                    (start, end) = (command.StartTs, command.EndTs == 0 ? long.MaxValue : command.EndTs);
                }
                else
                {
                    // ThingsBoard's window: [startTs, startTs + timeWindow]; without startTs, the window up to now.
                    start = command.StartTs > 0 ? command.StartTs : Math.Max(0, _services.Time.GetUtcNow().ToUnixTimeMilliseconds() - command.TimeWindow);
                    end = start > long.MaxValue - command.TimeWindow ? long.MaxValue : start + command.TimeWindow;
                }

                IEnumerable<string> keys = command.Keys ?? (IEnumerable<string>)await _services.Telemetry.GetKeysAsync(deviceSeq, cancellationToken);
                var limit = command.Limit == 0 ? 100 : Math.Min(command.Limit, DeviceDataService.MaxHistoryLimit);
                foreach (var key in keys)
                {
                    if (command.Aggregation == Aggregation.None)
                    {
                        result.AddRange(await _services.Telemetry.GetHistoryAsync(deviceSeq, key, start, end, limit, SortOrder.Descending, cancellationToken));
                    }
                    else
                    {
                        if (end == long.MaxValue)
                        {
                            throw PlatformException.BadRequest("An aggregate needs endTs (or timeWindow).");
                        }

                        var interval = command.Interval > 0 ? command.Interval : end - start;
                        if (interval <= 0 || (end - start) / interval > DeviceDataService.MaxHistoryLimit)
                        {
                            throw PlatformException.BadRequest($"interval must cut the time range into at most {DeviceDataService.MaxHistoryLimit} intervals.");
                        }

                        result.AddRange(await _services.Telemetry.GetAggregatesAsync(deviceSeq, key, start, end, interval, command.Aggregation, cancellationToken));
                    }
                }

                break;
            }
        }

        return [.. result];
    }

    private void Remove(Subscription subscription)
    {
        subscription.Removed = true;
        _services.Feed.Remove(subscription);
        _services.Subscriptions.Add(-1);
    }

    private void Reply(int cmdId, int errorCode, string message) => Enqueue(new Outbound(null, cmdId, errorCode, message, null));

    /// <summary>Queues a frame; from any thread. A full queue means the client reads too slowly.</summary>
    private void Enqueue(Outbound item)
    {
        if (CountWaiting(1) && !_outbound.Writer.TryWrite(item))
        {
            // Closing already (the queue is complete): a late update has nowhere to go.
            Interlocked.Decrement(ref _waiting);
        }
    }

    /// <summary>Queues a subscription's marker; its changes were counted as they came (<see cref="CountWaiting"/>).</summary>
    private void EnqueueMarker(Outbound marker) => _outbound.Writer.TryWrite(marker);

    /// <summary>
    /// Counts <paramref name="updates"/> more waiting for this socket; false when they are not to be sent: the socket
    /// is too slow (now, or already: they are dropped and counted) or closing.
    /// </summary>
    private bool CountWaiting(int updates)
    {
        if (Volatile.Read(ref _slow) != 0)
        {
            _services.UpdatesDropped.Add(updates);
            return false;
        }

        if (Interlocked.Add(ref _waiting, updates) <= _options.OutboundQueueLimit)
        {
            return true;
        }

        Interlocked.Add(ref _waiting, -updates);
        if (Volatile.Read(ref _closing) == 0)
        {
            _services.UpdatesDropped.Add(updates);
            CloseSlow();
        }

        return false;
    }

    /// <summary>Closes the socket once what is queued before it has been sent.</summary>
    private void Close(WebSocketCloseStatus status, string reason)
    {
        if (Volatile.Read(ref _slow) != 0 || Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        _closeStatus = status;
        _closeReason = reason;
        _outbound.Writer.TryComplete();
    }

    private void AuthenticationTimedOut()
    {
        if (Volatile.Read(ref _caller) is not null)
        {
            return;
        }

        Reply(0, LiveErrorCode.Unauthorized, $"Not authenticated: no authCmd within {_options.AuthenticationTimeout.TotalSeconds:0.###} s (Live:AuthenticationTimeout).");
        Close(WebSocketCloseStatus.PolicyViolation, "Unauthorized");
    }

    private void TokenExpired()
    {
        Reply(0, LiveErrorCode.Unauthorized, "Token has expired: connect again with a fresh token.");
        Close(WebSocketCloseStatus.PolicyViolation, "Token has expired");
    }

    private void CloseSlow()
    {
        if (Interlocked.Exchange(ref _slow, 1) != 0)
        {
            return;
        }

        _services.SlowConsumers.Add(1);
        LogSlowConsumer(_services.Logger, _options.OutboundQueueLimit);
        _closeStatus = WebSocketCloseStatus.PolicyViolation;
        _closeReason = $"Reading too slowly: {_options.OutboundQueueLimit} updates were waiting";
        _outbound.Writer.TryComplete();
        // The send under way may never finish (the client does not read at all): give it and the close frame a
        // deadline, then abort the socket.
        ArmAbort();
    }

    /// <summary>Aborts the socket after <see cref="LiveOptions.CloseTimeout"/> unless it has ended by then.</summary>
    private void ArmAbort()
    {
        var timer = _services.Time.CreateTimer(static state => ((LiveSocket)state!).Abort(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        if (Interlocked.CompareExchange(ref _abortTimer, timer, null) is null)
        {
            timer.Change(_options.CloseTimeout, Timeout.InfiniteTimeSpan);
        }
        else
        {
            timer.Dispose();
        }
    }

    private void Abort()
    {
        try
        {
            _sendAborted.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The socket is done already.
        }

        _ws.Abort();
    }

    private async Task SendLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        var scratch = new List<PendingPoint>();
        // Frames go to programs, never into HTML: quotes in messages stay readable instead of \u0027.
        using var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        var reader = _outbound.Reader;
        var dropped = 0L;
        try
        {
            while (await reader.WaitToReadAsync())
            {
                while (reader.TryRead(out var item))
                {
                    var updates = Taken(item, scratch, out var waitingSince);
                    if (Volatile.Read(ref _slow) != 0)
                    {
                        dropped += updates;
                        continue;
                    }

                    if (item.Subscription is { Removed: true } || item.Alarms is { Removed: true } || (item.Merged && scratch.Count == 0))
                    {
                        continue;
                    }

                    buffer.ResetWrittenCount();
                    writer.Reset(buffer);
                    if (item.UpdateType is null)
                    {
                        Write(writer, item.CmdId, item.ErrorCode, item.ErrorMsg, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(scratch));
                    }
                    else if (!await WriteAlarmFrameAsync(writer, item))
                    {
                        continue;
                    }
                    writer.Flush();
                    await _ws.SendAsync(buffer.WrittenMemory, WebSocketMessageType.Text, true, _sendAborted.Token);
                    _services.UpdatesSent.Add(1);
                    if (waitingSince != 0)
                    {
                        // Once per change the frame carries, each at the oldest one's wait: an upper bound for every one.
                        var waited = Stopwatch.GetElapsedTime(waitingSince).TotalMilliseconds;
                        for (var i = 0; i < updates; i++)
                        {
                            _services.CommitToFrame.Record(waited);
                        }
                    }

                    if (buffer.Capacity > LargeFrameBytes)
                    {
                        // A client that fell behind got a large merged frame: its buffer is not kept for the socket's life.
                        buffer = new ArrayBufferWriter<byte>(4096);
                    }
                }
            }

            if (_ws.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await _ws.CloseOutputAsync(_closeStatus, _closeReason, _sendAborted.Token);
                // A client that never answers our close frame does not keep the socket (and a shutdown) waiting.
                ArmAbort();
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client is gone, or was aborted for not reading: nothing more to send.
        }
        finally
        {
            while (reader.TryRead(out var item))
            {
                dropped += Taken(item, scratch, out _);
            }

            if (dropped > 0)
            {
                _services.UpdatesDropped.Add(dropped);
            }
        }
    }

    /// <summary>
    /// The send loop's part of an item it has read: the points of its frame into <paramref name="scratch"/> (all that
    /// a subscription's marker stands for), and the number of updates it was counted as, now no longer waiting;
    /// for a marker, when the oldest of its points was handed over by the feed (0 otherwise).
    /// </summary>
    private int Taken(Outbound item, List<PendingPoint> scratch, out long waitingSince)
    {
        waitingSince = 0;
        scratch.Clear();
        if (scratch.Capacity > LargeFramePoints)
        {
            scratch.Capacity = 0;
        }

        var updates = 1;
        if (item.Merged)
        {
            updates = item.Subscription!.TakePending(scratch, out waitingSince);
        }
        else if (item.Points is { } points)
        {
            for (var i = 0; i < points.Length; i++)
            {
                scratch.Add(new PendingPoint(points[i], i));
            }
        }

        Interlocked.Add(ref _waiting, -updates);
        return updates;
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "A live socket was closed: its client read too slowly ({Limit} updates were waiting)")]
    private static partial void LogSlowConsumer(ILogger logger, int limit);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Error, Message = "Live command {CmdId} failed")]
    private static partial void LogCommandFailed(ILogger logger, Exception exception, int cmdId);
}
