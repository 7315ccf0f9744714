using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>One MQTT control packet as it came off the wire: the first byte and the bytes after the remaining length.</summary>
public sealed record RawPacket(byte Header, byte[] Body)
{
    public int Type => Header >> 4;
}

/// <summary>
/// A bare TCP socket that writes hand-built MQTT bytes and reads packets without any MQTT library, so the
/// functional tests check what the server puts on the wire, independent of our own codec. It never pings.
/// </summary>
public sealed class RawMqttClient : IAsyncDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(10);
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    private RawMqttClient(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    /// <summary>Connects as an MQTT 5.0 client with Clean Start and returns it with the CONNACK.</summary>
    public static async Task<(RawMqttClient Client, RawPacket ConnAck)> ConnectV5Async(int port, string clientId)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", port).WaitAsync(Guard);
        var client = new RawMqttClient(tcp);
        var id = Encoding.UTF8.GetBytes(clientId);
        var variableHeader = new byte[]
        {
            0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T',
            0x05, // protocol level 5
            0x02, // Clean Start
            0x00, 0x3C, // keep alive 60 s: longer than any test, and this client never pings
            0x00, // no properties
        };
        await client.SendAsync(0x10, [.. variableHeader, (byte)(id.Length >> 8), (byte)id.Length, .. id]);
        var connAck = await client.ReceiveAsync() ?? throw new InvalidOperationException("The server closed the connection instead of sending CONNACK.");
        Assert.Equal(2, connAck.Type);
        Assert.Equal(0x00, connAck.Body[1]); // Success
        return (client, connAck);
    }

    /// <summary>
    /// Connects with a user name and password (either may be null) as MQTT 3.1.1 (<paramref name="level"/> 4) or
    /// 5.0 (5), and returns the client with the CONNACK, whatever it says (byte 1 of its body is the code).
    /// <paramref name="localAddress"/> connects from another loopback address (its own allowance of failures).
    /// </summary>
    public static Task<(RawMqttClient Client, RawPacket ConnAck)> ConnectWithCredentialsAsync(int port, string clientId, byte level, string? userName, string? password, IPAddress? localAddress = null) =>
        ConnectAsync(port, clientId, level, userName, password, null, localAddress);

    /// <summary>
    /// Connects as MQTT 3.1.1 (<paramref name="level"/> 4) or 5.0 (5) with a user name (or none) and a will
    /// (QoS 0, no will properties), and returns the client with the CONNACK, whatever it says (byte 1 of its body
    /// is the code). Disposing the client drops the socket, which publishes the will.
    /// </summary>
    public static Task<(RawMqttClient Client, RawPacket ConnAck)> ConnectWithWillAsync(int port, string clientId, byte level, string? userName, string willTopic, string willPayload, bool willRetain = false) =>
        ConnectAsync(port, clientId, level, userName, null, (willTopic, willPayload, willRetain), null);

    private static async Task<(RawMqttClient Client, RawPacket ConnAck)> ConnectAsync(
        int port, string clientId, byte level, string? userName, string? password, (string Topic, string Payload, bool Retain)? will, IPAddress? localAddress)
    {
        var tcp = localAddress is null ? new TcpClient() : new TcpClient(new IPEndPoint(localAddress, 0));
        tcp.NoDelay = true;
        await tcp.ConnectAsync("127.0.0.1", port).WaitAsync(Guard);
        var client = new RawMqttClient(tcp);
        var flags = (byte)(0x02 | (userName is null ? 0 : 0x80) | (password is null ? 0 : 0x40)
            | (will is null ? 0 : 0x04) | (will is { Retain: true } ? 0x20 : 0));
        var body = new List<byte> { 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', level, flags, 0x00, 0x3C };
        if (level == 5)
        {
            body.Add(0x00); // no properties
        }

        void AddString(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            body.Add((byte)(bytes.Length >> 8));
            body.Add((byte)bytes.Length);
            body.AddRange(bytes);
        }

        AddString(clientId);
        if (will is { } w)
        {
            if (level == 5)
            {
                body.Add(0x00); // no will properties
            }

            AddString(w.Topic);
            AddString(w.Payload);
        }

        if (userName is not null)
        {
            AddString(userName);
        }

        if (password is not null)
        {
            AddString(password);
        }

        await client.SendAsync(0x10, [.. body]);
        var connAck = await client.ReceiveAsync() ?? throw new InvalidOperationException("The server closed the connection instead of sending CONNACK.");
        Assert.Equal(2, connAck.Type);
        return (client, connAck);
    }

    /// <summary>Sends a QoS 0 PUBLISH (5.0, no properties) with <paramref name="payload"/>.</summary>
    public Task PublishV5Async(string topic, byte[] payload)
    {
        var name = Encoding.UTF8.GetBytes(topic);
        return SendAsync(0x30, [(byte)(name.Length >> 8), (byte)name.Length, .. name, 0x00, .. payload]);
    }

    /// <summary>Writes one packet: <paramref name="header"/>, the remaining length, <paramref name="body"/>.</summary>
    public async Task SendAsync(byte header, byte[] body)
    {
        var packet = new List<byte>(body.Length + 5) { header };
        var length = body.Length;
        do
        {
            var digit = (byte)(length % 128);
            length /= 128;
            packet.Add(length > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (length > 0);
        packet.AddRange(body);
        await _stream.WriteAsync(packet.ToArray()).AsTask().WaitAsync(Guard);
    }

    /// <summary>The next packet, or null once the server has closed the connection.</summary>
    public async Task<RawPacket?> ReceiveAsync()
    {
        var header = await ReadByteAsync();
        if (header < 0)
        {
            return null;
        }

        var length = 0;
        for (var multiplier = 1; ; multiplier *= 128)
        {
            var digit = await ReadByteAsync();
            if (digit < 0)
            {
                throw new EndOfStreamException("The connection closed inside a fixed header.");
            }

            length += (digit & 0x7F) * multiplier;
            if ((digit & 0x80) == 0)
            {
                break;
            }
        }

        var body = new byte[length];
        await _stream.ReadExactlyAsync(body).AsTask().WaitAsync(Guard);
        return new RawPacket((byte)header, body);
    }

    /// <summary>Reads packets until the server closes the connection.</summary>
    public async Task<List<RawPacket>> ReceiveUntilClosedAsync()
    {
        var packets = new List<RawPacket>();
        while (await ReceiveAsync() is { } packet)
        {
            packets.Add(packet);
        }

        return packets;
    }

    public ValueTask DisposeAsync()
    {
        _tcp.Dispose();
        return ValueTask.CompletedTask;
    }

    private async Task<int> ReadByteAsync()
    {
        var one = new byte[1];
        try
        {
            var read = await _stream.ReadAsync(one).AsTask().WaitAsync(Guard);
            return read == 0 ? -1 : one[0];
        }
        catch (IOException)
        {
            // A reset after the server's last packet is a close, too.
            return -1;
        }
    }
}
