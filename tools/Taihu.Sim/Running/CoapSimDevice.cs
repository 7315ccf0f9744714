using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Taihu.Protocols.Coap;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// A constrained device on ThingsBoard's CoAP device API (UDP, the codec of <c>Taihu.Protocols</c>): each report is a
/// confirmable <c>POST /api/v1/{token}/telemetry</c> (JSON), acknowledged by a 2.xx response, piggybacked on the ACK or
/// sent separately after an empty ACK. Unanswered requests are sent again after RFC 7252's ACK_TIMEOUT (2 s times
/// 1 to 1.5, doubling) up to MAX_RETRANSMIT (4) times, as a device does; one request at a time. When its fleet is
/// called (<see cref="AnswersRpc"/>) it observes <c>GET .../rpc</c> (Observe 0) and answers each command the platform
/// notifies with <c>POST .../rpc/{id}</c>, after the fleet's RPC delay and with its share of errors. One loop reads
/// the socket and hands each datagram to whom it is for. There is no connection to lose: a device that stops
/// answering is what the server's observation timeout is for.
/// </summary>
public sealed class CoapSimDevice(IPEndPoint server, string token, FleetDefinition fleet, ScenarioScaling scaling, Random random) : ISimDevice
{
    private const int MaxRetransmit = 4;

    /// <summary>The observation's token: four bytes, so never one of the requests' two-byte tokens.</summary>
    private static readonly byte[] ObserveToken = "rpc!"u8.ToArray();

    private readonly Socket _socket = new(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
    private readonly byte[] _token = Encoding.UTF8.GetBytes(token);
    private readonly SemaphoreSlim _one = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private Pending? _pending;
    private Task _receiving = Task.CompletedTask;
    private ushort _messageId;
    private int _retransmissions;
    private int _rpcAnswered;

    /// <summary>Set before <see cref="ConnectAsync"/> when the run calls this fleet: the device observes .../rpc.</summary>
    public bool AnswersRpc { get; set; }

    public bool IsConnected => true;

    public int ConnectionsLost => 0;

    public int Reconnects => 0;

    public int RpcAnswered => Volatile.Read(ref _rpcAnswered);

    public int AttributeUpdates => 0;

    /// <summary>Requests sent again because their answer was late.</summary>
    public int Retransmissions => Volatile.Read(ref _retransmissions);

    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        _socket.Connect(server);
        lock (random)
        {
            _messageId = (ushort)random.Next(65536);
        }

        _receiving = ReceiveAsync();
        if (AnswersRpc)
        {
            var observed = await RequestAsync(CoapCode.Get, ["rpc"u8.ToArray()], [], ObserveToken, emptyAckAnswers: true, cancellationToken);
            if (!observed.Acknowledged)
            {
                throw new InvalidOperationException($"The server did not take the CoAP device's observation of .../rpc: {observed.Outcome}.");
            }
        }
    }

    public Task DropAsync(bool reconnect) => Task.CompletedTask;

    public Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) =>
        RequestAsync(CoapCode.Post, ["telemetry"u8.ToArray()], payload, null, emptyAckAnswers: false, cancellationToken);

    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) =>
        RequestAsync(CoapCode.Post, ["attributes"u8.ToArray()], payload, null, emptyAckAnswers: false, cancellationToken);

    /// <summary>A request waiting for its answer: its message id and token, and whether an empty ACK has come (the answer follows separately).</summary>
    private sealed class Pending(ushort messageId, byte[] token, bool emptyAckAnswers)
    {
        public ushort MessageId { get; } = messageId;

        public byte[] Token { get; } = token;

        public bool EmptyAckAnswers { get; } = emptyAckAnswers;

        public TaskCompletionSource<byte> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Acked { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// A confirmable request to <c>/api/v1/{token}/{path...}</c>, retransmitted until acknowledged. With
    /// <paramref name="emptyAckAnswers"/> (an observation's registration, which ThingsBoard's API acknowledges empty)
    /// the empty ACK is the answer; otherwise the 2.xx that follows it.
    /// </summary>
    private async Task<SendResult> RequestAsync(byte code, byte[][] path, byte[] payload, byte[]? requestToken, bool emptyAckAnswers, CancellationToken cancellationToken)
    {
        await _one.WaitAsync(cancellationToken);
        try
        {
            var messageId = ++_messageId;
            var tokenBytes = requestToken ?? RequestToken(messageId);
            var request = new byte[64 + _token.Length + payload.Length + (path.Length * 16)];
            var length = Write(request, code, messageId, tokenBytes, _token, path, payload, observe: code == CoapCode.Get);
            var pending = new Pending(messageId, tokenBytes, emptyAckAnswers);
            lock (_gate)
            {
                _pending = pending;
            }

            double first;
            lock (random)
            {
                first = 2 * (1 + (random.NextDouble() / 2));
            }

            var timeout = TimeSpan.FromSeconds(first);
            for (var attempt = 0; attempt <= MaxRetransmit; attempt++, timeout *= 2)
            {
                if (attempt > 0)
                {
                    Interlocked.Increment(ref _retransmissions);
                }

                await _socket.SendAsync(request.AsMemory(0, length), SocketFlags.None, cancellationToken);
                try
                {
                    var answered = await Task.WhenAny(pending.Answer.Task, pending.Acked.Task).WaitAsync(timeout, cancellationToken);
                    if (answered != pending.Answer.Task)
                    {
                        // An empty ACK: the server takes longer and answers separately; stop retransmitting and wait.
                        await pending.Answer.Task.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
                    }

                    var result = await pending.Answer.Task;
                    return (result >> 5) == 2 || (result == CoapCode.Empty && emptyAckAnswers) ? SendResult.Ok : new SendResult(false, "refused: CoAP " + CoapCode.Format(result));
                }
                catch (TimeoutException)
                {
                    if (pending.Acked.Task.IsCompleted)
                    {
                        return new SendResult(false, "no answer after the empty ACK");
                    }

                    // No answer in time: send it again.
                }
            }

            return new SendResult(false, "no answer");
        }
        catch (SocketException e)
        {
            return new SendResult(false, "refused: " + e.SocketErrorCode);
        }
        finally
        {
            lock (_gate)
            {
                _pending = null;
            }

            _one.Release();
        }
    }

    /// <summary>Reads every datagram: answers to the request in flight, and the platform's RPC notifications.</summary>
    private async Task ReceiveAsync()
    {
        var buffer = new byte[1500];
        var options = new CoapOptionRef[16];
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                var received = await _socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, _stopping.Token);
                if (Dispatch(buffer.AsSpan(0, received), options) is { } acknowledge)
                {
                    await _socket.SendAsync(new byte[] { 0x60, 0, (byte)(acknowledge >> 8), (byte)acknowledge }, SocketFlags.None, _stopping.Token);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // The run is over.
        }
    }

    /// <summary>Hands a datagram to whom it is for; returns the message id to acknowledge when it is a confirmable one of ours.</summary>
    private ushort? Dispatch(ReadOnlySpan<byte> datagram, Span<CoapOptionRef> options)
    {
        if (CoapParser.TryParse(datagram, options, out var header) != CoapParseStatus.Ok)
        {
            return null;
        }

        ushort? acknowledge = header.Type == CoapType.Confirmable ? header.MessageId : null;
        var tokenBytes = header.Token(datagram);
        if (header.Type is CoapType.Confirmable or CoapType.NonConfirmable && tokenBytes.SequenceEqual(ObserveToken) && header.Code == CoapCode.Content)
        {
            Command(header.Payload(datagram));
            return acknowledge;
        }

        Pending? pending;
        lock (_gate)
        {
            pending = _pending;
        }

        if (header.Type == CoapType.Acknowledgement)
        {
            if (pending is not null && header.MessageId == pending.MessageId)
            {
                if (header.Code == CoapCode.Empty && !pending.EmptyAckAnswers)
                {
                    pending.Acked.TrySetResult();
                }
                else
                {
                    pending.Answer.TrySetResult(header.Code);
                }
            }

            return null;
        }

        if (pending is not null && tokenBytes.SequenceEqual(pending.Token))
        {
            pending.Answer.TrySetResult(header.Code);
        }

        // A separate response, ours now or late for a request given up on: acknowledged, so the server stops resending it.
        return acknowledge;
    }

    /// <summary>A command notified on .../rpc (<c>{"id","method","params"}</c>): answered on its own, not on the read loop.</summary>
    private void Command(ReadOnlySpan<byte> payload)
    {
        int id;
        string method;
        try
        {
            var reader = new Utf8JsonReader(payload);
            using var json = JsonDocument.ParseValue(ref reader);
            id = json.RootElement.GetProperty("id").GetInt32();
            method = json.RootElement.TryGetProperty("method", out var m) ? m.GetString() ?? "" : "";
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return;
        }

        bool error;
        lock (random)
        {
            error = random.NextDouble() < fleet.Behaviour.RpcErrors;
        }

        _ = AnswerAsync(id, method, scaling.Real(fleet.Behaviour.RpcDelay), error);
    }

    private async Task AnswerAsync(int id, string method, TimeSpan delay, bool error)
    {
        try
        {
            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, _stopping.Token);
            }

            var answer = error
                ? $"{{\"error\":\"simulated failure\",\"method\":{JsonSerializer.Serialize(method)}}}"
                : $"{{\"result\":\"ok\",\"method\":{JsonSerializer.Serialize(method)}}}";
            var result = await RequestAsync(CoapCode.Post, ["rpc"u8.ToArray(), Encoding.ASCII.GetBytes(id.ToString(CultureInfo.InvariantCulture))], Encoding.UTF8.GetBytes(answer), null,
                emptyAckAnswers: false, _stopping.Token);
            if (result.Acknowledged)
            {
                Interlocked.Increment(ref _rpcAnswered);
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    private static int Write(byte[] buffer, byte code, ushort messageId, ReadOnlySpan<byte> requestToken, ReadOnlySpan<byte> token, byte[][] path, ReadOnlySpan<byte> payload, bool observe)
    {
        var writer = new CoapWriter(buffer, CoapType.Confirmable, code, messageId, requestToken);
        if (observe)
        {
            writer.UIntOption(CoapOption.Observe, 0);
        }

        writer.Option(CoapOption.UriPath, "api"u8);
        writer.Option(CoapOption.UriPath, "v1"u8);
        writer.Option(CoapOption.UriPath, token);
        foreach (var segment in path)
        {
            writer.Option(CoapOption.UriPath, segment);
        }

        if (payload.Length > 0)
        {
            writer.UIntOption(CoapOption.ContentFormat, CoapOption.FormatJson);
            writer.Payload(payload);
        }

        return writer.Length;
    }

    /// <summary>The request's token: its message id, so that a separate response is matched without a table.</summary>
    private static byte[] RequestToken(ushort messageId) => [(byte)(messageId >> 8), (byte)messageId];

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _socket.Dispose();
        await _receiving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }
}
