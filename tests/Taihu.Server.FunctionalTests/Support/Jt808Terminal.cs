using System.Buffers.Binary;
using System.Net.Sockets;
using Taihu.Protocols.Jt808;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// A JT/T 808 terminal over a raw TCP socket: frames built and read with Taihu's own codec (the header, escapes and
/// check code), bodies laid out here by hand from the standard, so a mistake in the server's body code is not
/// repeated on this side.
/// </summary>
public sealed class Jt808Terminal : IAsyncDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly List<byte> _received = [];
    private ushort _serial;

    private Jt808Terminal(TcpClient client, string phone, bool is2019)
    {
        _client = client;
        _stream = client.GetStream();
        Phone = phone;
        Is2019 = is2019;
    }

    public string Phone { get; }

    public bool Is2019 { get; }

    public static async Task<Jt808Terminal> ConnectAsync(ServerProcess server, string phone, bool is2019 = false)
    {
        var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", server.Jt808Port);
        return new Jt808Terminal(client, phone, is2019);
    }

    /// <summary>A phone number no other test uses: 12 digits, starting 1.</summary>
    public static string NewPhone() => "1" + Random.Shared.NextInt64(10_000_000_000, 99_999_999_999).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The frame of message <paramref name="id"/> with <paramref name="body"/>, as this terminal writes it.</summary>
    public byte[] Frame(ushort id, byte[] body, ushort? serial = null, ushort properties = 0)
    {
        var header = new Jt808Header(id, (ushort)(properties | (Is2019 ? 0x4000 : 0)), Is2019 ? (byte)1 : null, Phone, serial ?? _serial++, null, null);
        return Jt808Framing.Encode([.. header.Encode(body.Length), .. body]);
    }

    /// <summary>Sends a message; returns its serial number.</summary>
    public async Task<ushort> SendAsync(ushort id, byte[] body)
    {
        var serial = _serial;
        await SendRawAsync(Frame(id, body));
        return serial;
    }

    public async Task SendRawAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    /// <summary>The next frame from the server (its header and body); fails when the connection closes first.</summary>
    public async Task<(Jt808Header Header, byte[] Body)> ReadAsync()
    {
        using var timeout = new CancellationTokenSource(Guard);
        var message = new byte[Jt808Framing.MaxUnescapedLength];
        var chunk = new byte[4096];
        while (true)
        {
            var bytes = _received.ToArray();
            var status = Jt808Framing.TryRead(bytes, message, out var length, out var consumed, out var error);
            if (status == Jt808ReadStatus.Frame)
            {
                _received.RemoveRange(0, consumed);
                Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out var headerError), headerError);
                return (header!, message.AsSpan(header!.Length, header.BodyLength).ToArray());
            }

            Assert.True(status == Jt808ReadStatus.NeedMore, $"The server sent a bad frame: {error}");
            var n = await _stream.ReadAsync(chunk, timeout.Token);
            Assert.True(n > 0, "The server closed the connection.");
            _received.AddRange(chunk.AsSpan(0, n));
        }
    }

    /// <summary>The next frame, which must be a general reply 0x8001 to message <paramref name="id"/> with serial <paramref name="serial"/>; returns its result.</summary>
    public async Task<byte> ReadReplyAsync(ushort id, ushort serial)
    {
        var (header, body) = await ReadAsync();
        Assert.Equal(Jt808MessageIds.PlatformReply, header.MessageId);
        Assert.Equal(Is2019, header.Is2019Layout);
        Assert.Equal(5, body.Length);
        Assert.Equal((serial, id), (BinaryPrimitives.ReadUInt16BigEndian(body), BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(2))));
        return body[4];
    }

    /// <summary>Reads until the server closes the connection (true), or fails when it sends a frame or does not close within the guard.</summary>
    public async Task<bool> ClosedAsync()
    {
        using var timeout = new CancellationTokenSource(Guard);
        var chunk = new byte[4096];
        while (true)
        {
            int n;
            try
            {
                n = await _stream.ReadAsync(chunk, timeout.Token);
            }
            catch (IOException)
            {
                return true;
            }

            if (n == 0)
            {
                return true;
            }

            _received.AddRange(chunk.AsSpan(0, n));
            Assert.Fail($"The server sent {Convert.ToHexString([.. _received])} instead of closing.");
        }
    }

    /// <summary>Registers (2013 or 2019 layout) and returns the 0x8100 result and authentication code.</summary>
    public async Task<(byte Result, string? Code)> RegisterAsync(string manufacturerId = "TAIHU", string plate = "苏B12345")
    {
        var serial = await SendAsync(Jt808MessageIds.Registration, RegistrationBody(manufacturerId, "T808-TEST", "ID00001", 2, plate, Is2019));
        var (header, body) = await ReadAsync();
        Assert.Equal(Jt808MessageIds.RegistrationReply, header.MessageId);
        Assert.Equal(serial, BinaryPrimitives.ReadUInt16BigEndian(body));
        return (body[2], body.Length > 3 ? Jt808Text.Gbk.GetString(body, 3, body.Length - 3) : null);
    }

    /// <summary>Authenticates with <paramref name="code"/> and returns the 0x8001 result.</summary>
    public async Task<byte> AuthenticateAsync(string code)
    {
        var serial = await SendAsync(Jt808MessageIds.Authentication, AuthenticationBody(code, Is2019));
        return await ReadReplyAsync(Jt808MessageIds.Authentication, serial);
    }

    public async Task<byte> HeartbeatAsync() => await ReadReplyAsync(Jt808MessageIds.Heartbeat, await SendAsync(Jt808MessageIds.Heartbeat, []));

    public static byte[] RegistrationBody(string manufacturerId, string model, string terminalId, byte color, string plate, bool is2019)
    {
        var (m, t, i) = is2019 ? (11, 30, 30) : (5, 20, 7);
        var body = new List<byte> { 0x00, 0x20, 0x01, 0x40 }; // province 32 (Jiangsu), city 320
        body.AddRange(Fixed(manufacturerId, m));
        body.AddRange(Fixed(model, t));
        body.AddRange(Fixed(terminalId, i));
        body.Add(color);
        body.AddRange(Jt808Text.Gbk.GetBytes(plate));
        return [.. body];

        static byte[] Fixed(string text, int width)
        {
            var bytes = new byte[width];
            Jt808Text.Gbk.GetBytes(text, bytes);
            return bytes;
        }
    }

    public static byte[] AuthenticationBody(string code, bool is2019)
    {
        var text = Jt808Text.Gbk.GetBytes(code);
        if (!is2019)
        {
            return text;
        }

        var body = new byte[1 + text.Length + 15 + 20];
        body[0] = (byte)text.Length;
        text.CopyTo(body, 1);
        "861234567890123"u8.CopyTo(body.AsSpan(1 + text.Length));
        "V1.2.3"u8.CopyTo(body.AsSpan(1 + text.Length + 15));
        return body;
    }

    /// <summary>A location body: the basic fields (time in GMT+8) and any extras (id, value) given.</summary>
    public static byte[] LocationBody(double latitude, double longitude, int speedTenths, DateTimeOffset time, uint alarm = 0, uint status = 0x2, params (byte Id, byte[] Value)[] extras)
    {
        var body = new List<byte>();
        Add32(alarm | 0);
        Add32(status | (latitude < 0 ? 0x4u : 0) | (longitude < 0 ? 0x8u : 0));
        Add32((uint)Math.Round(Math.Abs(latitude) * 1e6));
        Add32((uint)Math.Round(Math.Abs(longitude) * 1e6));
        Add16(12);
        Add16((ushort)speedTenths);
        Add16(90);
        var local = time.ToOffset(TimeSpan.FromHours(8));
        foreach (var part in new[] { local.Year % 100, local.Month, local.Day, local.Hour, local.Minute, local.Second })
        {
            body.Add((byte)(((part / 10) << 4) | (part % 10)));
        }

        foreach (var (id, value) in extras)
        {
            body.Add(id);
            body.Add((byte)value.Length);
            body.AddRange(value);
        }

        return [.. body];

        void Add32(uint v) => body.AddRange([(byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v]);
        void Add16(ushort v) => body.AddRange([(byte)(v >> 8), (byte)v]);
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _client.Dispose();
    }
}
