using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Bench.Client;

/// <summary>How to reach the broker under test.</summary>
public sealed record BrokerTarget(string Host, int Port, ProtocolVersion Version, bool Tls = false, string? CaFile = null, string? WebSocketPath = null, string? UserName = null, string? Password = null);

/// <summary>Called for each application message a client receives: when it was sent, by whom, its sequence.</summary>
public delegate void MessageHandler(long sentTimestamp, int publisherId, long sequence);

/// <summary>Called for each PUBLISH a client receives, with its topic and payload as they came (device scenarios: RPC commands).</summary>
public delegate void RawPublishHandler(ReadOnlySpan<byte> topic, ReadOnlySequence<byte> payload);

/// <summary>
/// A small MQTT client for load generation, on the project's own codec. Many of these run on a few threads:
/// each has one receive loop on a pipe; writes go through one async lock per connection. The receive path
/// parses PUBLISH in place (no packet objects), and the publish path writes into the pipe's own buffer, so a
/// steady run allocates nothing per message.
/// </summary>
public sealed class BenchClient : IBenchClient
{
    /// <summary>Bytes at the start of every payload: send timestamp (8), publisher id (4), sequence (8).</summary>
    public const int HeaderSize = 20;

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SemaphoreSlim _inflight;
    private readonly Stream _stream;
    private readonly Socket? _socket;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly ProtocolVersion _version;
    private readonly TaskCompletionSource<MqttPacket> _control = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource<MqttPacket> _pendingControl;
    private Task? _receiveLoop;
    private ushort _nextPacketId;
    // One bit per packet identifier (8 KB): a bool each was 64 KB per client, 640 MB of a 10,000-device fleet.
    private readonly ulong[] _packetIdInUse = new ulong[65_536 / 64];

    /// <summary>Buffers for a client among thousands that each carry little (a device of a fleet, an idle connection).</summary>
    public const int SmallBuffers = 4 * 1024;

    /// <summary>Buffers for a client that carries a stream of messages (a publisher or subscriber of a throughput run).</summary>
    public const int LargeBuffers = 64 * 1024;

    private BenchClient(Stream stream, Socket? socket, ProtocolVersion version, int maxInflight, int bufferSize)
    {
        _stream = stream;
        _socket = socket;
        _version = version;
        // A pending read holds a buffer of bufferSize: 64 KB on each of 10,000 devices was 640 MB of the generator's
        // heap, which its every collection paid for.
        _input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: bufferSize, minimumReadSize: Math.Min(4096, bufferSize / 4)));
        _output = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: Math.Min(16 * 1024, bufferSize)));
        _inflight = new SemaphoreSlim(maxInflight, maxInflight);
        _pendingControl = _control;
    }

    /// <summary>Messages received (any topic).</summary>
    public MessageHandler? OnMessage { get; set; }

    /// <summary>
    /// Every PUBLISH received, raw, on the receive loop (it must not block; it runs before <see cref="OnMessage"/>,
    /// which only sees payloads that carry the timing header).
    /// </summary>
    public RawPublishHandler? OnPublish { get; set; }

    /// <summary>Called when the connection ends unexpectedly.</summary>
    public Action<Exception?>? OnClosed { get; set; }

    public static async Task<BenchClient> OpenAsync(BrokerTarget target, int maxInflight, CancellationToken cancellationToken, System.Net.IPAddress? localAddress = null,
        int bufferSize = LargeBuffers)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.WebSocketPath is { } path)
        {
            var ws = new ClientWebSocket();
            ws.Options.AddSubProtocol("mqtt");
            if (target.Tls)
            {
                ws.Options.RemoteCertificateValidationCallback = (_, cert, chain, errors) => ValidateAgainstCa(target.CaFile, cert, errors);
            }

            var scheme = target.Tls ? "wss" : "ws";
            await ws.ConnectAsync(new Uri($"{scheme}://{target.Host}:{target.Port}{path}"), cancellationToken);
            return new BenchClient(WebSocketStream.Create(ws, WebSocketMessageType.Binary, ownsWebSocket: true), null, target.Version, maxInflight, bufferSize);
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (localAddress is not null)
            {
                socket.Bind(new System.Net.IPEndPoint(localAddress, 0));
            }

            await socket.ConnectAsync(target.Host, target.Port, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        Stream stream = new NetworkStream(socket, ownsSocket: true);
        if (target.Tls)
        {
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false, (_, cert, chain, errors) => ValidateAgainstCa(target.CaFile, cert, errors));
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = target.Host }, cancellationToken);
            stream = ssl;
        }

        return new BenchClient(stream, socket, target.Version, maxInflight, bufferSize);
    }

    private static bool ValidateAgainstCa(string? caFile, X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (errors == SslPolicyErrors.None)
        {
            return true;
        }

        if (caFile is null || certificate is null)
        {
            return false;
        }

        using var ca = X509CertificateLoader.LoadCertificateFromFile(caFile);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }

    /// <summary>Sends CONNECT and waits for CONNACK; returns its reason code.</summary>
    public async Task<ReasonCode> ConnectAsync(string clientId, BrokerTarget target, ushort keepAlive, bool cleanStart, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(target);
        var connect = new ConnectPacket
        {
            ProtocolVersion = _version,
            ClientId = clientId,
            CleanStart = cleanStart,
            KeepAlive = keepAlive,
            UserName = target.UserName,
            // Spelled out: "cond ? null : byte[]" would turn null into an empty, present password.
            Password = target.Password is null ? (ReadOnlyMemory<byte>?)null : System.Text.Encoding.UTF8.GetBytes(target.Password),
        };
        if (_version == ProtocolVersion.V500)
        {
            connect.Properties = new MqttProperties { ReceiveMaximum = 65_535 };
        }

        await SendControlAsync(connect, cancellationToken);
        _receiveLoop = Task.Run(ReceiveLoopAsync, CancellationToken.None);
        var ack = (ConnAckPacket)await WaitControlAsync(cancellationToken);
        return ack.ReasonCode;
    }

    /// <summary>Sends PINGREQ (the PINGRESP is read and ignored by the receive loop).</summary>
    public Task PingAsync(CancellationToken cancellationToken) => SendControlAsync(PingReqPacket.Instance, cancellationToken);

    /// <summary>Subscribes and waits for SUBACK; returns the first reason code.</summary>
    public async Task<ReasonCode> SubscribeAsync(string filter, QoS qos, CancellationToken cancellationToken)
    {
        var subscribe = new SubscribePacket { PacketId = 1 };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = filter, MaximumQoS = qos });
        await SendControlAsync(subscribe, cancellationToken);
        var ack = (SubAckPacket)await WaitControlAsync(cancellationToken);
        return ack.ReasonCodes[0];
    }

    private async Task<MqttPacket> WaitControlAsync(CancellationToken cancellationToken)
    {
        var packet = await _pendingControl.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        _pendingControl = new TaskCompletionSource<MqttPacket>(TaskCreationOptions.RunContinuationsAsynchronously);
        return packet;
    }

    private async Task SendControlAsync(MqttPacket packet, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            PacketWriter.Write(_output, packet, _version);
            await _output.FlushAsync(cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Publishes one message whose payload starts with the timing header. For QoS 1/2 waits for a slot in the
    /// inflight window first. <paramref name="flush"/> false lets a caller batch several publishes into one write.
    /// </summary>
    public async ValueTask PublishAsync(ReadOnlyMemory<byte> topicUtf8, int payloadSize, QoS qos, int publisherId, long sequence, bool flush, CancellationToken cancellationToken)
    {
        if (qos != QoS.AtMostOnce && !_inflight.Wait(0, CancellationToken.None))
        {
            // The window is full. Publishes written without a flush may be what it waits on: the broker cannot
            // acknowledge what it never received, so send them before waiting (a burst larger than the window
            // would otherwise wait forever).
            await FlushAsync(cancellationToken);
            await _inflight.WaitAsync(cancellationToken);
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            WritePublish(topicUtf8.Span, payloadSize, qos, publisherId, sequence);
            if (flush)
            {
                await _output.FlushAsync(cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Publishes <paramref name="payload"/> as it is (no timing header): device payloads such as telemetry JSON.
    /// For QoS 1/2 waits for a slot in the inflight window first.
    /// </summary>
    public async ValueTask PublishRawAsync(ReadOnlyMemory<byte> topicUtf8, ReadOnlyMemory<byte> payload, QoS qos, bool flush, CancellationToken cancellationToken)
    {
        if (qos != QoS.AtMostOnce && !_inflight.Wait(0, CancellationToken.None))
        {
            await FlushAsync(cancellationToken);
            await _inflight.WaitAsync(cancellationToken);
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            payload.Span.CopyTo(BeginPublish(topicUtf8.Span, payload.Length, qos));
            _output.Advance(_pendingPublishLength);
            if (flush)
            {
                await _output.FlushAsync(cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Flushes what earlier unflushed publishes wrote.</summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await _output.FlushAsync(cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private int _pendingPublishLength;

    /// <summary>
    /// Writes a PUBLISH's fixed and variable header into the output and returns the span for its payload; the
    /// caller fills it and advances the output by <see cref="_pendingPublishLength"/>. Caller holds the write lock.
    /// </summary>
    private Span<byte> BeginPublish(ReadOnlySpan<byte> topic, int payloadSize, QoS qos)
    {
        var remaining = 2 + topic.Length + (qos > 0 ? 2 : 0) + (_version == ProtocolVersion.V500 ? 1 : 0) + payloadSize;
        var total = 1 + VariableByteInteger.GetLength((uint)remaining) + remaining;
        var span = _output.GetSpan(total);
        var position = 0;
        span[position++] = (byte)(0x30 | ((int)qos << 1));
        position += VariableByteInteger.Write(span[position..], (uint)remaining);
        BinaryPrimitives.WriteUInt16BigEndian(span[position..], (ushort)topic.Length);
        position += 2;
        topic.CopyTo(span[position..]);
        position += topic.Length;
        if (qos > 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(span[position..], NextPacketId());
            position += 2;
        }

        if (_version == ProtocolVersion.V500)
        {
            span[position++] = 0;
        }

        _pendingPublishLength = total;
        return span.Slice(position, payloadSize);
    }

    private void WritePublish(ReadOnlySpan<byte> topic, int payloadSize, QoS qos, int publisherId, long sequence)
    {
        payloadSize = Math.Max(payloadSize, HeaderSize);
        var payload = BeginPublish(topic, payloadSize, qos);
        BinaryPrimitives.WriteInt64LittleEndian(payload, System.Diagnostics.Stopwatch.GetTimestamp());
        BinaryPrimitives.WriteInt32LittleEndian(payload[8..], publisherId);
        BinaryPrimitives.WriteInt64LittleEndian(payload[12..], sequence);
        payload[HeaderSize..].Clear();
        _output.Advance(_pendingPublishLength);
    }

    private ushort NextPacketId()
    {
        lock (_packetIdInUse)
        {
            for (var i = 0; i < 65_535; i++)
            {
                _nextPacketId = (ushort)(_nextPacketId == ushort.MaxValue ? 1 : _nextPacketId + 1);
                ref var word = ref _packetIdInUse[_nextPacketId >> 6];
                var bit = 1UL << (_nextPacketId & 63);
                if ((word & bit) == 0)
                {
                    word |= bit;
                    return _nextPacketId;
                }
            }
        }

        throw new InvalidOperationException("No packet identifier is free.");
    }

    /// <summary>QoS 1/2 publishes of this client the broker acknowledged with success.</summary>
    public long Acknowledged => Volatile.Read(ref _acknowledged);

    /// <summary>QoS 1/2 publishes of this client the broker refused (a reason code of 0x80 or more).</summary>
    public long Refused => Volatile.Read(ref _refused);

    private long _acknowledged;
    private long _refused;

    private void FreePacketId(ushort id, bool refused = false)
    {
        lock (_packetIdInUse)
        {
            ref var word = ref _packetIdInUse[id >> 6];
            var bit = 1UL << (id & 63);
            if ((word & bit) != 0)
            {
                word &= ~bit;
                if (refused)
                {
                    _refused++;
                }
                else
                {
                    _acknowledged++;
                }

                _inflight.Release();
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var pendingAcks = new List<(byte Header, ushort Id)>();
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync();
                var buffer = result.Buffer;
                while (PacketReader.TryReadFixedHeader(buffer, int.MaxValue, out var header, out var length, out var headerLength) && buffer.Length >= headerLength + length)
                {
                    var frame = buffer.Slice(headerLength, length);
                    HandleFrame(header, frame, pendingAcks);
                    buffer = buffer.Slice(headerLength + length);
                }

                _input.AdvanceTo(buffer.Start, buffer.End);
                if (pendingAcks.Count > 0)
                {
                    await WriteAcksAsync(pendingAcks);
                }

                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException or SocketException or WebSocketException or MqttProtocolException)
        {
            error = ex;
        }

        _pendingControl.TrySetException(error ?? new IOException("The broker closed the connection."));
        OnClosed?.Invoke(error);
    }

    private void HandleFrame(byte header, ReadOnlySequence<byte> frame, List<(byte Header, ushort Id)> pendingAcks)
    {
        var type = (PacketType)(header >> 4);
        if (type == PacketType.Publish)
        {
            ParsePublish(header, frame, pendingAcks);
            return;
        }

        Span<byte> small = stackalloc byte[2];
        switch (type)
        {
            case PacketType.PubAck:
            case PacketType.PubComp:
                frame.Slice(0, 2).CopyTo(small);
                // 5.0: a third byte, when present, is the reason code; 0x80 and above is a refusal.
                var refused = frame.Length > 2 && frame.Slice(2, 1).FirstSpan[0] >= 0x80;
                FreePacketId(BinaryPrimitives.ReadUInt16BigEndian(small), refused);
                return;
            case PacketType.PubRec:
                frame.Slice(0, 2).CopyTo(small);
                pendingAcks.Add((0x62, BinaryPrimitives.ReadUInt16BigEndian(small)));
                return;
            case PacketType.PubRel:
                frame.Slice(0, 2).CopyTo(small);
                pendingAcks.Add((0x70, BinaryPrimitives.ReadUInt16BigEndian(small)));
                return;
            case PacketType.PingResp:
                return;
            default:
                var reader = new PacketReader { Version = _version };
                _pendingControl.TrySetResult(reader.Decode(header, frame.ToArray()));
                return;
        }
    }

    private void ParsePublish(byte header, ReadOnlySequence<byte> frame, List<(byte Header, ushort Id)> pendingAcks)
    {
        var reader = new SequenceReader<byte>(frame);
        reader.TryReadBigEndian(out short topicLength);
        var topic = frame.Slice(reader.Position, (ushort)topicLength);
        reader.Advance((ushort)topicLength);
        var qos = (header >> 1) & 0x03;
        if (qos > 0)
        {
            reader.TryReadBigEndian(out short packetId);
            pendingAcks.Add((qos == 1 ? (byte)0x40 : (byte)0x50, (ushort)packetId));
        }

        if (_version == ProtocolVersion.V500)
        {
            // Property length (variable byte integer), then skip the properties.
            var propertiesLength = 0;
            var shift = 0;
            while (reader.TryRead(out var b))
            {
                propertiesLength |= (b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    break;
                }

                shift += 7;
            }

            reader.Advance(propertiesLength);
        }

        if (OnPublish is { } raw)
        {
            Span<byte> topicBytes = stackalloc byte[Math.Min(256, (int)topic.Length)];
            if (topic.Length <= topicBytes.Length)
            {
                topic.CopyTo(topicBytes);
                raw(topicBytes, reader.UnreadSequence);
            }
        }

        if (reader.Remaining < HeaderSize)
        {
            return;
        }

        Span<byte> head = stackalloc byte[HeaderSize];
        reader.TryCopyTo(head);
        OnMessage?.Invoke(BinaryPrimitives.ReadInt64LittleEndian(head), BinaryPrimitives.ReadInt32LittleEndian(head[8..]), BinaryPrimitives.ReadInt64LittleEndian(head[12..]));
    }

    private async Task WriteAcksAsync(List<(byte Header, ushort Id)> acks)
    {
        await _writeLock.WaitAsync();
        try
        {
            foreach (var (header, id) in acks)
            {
                var span = _output.GetSpan(4);
                span[0] = header;
                span[1] = 2;
                BinaryPrimitives.WriteUInt16BigEndian(span[2..], id);
                _output.Advance(4);
            }

            acks.Clear();
            await _output.FlushAsync();
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Sends DISCONNECT and closes.</summary>
    public async Task DisconnectAsync()
    {
        try
        {
            await SendControlAsync(new DisconnectPacket(), CancellationToken.None);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or SocketException or WebSocketException)
        {
            // Already gone.
        }

        await DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        _socket?.Dispose();
        await _stream.DisposeAsync();
        if (_receiveLoop is not null)
        {
            try
            {
                await _receiveLoop;
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
            }
        }

        _writeLock.Dispose();
        _inflight.Dispose();
    }
}
