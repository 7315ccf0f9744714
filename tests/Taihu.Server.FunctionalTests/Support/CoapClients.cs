using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Taihu.Protocols.Coap;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>A CoAP message as received by the test client, options by number.</summary>
public sealed record CoapReply(CoapType Type, byte Code, ushort MessageId, byte[] Token, List<(ushort Number, byte[] Value)> Options, byte[] Payload)
{
    public string Text => Encoding.UTF8.GetString(Payload);

    public string CodeText => CoapCode.Format(Code);

    public byte[]? Option(ushort number) => Options.FirstOrDefault(o => o.Number == number).Value;

    public uint? UInt(ushort number) => Option(number) is { } value ? CoapParser.ReadUInt(value) : null;

    public static CoapReply Parse(ReadOnlySpan<byte> datagram)
    {
        var options = new CoapOptionRef[64];
        Assert.Equal(CoapParseStatus.Ok, CoapParser.TryParse(datagram, options, out var header));
        var list = new List<(ushort, byte[])>();
        for (var i = 0; i < header.OptionCount; i++)
        {
            list.Add((options[i].Number, datagram.Slice(options[i].Offset, options[i].Length).ToArray()));
        }

        return new CoapReply(header.Type, header.Code, header.MessageId, header.Token(datagram).ToArray(), list, header.Payload(datagram).ToArray());
    }
}

/// <summary>
/// A CoAP client of our own on a UDP socket, built on the codec, for what a command-line client cannot show: the
/// exact messages on the wire, duplicates, observe with replies, and malformed datagrams.
/// </summary>
public sealed class RawCoapClient : IDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private ushort _messageId = (ushort)Random.Shared.Next(65536);
    private byte _token = (byte)Random.Shared.Next(256);

    public RawCoapClient(ServerProcess server)
    {
        _socket.Connect(new IPEndPoint(IPAddress.Loopback, server.CoapPort));
    }

    public ushort NextMessageId() => ++_messageId;

    public byte[] NextToken() => [++_token, 0xC0];

    public void Send(ReadOnlySpan<byte> datagram) => _socket.Send(datagram);

    /// <summary>Builds a request: Uri-Path segments of <paramref name="path"/>, Uri-Query items, extra options, payload.</summary>
    public static byte[] Request(CoapType type, byte code, ushort messageId, byte[] token, string path, string? payload = null,
        IEnumerable<(ushort Number, byte[] Value)>? extra = null)
    {
        var options = new List<(ushort Number, byte[] Value)>(extra ?? []);
        var (pathPart, query) = path.Split('?', 2) is [var p, var q] ? (p, q) : (path, null);
        options.AddRange(pathPart.Trim('/').Split('/').Select(s => (CoapOption.UriPath, Encoding.UTF8.GetBytes(s))));
        if (query is not null)
        {
            options.AddRange(query.Split('&').Select(s => (CoapOption.UriQuery, Encoding.UTF8.GetBytes(s))));
        }

        var buffer = new byte[2048 + (payload?.Length ?? 0) * 4];
        var writer = new CoapWriter(buffer, type, code, messageId, token);
        foreach (var (number, value) in options.OrderBy(o => o.Number))
        {
            writer.Option(number, value);
        }

        writer.Payload(payload is null ? [] : Encoding.UTF8.GetBytes(payload));
        return writer.Written.ToArray();
    }

    public static (ushort, byte[]) UInt(ushort number, uint value)
    {
        var buffer = new byte[16];
        var writer = new CoapWriter(buffer, CoapType.Confirmable, CoapCode.Get, 0, []);
        writer.UIntOption(number, value);
        return (number, CoapReply.Parse(writer.Written).Options[0].Value);
    }

    /// <summary>
    /// Sends a confirmable request and returns its response: piggybacked on the ACK, or, when the server took long
    /// and sent an empty ACK first, the separate confirmable response (acknowledged here, as any client does).
    /// </summary>
    public async Task<CoapReply> RequestAsync(byte code, string path, string? payload = null, IEnumerable<(ushort, byte[])>? extra = null)
    {
        var messageId = NextMessageId();
        var token = NextToken();
        Send(Request(CoapType.Confirmable, code, messageId, token, path, payload, extra));
        var reply = await ReceiveAsync();
        Assert.Equal(messageId, reply.MessageId);
        Assert.Equal(CoapType.Acknowledgement, reply.Type);
        if (reply.Code == CoapCode.Empty)
        {
            reply = await ReceiveAsync();
            Assert.Equal(CoapType.Confirmable, reply.Type);
            Acknowledge(reply);
        }

        Assert.Equal(token, reply.Token);
        return reply;
    }

    public async Task<CoapReply> ReceiveAsync()
    {
        var buffer = new byte[65_536];
        var length = await _socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(Guard);
        return CoapReply.Parse(buffer.AsSpan(0, length));
    }

    /// <summary>Whether a datagram arrives before <paramref name="sentinel"/>'s answer (a CoAP ping answered with RST): the sync point for "nothing came".</summary>
    public async Task<CoapReply?> ReceiveBeforePingAsync()
    {
        var ping = NextMessageId();
        Send([0x40, 0, (byte)(ping >> 8), (byte)ping]);
        var reply = await ReceiveAsync();
        if (reply.Type == CoapType.Reset && reply.MessageId == ping)
        {
            return null;
        }

        Assert.Equal(CoapType.Reset, (await ReceiveAsync()).Type);
        return reply;
    }

    public void Acknowledge(CoapReply confirmable) => Send([0x60, 0, (byte)(confirmable.MessageId >> 8), (byte)confirmable.MessageId]);

    public void Reset(CoapReply confirmable) => Send([0x70, 0, (byte)(confirmable.MessageId >> 8), (byte)confirmable.MessageId]);

    public void Dispose() => _socket.Dispose();
}

/// <summary>Debian's libcoap client, <c>/usr/bin/coap-client-notls</c>.</summary>
public static class LibcoapClient
{
    public const string Program = "/usr/bin/coap-client-notls";
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);

    /// <summary>Runs it to completion; its output is the response payload (and, with -v, diagnostics on stderr).</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> RunAsync(params string[] arguments)
    {
        using var process = Start(arguments);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(Guard);
        }
        catch (TimeoutException)
        {
            process.Kill();
            throw new TimeoutException($"{Program} {string.Join(' ', arguments)} did not finish in {Guard.TotalSeconds} s.");
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    public static Process Start(params string[] arguments)
    {
        var start = new ProcessStartInfo(Program)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return Process.Start(start) ?? throw new InvalidOperationException($"Could not start {Program}.");
    }
}
