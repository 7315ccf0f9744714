using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Runtime.CompilerServices;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Transport;

/// <summary>
/// Runs one MQTT connection over a duplex pipe, whatever carries it (TCP, TLS, WebSocket). The receive loop
/// decodes frames and feeds the channel. Sending has no loop of its own: when something is queued for an idle
/// connection, a <see cref="Connection"/> is put on the thread pool, writes everything queued, flushes once
/// and goes idle again. An idle connection therefore holds one receive loop and nothing else.
/// </summary>
public static partial class MqttConnectionRunner
{
    /// <param name="connectionClosed">Fires when the transport is gone.</param>
    public static Task RunAsync(MqttBroker broker, IDuplexPipe transport, EndPoint? remoteEndPoint, X509Certificate2? clientCertificate, CancellationToken connectionClosed)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(transport);
        var channel = new MqttChannel(broker, remoteEndPoint, clientCertificate);
        if (!channel.Accepted)
        {
            if (broker.Logger.IsEnabled(LogLevel.Warning) && broker.ShouldLogRefusal())
            {
                LogTooManyConnections(broker.Logger, remoteEndPoint, broker.Options.MaximumConnections);
            }

            channel.OnTransportClosed();
            return Task.CompletedTask;
        }

        var connection = new Connection(broker, channel, transport, null, null, connectionClosed);
        channel.AttachTransport(connection);
        return connection.ReceiveAsync();
    }

    /// <summary>
    /// Runs a connection accepted by <paramref name="listener"/>, which it hands back (<see cref="MqttTcpListener.ReleaseAsync"/>)
    /// when it has ended. Nothing else awaits the connection, so an idle one holds no state machine but its own.
    /// </summary>
    internal static Task RunAsync(MqttBroker broker, ConnectionContext context, MqttTcpListener listener)
    {
        var channel = new MqttChannel(broker, context.RemoteEndPoint, null);
        if (!channel.Accepted)
        {
            if (broker.Logger.IsEnabled(LogLevel.Warning) && broker.ShouldLogRefusal())
            {
                LogTooManyConnections(broker.Logger, context.RemoteEndPoint, broker.Options.MaximumConnections);
            }

            channel.OnTransportClosed();
            return listener.ReleaseAsync(context).AsTask();
        }

        var connection = new Connection(broker, channel, context.Transport, context, listener, context.ConnectionClosed);
        channel.AttachTransport(connection);
        return connection.ReceiveAsync();
    }

    /// <summary>How long a connection the broker ended with DISCONNECT keeps reading while the client closes its end.</summary>
    internal static readonly TimeSpan DisconnectLinger = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Lingering close, as web servers do: after a DISCONNECT has been written, the output stays open and what the
    /// client still sends (PUBRELs for messages it had in flight, say) is read and discarded until it closes its
    /// end, as 5.0 section 4.13 tells it to, or <see cref="DisconnectLinger"/> passes. Closing at once would leave
    /// those bytes unread, or make them arrive at a closed socket; either way TCP answers with a reset, and the
    /// client sees a broken pipe instead of the DISCONNECT that says why. The wait is on the wall clock: it bounds
    /// a socket, not a protocol timer.
    /// </summary>
    private static async ValueTask LingerAsync(PipeReader input)
    {
        using var linger = new CancellationTokenSource(DisconnectLinger);
        try
        {
            while (true)
            {
                // The first read may return canceled: closing cancelled the pending read to stop the receive loop.
                var result = await input.ReadAsync(linger.Token);
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The linger ran out, or the transport failed or was aborted (host shutdown): close now either way.
        }
    }

    private static async ValueTask CompleteQuietlyAsync(PipeWriter output)
    {
        try
        {
            await output.CompleteAsync();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Completing a broken transport may throw anything it threw before; the connection is over either way.
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "Connection from {RemoteEndPoint} refused: the limit of {Limit} connections is reached")]
    private static partial void LogTooManyConnections(ILogger logger, EndPoint? remoteEndPoint, int limit);

    /// <summary>What the receive loop does after a batch of packets.</summary>
    private enum BatchEnd
    {
        /// <summary>Everything readable was handled: read again.</summary>
        Read,
        /// <summary>A packet's handling waits (an observer, room in a subscriber's full queue): await it, then read what is left.</summary>
        Pending,
        /// <summary>The outbound queue reached its limit: read what is left once the client has taken half of it.</summary>
        OutboundFull,
        /// <summary>The connection is over (closed, failed, or the peer finished).</summary>
        Stop,
    }

    /// <summary>
    /// One connection: its receive loop, and the sender that writes what the channel queued. The sender has no loop
    /// of its own: scheduled on the thread pool when the queue goes from empty to not empty (or run by a receive
    /// loop, see <see cref="ScheduleSend"/>), it drains the queue, flushes once per batch, and goes idle; when the
    /// channel is closing it finishes the output.
    /// </summary>
    /// <remarks>
    /// An idle connection is this object, the channel and the receive loop's state machine waiting in
    /// <see cref="PipeReader.ReadAsync"/>. That state machine is kept small on purpose: the loop's state lives in
    /// fields here and a batch of packets is handled by a synchronous method, so that the only things the
    /// compiler hoists into it are its awaiters (about 330 bytes a connection when the whole loop was one method).
    /// </remarks>
    private sealed class Connection : IThreadPoolWorkItem, IChannelTransport
    {
        private readonly MqttBroker _broker;
        private readonly MqttChannel _channel;
        private readonly IDuplexPipe _transport;
        private readonly CancellationToken _connectionClosed;
        // Set when this connection came from MqttTcpListener, which gets it back when it ends.
        private readonly ConnectionContext? _context;
        private readonly MqttTcpListener? _listener;
        private TaskCompletionSource? _completion;
        private bool _finished;

        public Connection(MqttBroker broker, MqttChannel channel, IDuplexPipe transport, ConnectionContext? context, MqttTcpListener? listener, CancellationToken connectionClosed)
        {
            _broker = broker;
            _channel = channel;
            _transport = transport;
            _connectionClosed = connectionClosed;
            _context = context;
            _listener = listener;
        }

        /// <summary>
        /// The receive loop. No callbacks on the connection's tokens: each costs a registration per connection,
        /// and neither is needed. A closed transport completes the read; a shutdown closes every channel through
        /// the broker, which refuses connections that arrive after it began.
        /// </summary>
        internal async Task ReceiveAsync()
        {
            try
            {
                while (true)
                {
                    var next = HandleBatch(await _transport.Input.ReadAsync(CancellationToken.None), out var pending);
                    if (next == BatchEnd.Pending)
                    {
                        // What earlier packets queued must not wait with this one.
                        if (TakeDeferred())
                        {
                            ScheduleSend();
                        }

                        // Then, as after any packet, the outbound limit is checked before the rest is read.
                        next = await pending && !_channel.IsClosing ? BatchEnd.OutboundFull : BatchEnd.Stop;
                    }

                    // What this client makes the broker send (acknowledgements above all) is bounded too: at the
                    // outbound limit, reading stops until the client has taken half of it.
                    var room = next == BatchEnd.OutboundFull ? _channel.WaitForOutboundRoom() : null;
                    if (TakeDeferred())
                    {
                        // This loop sends what it queued itself; on a client that does not read, this is where
                        // reading stops, until the socket takes more.
                        await DrainAsync();
                    }

                    if (next == BatchEnd.Stop || _channel.IsClosing)
                    {
                        break;
                    }

                    if (room is not null)
                    {
                        _broker.Metrics.ReadingPaused();
                        await room;
                    }
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException and not MqttProtocolException)
            {
                // The peer or the transport went away (reset, WebSocket aborted, TLS failure); the will and session
                // rules below apply.
            }
            finally
            {
                if (TakeDeferred())
                {
                    ScheduleSend();
                }

                _channel.Close(ReasonCode.Success, null, publishWill: true, sendDisconnect: false);
                _channel.DetachFromSession();
                await Completion;
                if (OutputLeftOpen)
                {
                    await LingerAsync(_transport.Input);
                    await CompleteQuietlyAsync(_transport.Output);
                }

                _channel.OnTransportClosed();
                await _transport.Input.CompleteAsync();
                if (_listener is not null)
                {
                    await _listener.ReleaseAsync(_context!);
                }
            }
        }

        /// <summary>
        /// Decodes and handles the packets of one read, synchronously, and advances the reader past them. A packet
        /// whose handling does not complete at once ends the batch (<paramref name="pending"/>): the rest is read
        /// again after it.
        /// </summary>
        private BatchEnd HandleBatch(ReadResult result, out ValueTask<bool> pending)
        {
            pending = default;
            var buffer = result.Buffer;
            var start = buffer.Length;
            var end = result.IsCanceled ? BatchEnd.Stop : BatchEnd.Read;
            var reader = _channel.Reader;
            try
            {
                while (end == BatchEnd.Read && reader.TryRead(ref buffer, PublishTarget(buffer), out var packet))
                {
                    // While the packet is handled synchronously on this thread, what it queues for this same
                    // connection (acknowledgements, SUBACK, PINGRESP) is written after the batch, by this loop,
                    // instead of waking another thread for every acknowledgement.
                    ValueTask<bool> handled;
                    var outer = Receiving;
                    Receiving = this;
                    try
                    {
                        handled = _channel.HandleAsync(packet, _connectionClosed);
                    }
                    finally
                    {
                        Receiving = outer;
                    }

                    if (!handled.IsCompletedSuccessfully)
                    {
                        pending = handled;
                        end = BatchEnd.Pending;
                    }
                    else if (!handled.Result)
                    {
                        end = BatchEnd.Stop;
                    }
                    else if (_channel.WaitForOutboundRoom() is not null)
                    {
                        end = BatchEnd.OutboundFull;
                    }
                }
            }
            catch (MqttProtocolException ex)
            {
                _channel.OnProtocolError(ex);
                end = BatchEnd.Stop;
            }
            finally
            {
                // Deliveries this batch queued for other connections go out now, from this thread.
                StartWoken();
            }

            _broker.Metrics.Received(start - buffer.Length);
            if (end is BatchEnd.Pending or BatchEnd.OutboundFull)
            {
                // Stopped mid-buffer: what is left is read again, at once, when the loop reads next.
                _transport.Input.AdvanceTo(buffer.Start);
            }
            else
            {
                _transport.Input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    end = BatchEnd.Stop;
                }
            }

            return end;
        }

        /// <summary>
        /// The channel's reusable PUBLISH when the next frame is a PUBLISH; null otherwise, so that a connection
        /// that never publishes (an idle device that only pings) never makes it, nor the topic cache that comes
        /// with it. A frame whose first byte is not in the first segment decodes into a new packet instead.
        /// </summary>
        private PublishPacket? PublishTarget(in ReadOnlySequence<byte> buffer)
        {
            var first = buffer.FirstSpan;
            return first.Length > 0 && first[0] >> 4 == (int)PacketType.Publish ? _channel.ReusablePublish : null;
        }

        /// <summary>Completes when the sender has written everything and finished the output.</summary>
        public Task Completion
        {
            get
            {
                lock (this)
                {
                    if (_finished)
                    {
                        return Task.CompletedTask;
                    }

                    _completion ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    return _completion.Task;
                }
            }
        }

        /// <summary>The sender whose receive loop is handling a packet on this thread right now, if any.</summary>
        [ThreadStatic]
        internal static Connection? Receiving;

        private bool _deferred;

        public void ScheduleSend()
        {
            var receiving = Receiving;
            if (ReferenceEquals(receiving, this))
            {
                // Our own receive loop queued it; it drains at the end of its batch.
                _deferred = true;
                return;
            }

            if (receiving is not null)
            {
                // Another connection's receive loop delivered to us: it starts us itself once its batch is handled
                // (StartWoken), so that a batch of deliveries is one write, with no hop through the thread pool.
                (t_woken ??= []).Add(this);
                return;
            }

            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }

        [ThreadStatic]
        private static List<Connection>? t_woken;

        /// <summary>Inline drains per batch; beyond them (a wide fan-out) senders go to the thread pool, to share the work.</summary>
        private const int InlineDrains = 32;

        /// <summary>
        /// Starts the senders that the receive loop on this thread woke while handling its batch. Each writes what it
        /// has and flushes on this thread until its first wait (a full socket), which continues elsewhere: a slow
        /// subscriber never holds up the publisher's loop.
        /// </summary>
        internal static void StartWoken()
        {
            var woken = t_woken;
            if (woken is null || woken.Count == 0)
            {
                return;
            }

            // The list is this call's alone while it runs: with inline scheduling (MqttTcpListener) a drain can run
            // another connection's receive loop on this thread, whose batch wakes senders and starts them itself.
            t_woken = null;
            for (var i = 0; i < woken.Count; i++)
            {
                if (i < InlineDrains)
                {
                    woken[i].Execute();
                }
                else
                {
                    ThreadPool.UnsafeQueueUserWorkItem(woken[i], preferLocal: false);
                }
            }

            woken.Clear();
            t_woken ??= woken;
        }

        /// <summary>True (once) when a drain was deferred to the receive loop.</summary>
        public bool TakeDeferred()
        {
            if (!_deferred)
            {
                return false;
            }

            _deferred = false;
            return true;
        }

        /// <summary>
        /// Cancels the pending read from the thread pool, not here: with inline scheduling (MqttTcpListener) the
        /// receive loop would otherwise go on, and end, on the caller's thread, inside whatever the caller holds (a
        /// takeover closes the old connection under the broker's session lock).
        /// </summary>
        public void StopReceiving() => ThreadPool.UnsafeQueueUserWorkItem(static input => input.CancelPendingRead(), _transport.Input, preferLocal: false);

        // Fire and forget by design: DrainAsync catches its own failures and reports completion through
        // Completion; awaiting here would hold a thread-pool thread per sending connection.
#pragma warning disable CA2012
        public void Execute() => _ = DrainAsync();
#pragma warning restore CA2012

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        internal async ValueTask DrainAsync()
        {
            var output = _transport.Output;
            var flushed = false;
            try
            {
                while (true)
                {
                    long bytes = 0;
                    var packets = 0;
                    var publishes = 0;
                    while (_channel.TryDequeueOutbound(out var item))
                    {
                        var written = _channel.WriteOutbound(item, output);
                        if (written > 0)
                        {
                            bytes += written;
                            packets++;
                            if (item.Message is not null)
                            {
                                publishes++;
                            }
                        }
                    }

                    if (packets > 0)
                    {
                        _broker.Metrics.Sent(bytes);
                        _broker.Metrics.PacketsSent(packets, publishes);
                        var flush = await output.FlushAsync();
                        if (flush.IsCompleted || flush.IsCanceled)
                        {
                            break;
                        }
                    }

                    var state = _channel.TryStopSending();
                    if (state == DrainState.Idle)
                    {
                        return;
                    }

                    if (state == DrainState.Finished)
                    {
                        flushed = true;
                        break;
                    }
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The transport failed (socket reset, WebSocket aborted, TLS error...): whatever it was, the
                // connection is over; finishing below must still run or the connection would never complete.
            }

            await FinishAsync(output, flushed);
        }

        /// <summary>
        /// True when the sender wrote everything, a DISCONNECT last, and left the output open: the receive side
        /// lingers (see <see cref="LingerAsync"/>) and then completes it.
        /// </summary>
        public bool OutputLeftOpen { get; private set; }

        private async ValueTask FinishAsync(PipeWriter output, bool flushed)
        {
            _channel.Close(ReasonCode.Success, null, publishWill: true, sendDisconnect: false);
            while (_channel.TryDequeueOutbound(out var left))
            {
                left.Message?.Release();
            }

            if (flushed && _channel.SentDisconnect)
            {
                OutputLeftOpen = true;
            }
            else
            {
                await CompleteQuietlyAsync(output);
            }

            TaskCompletionSource? completion;
            lock (this)
            {
                _finished = true;
                completion = _completion;
            }

            completion?.TrySetResult();
        }
    }
}
