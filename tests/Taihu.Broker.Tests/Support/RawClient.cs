using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests.Support;

/// <summary>
/// A bare socket speaking our own codec: sends exactly the bytes a test wants (including malformed ones) and
/// reads what the broker answers. It never pings by itself, so keep-alive tests control time completely.
/// </summary>
public sealed class RawClient : IAsyncDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private readonly PipeReader _reader;
    private readonly PacketReader _decoder = new();

    private RawClient(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
        _reader = PipeReader.Create(_stream);
    }

    public ProtocolVersion Version
    {
        get => _decoder.Version;
        set => _decoder.Version = value;
    }

    public static async Task<RawClient> OpenAsync(BrokerHost host)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", host.Port);
        return new RawClient(tcp);
    }

    /// <summary>Opens a socket and completes CONNECT; returns the CONNACK.</summary>
    public static async Task<(RawClient Client, ConnAckPacket Ack)> ConnectAsync(BrokerHost host, ConnectPacket connect)
    {
        var client = await OpenAsync(host);
        client.Version = connect.ProtocolVersion;
        await client.SendAsync(connect);
        var ack = await client.ReceiveAsync() as ConnAckPacket ?? throw new InvalidOperationException("Expected CONNACK.");
        return (client, ack);
    }

    public Task SendAsync(MqttPacket packet) => SendAsync(PacketWriter.ToArray(packet, Version == ProtocolVersion.Unknown ? ProtocolVersion.V311 : Version));

    public async Task SendAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    /// <summary>
    /// The next packet, or null when the broker closed the connection (10 s guard). After a DISCONNECT from the
    /// broker the client shuts down its sending side, as a client must, and can only read on.
    /// </summary>
    public async Task<MqttPacket?> ReceiveAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            ReadResult result;
            try
            {
                result = await _reader.ReadAsync(timeout.Token);
            }
            catch (IOException)
            {
                return null;
            }

            var buffer = result.Buffer;
            if (_decoder.TryRead(ref buffer, out var packet))
            {
                _reader.AdvanceTo(buffer.Start);
                if (packet is DisconnectPacket)
                {
                    // A client closes its end once told DISCONNECT (5.0 section 4.13); the broker lingers until it does.
                    _tcp.Client.Shutdown(SocketShutdown.Send);
                }

                return packet;
            }

            _reader.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return null;
            }
        }
    }

    /// <summary>Reads until the broker closes the socket; returns the packets seen on the way.</summary>
    public async Task<List<MqttPacket>> ReceiveUntilClosedAsync()
    {
        var packets = new List<MqttPacket>();
        while (await ReceiveAsync() is { } packet)
        {
            packets.Add(packet);
        }

        return packets;
    }

    public ValueTask DisposeAsync()
    {
        _reader.Complete();
        _tcp.Dispose();
        return ValueTask.CompletedTask;
    }
}
