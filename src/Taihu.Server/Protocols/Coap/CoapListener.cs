using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Hosting;
using Taihu.Platform.Devices;
using Taihu.Protocols.Coap;

namespace Taihu.Server.Protocols.Coap;

/// <summary>
/// The CoAP listener (RFC 7252 over UDP, <c>Listeners:CoapPort</c>): the message layer. It receives datagrams into
/// one buffer, hands each to a task with a pooled copy, and keeps per-endpoint state (<see cref="CoapEndpoint"/>):
/// duplicate detection by message id (a duplicate confirmable request gets the same response again and is not
/// handled twice), confirmable notifications with retransmission, empty ACKs for requests that take long (the
/// response follows separately), and RST for malformed confirmable messages. What a request means is
/// <see cref="CoapDeviceApi"/>'s business.
/// </summary>
/// <remarks>
/// Design: UDP gives no connection to hang state on, and any sender can mint endpoints by changing its port, so
/// every table is bounded (<see cref="CoapOptions"/>) and swept: remembered responses after EXCHANGE_LIFETIME,
/// uploads likewise, observations after the endpoint's silence, endpoints once they hold nothing. Sends are
/// synchronous <c>sendto</c> calls (UDP does not block on the peer), so nothing is written under a lock that waits.
/// </remarks>
internal sealed partial class CoapListener(
    IOptions<ServerOptions> server, IOptions<ListenerOptions> listeners, IOptions<CoapOptions> options, ServerEndpoints endpoints,
    CoapDeviceApi api, ProtocolDevices devices, DeviceRevocations revocations, TimeProvider time, ILogger<CoapListener> logger) : IHostedService, IAsyncDisposable
{
    private const string Protocol = "coap";
    private const int MaxOptions = 32;
    private readonly CoapOptions _options = options.Value;
    private readonly ConcurrentDictionary<SocketAddress, CoapEndpoint> _endpoints = new();
    private readonly ConcurrentDictionary<CoapExchange, CoapEndpoint> _slow = new();
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _socket;
    private Task? _receiving;
    private ITimer? _sweeper;
    // The sweeper runs only while there is something to sweep: an idle server's timers each wake two threads, and
    // this one, every half second, was a quarter of the wake-ups of a server with nothing to do (docs/benchmarks.md,
    // idle CPU). Armed when an endpoint appears, disarmed by a sweep that finds none, both under _sweepGate.
    private readonly Lock _sweepGate = new();
    private TimeSpan _sweepPeriod;
    private bool _sweeperArmed;
    private int _inFlight;

    public int EndpointCount => _endpoints.Count;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var port = server.Value.CoapPort;
        if (port < 0)
        {
            return Task.CompletedTask;
        }

        var address = listeners.Value.ResolveBindAddress();
        var socket = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        if (address.Equals(IPAddress.IPv6Any))
        {
            socket.DualMode = true;
        }

        socket.ReceiveBufferSize = Math.Max(socket.ReceiveBufferSize, 4 << 20);
        try
        {
            socket.Bind(new IPEndPoint(address, port));
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"CoAP cannot listen on UDP {address}:{port}: {e.Message}. Set Listeners:CoapPort to a free port, or to -1 to turn CoAP off.", e);
        }

        _socket = socket;
        endpoints.CoapPort = ((IPEndPoint)socket.LocalEndPoint!).Port;
        api.Attach(this);
        revocations.Revoked += Forget;
        var sweep = TimeSpan.FromMilliseconds(Math.Clamp(_options.SeparateResponseAfter.TotalMilliseconds / 2, 50, 1000));
        _sweepPeriod = sweep;
        _sweeper = time.CreateTimer(_ => Sweep(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _receiving = Task.Run(ReceiveAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_socket is null)
        {
            return;
        }

        revocations.Revoked -= Forget;
        await _stopping.CancelAsync();
        _socket.Close();
        if (_receiving is not null)
        {
            await _receiving.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        if (_sweeper is not null)
        {
            await _sweeper.DisposeAsync();
        }

        // Observations end with the listener: their devices go offline, waiting persistent calls stay queued.
        foreach (var endpoint in _endpoints.Values)
        {
            lock (endpoint.Gate)
            {
                foreach (var observation in endpoint.Observations)
                {
                    observation.End();
                }

                endpoint.Observations.Clear();
                foreach (var outgoing in endpoint.Outgoing.Values)
                {
                    outgoing.Timer?.Dispose();
                }

                endpoint.Outgoing.Clear();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_sweeper is not null)
        {
            await _sweeper.DisposeAsync();
        }

        _stopping.Dispose();
    }

    private async Task ReceiveAsync()
    {
        var socket = _socket!;
        var buffer = GC.AllocateArray<byte>(65_536, pinned: true);
        var from = new SocketAddress(socket.AddressFamily);
        var token = _stopping.Token;
        while (!token.IsCancellationRequested)
        {
            int length;
            try
            {
                length = await socket.ReceiveFromAsync(buffer, SocketFlags.None, from, token);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.MessageSize)
            {
                // An ICMP port unreachable for an earlier send, or a datagram larger than any CoAP message: the next one.
                continue;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogReceiveFailed(logger, e);
                return;
            }

            if (Interlocked.Increment(ref _inFlight) > _options.MaxConcurrentRequests)
            {
                Interlocked.Decrement(ref _inFlight);
                devices.CountRejected(Protocol, "overloaded");
                continue;
            }

            try
            {
                var endpoint = EndpointOf(from);
                if (endpoint is null)
                {
                    Interlocked.Decrement(ref _inFlight);
                    RefuseFull(buffer.AsSpan(0, length), from);
                    continue;
                }

                var copy = ArrayPool<byte>.Shared.Rent(length);
                buffer.AsSpan(0, length).CopyTo(copy);
                _ = HandleAsync(endpoint, copy, length);
            }
            catch (Exception e)
            {
                // One datagram's trouble never stops the listener.
                Interlocked.Decrement(ref _inFlight);
                LogDatagramFailed(logger, e);
            }
        }
    }

    private CoapEndpoint? EndpointOf(SocketAddress from)
    {
        if (_endpoints.TryGetValue(from, out var endpoint))
        {
            return endpoint;
        }

        if (_endpoints.Count >= _options.MaxEndpoints)
        {
            return null;
        }

        var copy = new SocketAddress(from.Family, from.Size);
        from.Buffer.Span[..from.Size].CopyTo(copy.Buffer.Span);
        endpoint = _endpoints.GetOrAdd(copy, static (address, now) => new CoapEndpoint(address) { LastHeard = now }, time.GetTimestamp());
        ArmSweeper();
        return endpoint;
    }

    /// <summary>The endpoint table is full: a confirmable request is answered 5.03, with no state kept.</summary>
    private void RefuseFull(ReadOnlySpan<byte> datagram, SocketAddress from)
    {
        devices.CountRejected(Protocol, "too_many_endpoints");
        Span<CoapOptionRef> options = stackalloc CoapOptionRef[MaxOptions];
        if (CoapParser.TryParse(datagram, options, out var header) == CoapParseStatus.Ok && header.Type == CoapType.Confirmable && CoapCode.IsRequest(header.Code))
        {
            Span<byte> reply = stackalloc byte[16];
            var writer = new CoapWriter(reply, CoapType.Acknowledgement, CoapCode.ServiceUnavailable, header.MessageId, header.Token(datagram));
            writer.UIntOption(CoapOption.MaxAge, 30);
            SendTo(writer.Written, from);
        }
    }

    private async Task HandleAsync(CoapEndpoint endpoint, byte[] buffer, int length)
    {
        var options = ArrayPool<CoapOptionRef>.Shared.Rent(MaxOptions);
        try
        {
            await HandleDatagramAsync(endpoint, buffer, length, options);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogFailed(logger, endpoint.Remote, e);
        }
        finally
        {
            ArrayPool<CoapOptionRef>.Shared.Return(options);
            ArrayPool<byte>.Shared.Return(buffer);
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task HandleDatagramAsync(CoapEndpoint endpoint, byte[] buffer, int length, CoapOptionRef[] options)
    {
        var status = CoapParser.TryParse(buffer.AsSpan(0, length), options.AsSpan(0, MaxOptions), out var header);
        if (status != CoapParseStatus.Ok)
        {
            // RFC 7252 section 4.2/4.3: a malformed confirmable message is rejected with RST, anything else ignored;
            // fewer than 4 bytes or another version: silently ignored.
            devices.CountRejected(Protocol, status switch
            {
                CoapParseStatus.TooShort => "too_short",
                CoapParseStatus.UnknownVersion => "bad_version",
                CoapParseStatus.TooManyOptions => "too_many_options",
                _ => "bad_format",
            });
            if (status is CoapParseStatus.FormatError or CoapParseStatus.TooManyOptions && header.Type == CoapType.Confirmable)
            {
                SendReset(endpoint, header.MessageId);
            }

            return;
        }

        devices.CountFrame(Protocol);
        var now = time.GetTimestamp();
        while (true)
        {
            lock (endpoint.Gate)
            {
                if (!endpoint.Removed)
                {
                    endpoint.LastHeard = now;
                    break;
                }
            }

            // The sweeper dropped it between the lookup and now: state kept on it would be lost.
            if (EndpointOf(endpoint.Address) is not { } current)
            {
                return;
            }

            endpoint = current;
        }

        if (header.Code == CoapCode.Empty)
        {
            switch (header.Type)
            {
                case CoapType.Confirmable:
                    // A CoAP ping (section 4.3): answered with RST.
                    SendReset(endpoint, header.MessageId);
                    break;
                case CoapType.Acknowledgement:
                    Acknowledged(endpoint, header.MessageId);
                    break;
                case CoapType.Reset:
                    Reset(endpoint, header.MessageId);
                    break;
                default:
                    devices.CountRejected(Protocol, "bad_format");
                    break;
            }

            return;
        }

        if (!CoapCode.IsRequest(header.Code) || header.Type is CoapType.Acknowledgement or CoapType.Reset)
        {
            // This server sends no requests, so a response is never expected; a confirmable one is rejected.
            devices.CountRejected(Protocol, "unexpected_message");
            if (header.Type == CoapType.Confirmable)
            {
                SendReset(endpoint, header.MessageId);
            }
            else if (header.Type == CoapType.Acknowledgement && header.Code != CoapCode.Empty)
            {
                // A piggybacked response to our notification would be odd, but it does acknowledge it.
                Acknowledged(endpoint, header.MessageId);
            }

            return;
        }

        CoapExchange exchange;
        bool duplicate;
        lock (endpoint.Gate)
        {
            exchange = endpoint.Begin(header.MessageId, header.Type, now, TicksOf(_options.ExchangeLifetime), _options.MaxExchangesPerEndpoint, out duplicate);
            if (duplicate)
            {
                if (exchange.State == CoapExchangeState.Acknowledged && header.Type == CoapType.Confirmable)
                {
                    SendEmptyAck(endpoint, header.MessageId);
                }
                else if (exchange.Response is { } remembered)
                {
                    SendTo(remembered, endpoint.Address);
                }

                return;
            }
        }

        var token = header.Token(buffer.AsSpan(0, length)).ToArray();
        if (header.Type == CoapType.Confirmable)
        {
            _slow[exchange] = endpoint;
            if (!Volatile.Read(ref _sweeperArmed))
            {
                ArmSweeper(); // its endpoint was removed meanwhile
            }
        }

        CoapResponse response;
        try
        {
            response = await api.HandleAsync(new CoapRequest(endpoint, header, buffer.AsMemory(0, length), options), _stopping.Token);
        }
        finally
        {
            _slow.TryRemove(exchange, out _);
        }

        Respond(endpoint, exchange, header, token, response);
    }

    /// <summary>Sends the response (piggybacked on the ACK, as a separate CON after an empty ACK, or as NON) and remembers it.</summary>
    private void Respond(CoapEndpoint endpoint, CoapExchange exchange, CoapHeader header, byte[] token, CoapResponse response)
    {
        byte[]? datagram;
        lock (endpoint.Gate)
        {
            if (response.Code == CoapCode.Empty)
            {
                // Nothing to answer yet (an observation of .../rpc): a CON gets an empty ACK, a NON nothing.
                datagram = header.Type == CoapType.Confirmable && exchange.State == CoapExchangeState.InProgress ? [0x60, 0, (byte)(header.MessageId >> 8), (byte)header.MessageId] : null;
                exchange.Response = datagram;
                exchange.State = CoapExchangeState.Answered;
            }
            else if (exchange.State == CoapExchangeState.Acknowledged)
            {
                var messageId = endpoint.NextMessageId();
                datagram = CoapResponseEncoder.Encode(CoapType.Confirmable, messageId, token, response);
                exchange.Response = null;
                exchange.State = CoapExchangeState.Answered;
                Track(endpoint, messageId, new CoapOutgoing(datagram, null, null));
            }
            else
            {
                datagram = header.Type == CoapType.Confirmable
                    ? CoapResponseEncoder.Encode(CoapType.Acknowledgement, header.MessageId, token, response)
                    : CoapResponseEncoder.Encode(CoapType.NonConfirmable, endpoint.NextMessageId(), token, response);
                exchange.Response = datagram;
                exchange.State = CoapExchangeState.Answered;
            }
        }

        if (datagram is not null)
        {
            SendTo(datagram, endpoint.Address);
        }

        response.AfterSend?.Invoke();
    }

    /// <summary>
    /// Sends a notification of <paramref name="observation"/> as a confirmable 2.05 with the next Observe value;
    /// <paramref name="delivery"/> is told when the device acknowledges it.
    /// </summary>
    internal void Notify(CoapObservation observation, byte[] payload, IDeliveryListener? delivery)
    {
        var endpoint = observation.Endpoint;
        byte[] datagram;
        lock (endpoint.Gate)
        {
            if (observation.Ended)
            {
                return;
            }

            var messageId = endpoint.NextMessageId();
            var response = new CoapResponse(CoapCode.Content, payload) { Json = true, Observe = observation.NextSequence() };
            datagram = CoapResponseEncoder.Encode(CoapType.Confirmable, messageId, observation.Token, response);
            Track(endpoint, messageId, new CoapOutgoing(datagram, observation, delivery));
        }

        SendTo(datagram, endpoint.Address);
    }

    /// <summary>Registers a confirmable message for retransmission (ACK_TIMEOUT times 1 to 1.5, doubling, MAX_RETRANSMIT times).</summary>
    private void Track(CoapEndpoint endpoint, ushort messageId, CoapOutgoing outgoing)
    {
        outgoing.Timeout = _options.AckTimeout * (1 + (Random.Shared.NextDouble() / 2));
        endpoint.Outgoing[messageId] = outgoing;
        outgoing.Timer = time.CreateTimer(_ => Retransmit(endpoint, messageId, outgoing), null, outgoing.Timeout, Timeout.InfiniteTimeSpan);
    }

    private void Retransmit(CoapEndpoint endpoint, ushort messageId, CoapOutgoing outgoing)
    {
        lock (endpoint.Gate)
        {
            if (!endpoint.Outgoing.TryGetValue(messageId, out var current) || !ReferenceEquals(current, outgoing))
            {
                return;
            }

            if (outgoing.Transmissions > _options.MaxRetransmit)
            {
                endpoint.Outgoing.Remove(messageId);
                outgoing.Timer?.Dispose();
                if (outgoing.Observation is { } observation)
                {
                    devices.CountRejected(Protocol, "timeout");
                    EndObservation(endpoint, observation);
                }

                return;
            }

            outgoing.Transmissions++;
            outgoing.Timeout *= 2;
            outgoing.Timer?.Change(outgoing.Timeout, Timeout.InfiniteTimeSpan);
        }

        SendTo(outgoing.Datagram, endpoint.Address);
    }

    private void Acknowledged(CoapEndpoint endpoint, ushort messageId)
    {
        CoapOutgoing? outgoing;
        lock (endpoint.Gate)
        {
            if (!endpoint.Outgoing.Remove(messageId, out outgoing))
            {
                return;
            }

            outgoing.Timer?.Dispose();
        }

        outgoing.Delivery?.OnDelivered(Taihu.Mqtt.QoS.AtMostOnce);
    }

    /// <summary>An RST to a notification: the client is no longer interested (RFC 7641 section 3.6).</summary>
    private void Reset(CoapEndpoint endpoint, ushort messageId)
    {
        lock (endpoint.Gate)
        {
            if (!endpoint.Outgoing.Remove(messageId, out var outgoing))
            {
                return;
            }

            outgoing.Timer?.Dispose();
            if (outgoing.Observation is { } observation)
            {
                EndObservation(endpoint, observation);
            }
        }
    }

    private void SendReset(CoapEndpoint endpoint, ushort messageId)
    {
        Span<byte> reset = stackalloc byte[4];
        _ = new CoapWriter(reset, CoapType.Reset, CoapCode.Empty, messageId, []);
        SendTo(reset, endpoint.Address);
    }

    private void SendEmptyAck(CoapEndpoint endpoint, ushort messageId)
    {
        Span<byte> ack = stackalloc byte[4];
        _ = new CoapWriter(ack, CoapType.Acknowledgement, CoapCode.Empty, messageId, []);
        SendTo(ack, endpoint.Address);
    }

    private void SendTo(ReadOnlySpan<byte> datagram, SocketAddress to)
    {
        try
        {
            _socket?.SendTo(datagram, SocketFlags.None, to);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // UDP: a send that fails is a datagram lost; confirmable ones are retransmitted.
        }
    }


    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "CoAP request from {Remote} failed")]
    private static partial void LogFailed(ILogger logger, IPEndPoint remote, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error, Message = "A CoAP datagram could not be taken in")]
    private static partial void LogDatagramFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3, Level = LogLevel.Critical, Message = "The CoAP listener stopped receiving")]
    private static partial void LogReceiveFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2, Level = LogLevel.Error, Message = "CoAP housekeeping failed")]
    private static partial void LogSweepFailed(ILogger logger, Exception exception);
}
