using System.Net;
using System.Net.Sockets;
using System.Text;
using Taihu.Protocols.Coap;

namespace Taihu.Sim.Running;

/// <summary>
/// A constrained device on ThingsBoard's CoAP device API (UDP, the codec of <c>Taihu.Protocols</c>): each report is a
/// confirmable <c>POST /api/v1/{token}/telemetry</c> (JSON), acknowledged by a 2.xx response, piggybacked on the ACK or
/// sent separately after an empty ACK. Unanswered requests are sent again after RFC 7252's ACK_TIMEOUT (2 s times
/// 1 to 1.5, doubling) up to MAX_RETRANSMIT (4) times, as a device does; one request at a time. There is no
/// connection to lose: a device that stops answering is what the server's observation timeout is for.
/// </summary>
public sealed class CoapSimDevice(IPEndPoint server, string token, Random random) : ISimDevice
{
    private const int MaxRetransmit = 4;
    private readonly Socket _socket = new(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
    private readonly byte[] _token = Encoding.UTF8.GetBytes(token);
    private readonly SemaphoreSlim _one = new(1, 1);
    private readonly byte[] _answer = new byte[1500];
    private readonly CoapOptionRef[] _options = new CoapOptionRef[16];
    private ushort _messageId;
    private int _retransmissions;

    public bool IsConnected => true;

    public int ConnectionsLost => 0;

    public int Reconnects => 0;

    public int RpcAnswered => 0;

    public int AttributeUpdates => 0;

    /// <summary>Requests sent again because their answer was late.</summary>
    public int Retransmissions => Volatile.Read(ref _retransmissions);

    public Task ConnectAsync(CancellationToken cancellationToken)
    {
        _socket.Connect(server);
        lock (random)
        {
            _messageId = (ushort)random.Next(65536);
        }

        return Task.CompletedTask;
    }

    public Task DropAsync(bool reconnect) => Task.CompletedTask;

    public Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => PostAsync("telemetry"u8.ToArray(), payload, cancellationToken);

    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => PostAsync("attributes"u8.ToArray(), payload, cancellationToken);

    private async Task<SendResult> PostAsync(byte[] resource, byte[] payload, CancellationToken cancellationToken)
    {
        await _one.WaitAsync(cancellationToken);
        try
        {
            var messageId = ++_messageId;
            var request = new byte[64 + _token.Length + payload.Length];
            var length = Write(request, messageId, _token, resource, payload);
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
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                wait.CancelAfter(timeout);
                try
                {
                    if (await ReceiveAnswerAsync(messageId, wait) is { } code)
                    {
                        return (code >> 5) == 2 ? SendResult.Ok : new SendResult(false, "refused: CoAP " + CoapCode.Format(code));
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
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
            _one.Release();
        }
    }

    /// <summary>The response code of the answer to <paramref name="messageId"/>; null when the socket says nothing more.</summary>
    private async Task<byte?> ReceiveAnswerAsync(ushort messageId, CancellationTokenSource wait)
    {
        while (true)
        {
            var received = await _socket.ReceiveAsync(_answer.AsMemory(), SocketFlags.None, wait.Token);
            if (CoapParser.TryParse(_answer.AsSpan(0, received), _options, out var header) != CoapParseStatus.Ok)
            {
                continue;
            }

            if (header.Type == CoapType.Acknowledgement && header.MessageId == messageId && header.Code == CoapCode.Empty)
            {
                // The server takes longer and answers separately: stop retransmitting and wait for it.
                wait.CancelAfter(TimeSpan.FromSeconds(60));
                continue;
            }

            var ours = header.Type == CoapType.Acknowledgement
                ? header.MessageId == messageId
                : header.Type is CoapType.Confirmable or CoapType.NonConfirmable && header.Token(_answer).SequenceEqual(RequestToken(messageId));
            if (!ours)
            {
                continue;
            }

            if (header.Type == CoapType.Confirmable)
            {
                await _socket.SendAsync(new byte[] { 0x60, 0, (byte)(header.MessageId >> 8), (byte)header.MessageId }, SocketFlags.None, wait.Token);
            }

            return header.Code;
        }
    }

    internal static int Write(byte[] buffer, ushort messageId, ReadOnlySpan<byte> token, ReadOnlySpan<byte> resource, ReadOnlySpan<byte> payload)
    {
        var writer = new CoapWriter(buffer, CoapType.Confirmable, CoapCode.Post, messageId, RequestToken(messageId));
        writer.Option(CoapOption.UriPath, "api"u8);
        writer.Option(CoapOption.UriPath, "v1"u8);
        writer.Option(CoapOption.UriPath, token);
        writer.Option(CoapOption.UriPath, resource);
        writer.UIntOption(CoapOption.ContentFormat, CoapOption.FormatJson);
        writer.Payload(payload);
        return writer.Length;
    }

    /// <summary>The request's token: its message id, so that a separate response is matched without a table.</summary>
    private static byte[] RequestToken(ushort messageId) => [(byte)(messageId >> 8), (byte)messageId];

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
