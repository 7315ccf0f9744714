using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Taihu.Bench.Client;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Bench.Tests;

/// <summary>The generator's client against a minimal peer on loopback that acknowledges what it receives.</summary>
public sealed class BenchClientTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task UnflushedPublishes_BeyondTheInflightWindow_AreSentBeforeWaitingForASlot()
    {
        // Regression: with a window of 2, a third unflushed publish waited for an acknowledgement of publishes
        // that were still in the client's buffer, so the peer never saw them and the run hung.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var peer = RunAcknowledgingPeerAsync(listener);

        var target = new BrokerTarget("127.0.0.1", port, ProtocolVersion.V500);
        await using var client = await BenchClient.OpenAsync(target, maxInflight: 2, CancellationToken.None);
        Assert.Equal(ReasonCode.Success, await client.ConnectAsync("bench-test", target, 0, true, CancellationToken.None).WaitAsync(Guard));
        var topic = "bench/t"u8.ToArray();
        for (var i = 0; i < 10; i++)
        {
            await client.PublishAsync(topic, 32, QoS.AtLeastOnce, 0, i, flush: false, CancellationToken.None).AsTask().WaitAsync(Guard);
        }

        await client.FlushAsync(CancellationToken.None).AsTask().WaitAsync(Guard);
        var acknowledged = await peer.WaitAsync(Guard);
        Assert.Equal(10, acknowledged);
    }

    [Theory]
    [InlineData(ClientKind.Taihu)]
    [InlineData(ClientKind.MqttNet)]
    public async Task EitherClient_ReadsTheTimingHeader_AndHasItsQoS1PublishesAcknowledged(ClientKind kind)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var peer = RunAcknowledgingPeerAsync(listener, sendAfterConnect: (PublisherId: 7, Sequence: 42));

        var target = new BrokerTarget("127.0.0.1", port, ProtocolVersion.V500);
        await using var client = await BenchClients.OpenAsync(kind, target, maxInflight: 2, CancellationToken.None);
        var received = new TaskCompletionSource<(int PublisherId, long Sequence)>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.OnMessage = (_, publisherId, sequence) => received.TrySetResult((publisherId, sequence));
        Assert.Equal(ReasonCode.Success, await client.ConnectAsync("bench-" + kind, target, 0, true, CancellationToken.None).WaitAsync(Guard));
        Assert.Equal((7, 42L), await received.Task.WaitAsync(Guard));

        var topic = "bench/t"u8.ToArray();
        for (var i = 0; i < 10; i++)
        {
            await client.PublishAsync(topic, 32, QoS.AtLeastOnce, 0, i, flush: false, CancellationToken.None).AsTask().WaitAsync(Guard);
        }

        await client.FlushAsync(CancellationToken.None).AsTask().WaitAsync(Guard);
        Assert.Equal(10, await peer.WaitAsync(Guard));
    }

    [Fact]
    public async Task AClientWithSmallBuffers_ReceivesAMessageManyBuffersLong_Whole_AndHasItsPublishesAcknowledged()
    {
        // A fleet's devices read into 4 KB buffers: a message longer than that arrives in pieces.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var big = new byte[20_000];
        for (var i = 0; i < big.Length; i++)
        {
            big[i] = (byte)(i * 7);
        }

        var peer = RunAcknowledgingPeerAsync(listener, largeAfterConnect: big);
        var target = new BrokerTarget("127.0.0.1", port, ProtocolVersion.V500);
        await using var client = await BenchClient.OpenAsync(target, maxInflight: 2, CancellationToken.None, bufferSize: BenchClient.SmallBuffers);
        var received = new TaskCompletionSource<(string Topic, byte[] Payload)>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.OnPublish = (topic, payload) => received.TrySetResult((System.Text.Encoding.UTF8.GetString(topic), payload.ToArray()));
        Assert.Equal(ReasonCode.Success, await client.ConnectAsync("bench-small", target, 0, true, CancellationToken.None).WaitAsync(Guard));
        var (receivedTopic, receivedPayload) = await received.Task.WaitAsync(Guard);
        Assert.Equal("bench/large", receivedTopic);
        Assert.Equal(big, receivedPayload);

        var topic = "bench/t"u8.ToArray();
        for (var i = 0; i < 10; i++)
        {
            await client.PublishAsync(topic, 32, QoS.AtLeastOnce, 0, i, flush: false, CancellationToken.None).AsTask().WaitAsync(Guard);
        }

        await client.FlushAsync(CancellationToken.None).AsTask().WaitAsync(Guard);
        // Ten publishes through a window of two: every acknowledgement freed its packet identifier.
        Assert.Equal(10, await peer.WaitAsync(Guard));
    }

    /// <summary>
    /// Accepts one client, answers CONNECT (then sends a QoS 0 message with a timing header, if asked), and
    /// acknowledges ten QoS 1 publishes; returns how many.
    /// </summary>
    private static async Task<int> RunAcknowledgingPeerAsync(TcpListener listener, (int PublisherId, long Sequence)? sendAfterConnect = null, byte[]? largeAfterConnect = null)
    {
        using var socket = await listener.AcceptSocketAsync();
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var reader = PipeReader.Create(stream);
        var parser = new PacketReader { Version = ProtocolVersion.V500 };
        var output = new ArrayBufferWriter<byte>();
        var acknowledged = 0;
        while (acknowledged < 10)
        {
            var result = await reader.ReadAsync();
            var buffer = result.Buffer;
            while (parser.TryRead(ref buffer, out var packet))
            {
                MqttPacket? reply = packet switch
                {
                    ConnectPacket => new ConnAckPacket { ReasonCode = ReasonCode.Success },
                    PublishPacket publish => new PublishAckPacket(PacketType.PubAck, publish.PacketId, ReasonCode.Success),
                    _ => null,
                };
                if (reply is PublishAckPacket)
                {
                    acknowledged++;
                }

                if (reply is not null)
                {
                    output.Clear();
                    PacketWriter.Write(output, reply, ProtocolVersion.V500);
                    if (reply is ConnAckPacket && sendAfterConnect is { } header)
                    {
                        var payload = new byte[BenchClient.HeaderSize];
                        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(payload, System.Diagnostics.Stopwatch.GetTimestamp());
                        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(8), header.PublisherId);
                        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(12), header.Sequence);
                        PacketWriter.Write(output, new PublishPacket { Topic = "bench/in", Payload = payload }, ProtocolVersion.V500);
                    }

                    if (reply is ConnAckPacket && largeAfterConnect is { } large)
                    {
                        PacketWriter.Write(output, new PublishPacket { Topic = "bench/large", Payload = large }, ProtocolVersion.V500);
                    }

                    await stream.WriteAsync(output.WrittenMemory);
                }
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        return acknowledged;
    }
}
