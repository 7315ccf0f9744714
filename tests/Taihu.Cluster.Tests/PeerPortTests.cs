using System.Net;
using System.Net.Sockets;

namespace Taihu.Cluster.Tests;

/// <summary>
/// The proof <see cref="NodeWatch"/> acts on, over real loopback sockets: only a port where nothing listens counts as
/// a node's process gone; a listener that never accepts (a stopped or overloaded process) does not.
/// </summary>
public sealed class PeerPortTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task NothingListening_Refuses()
    {
        // Bind a port, then close it: nothing listens there afterwards.
        IPEndPoint endpoint;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            endpoint = (IPEndPoint)listener.LocalEndpoint;
            listener.Stop();
        }

        Assert.True(await PeerPort.RefusesAsync(endpoint, s_timeout, CancellationToken.None));
    }

    [Fact]
    public async Task ListeningButNeverAccepting_DoesNotRefuse()
    {
        // The kernel completes the handshake into the backlog whether or not the process ever accepts.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start(backlog: 16);
        Assert.False(await PeerPort.RefusesAsync((IPEndPoint)listener.LocalEndpoint, s_timeout, CancellationToken.None));
    }

    [Fact]
    public async Task BacklogFull_DoesNotRefuse()
    {
        // A listener whose backlog is full drops new handshakes on Linux (no reset): the attempt times out, which
        // proves nothing about the process.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start(backlog: 1);
        var endpoint = (IPEndPoint)listener.LocalEndpoint;
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 8; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                held.Add(socket);
                _ = socket.ConnectAsync(endpoint);
            }

            Assert.False(await PeerPort.RefusesAsync(endpoint, TimeSpan.FromMilliseconds(300), CancellationToken.None));
        }
        finally
        {
            foreach (var socket in held)
            {
                socket.Dispose();
            }
        }
    }
}
