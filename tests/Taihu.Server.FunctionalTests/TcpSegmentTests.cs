using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The plain MQTT listener announces a segment size of at most 4 KB (<c>Listeners:TcpMaximumSegmentSize</c>): on
/// loopback the system's is 64 KB, and a client with a small receive buffer (MQTTnet's 8 KB) that fell behind was
/// then sent whole-window segments that it acknowledged only at its delayed-ACK timer (docs/benchmarks.md, issue 10,
/// "Taken again on a quiet machine").
/// </summary>
public sealed class TcpSegmentTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    [Fact]
    public async Task AClientOnLoopback_IsToldSegmentsOfAtMost4096Bytes()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, fixture.Server.TcpPort);

        // TCP_MAXSEG on a connected socket: the segment size it sends with, bounded by what the server announced.
        Span<byte> value = stackalloc byte[sizeof(int)];
        Assert.Equal(sizeof(int), socket.GetRawSocketOption(6, 2, value));
        var segment = BinaryPrimitives.ReadInt32LittleEndian(value);
        Assert.InRange(segment, 536, 4096);
    }
}
