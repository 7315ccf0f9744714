using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Taihu.Protocols.Hj212;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// A test HJ 212 station: a raw TCP client that writes frames (built with the standard's CRC, or given byte for
/// byte) and reads the server's frames. Every read has a wall-clock guard that only turns a hang into a failure.
/// </summary>
public sealed class Hj212Station : IAsyncDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly byte[] _buffer = new byte[16 * 1024];
    private int _buffered;
    private long _qn;

    private Hj212Station(TcpClient client, string mn, string pw)
    {
        _client = client;
        _stream = client.GetStream();
        Mn = mn;
        Pw = pw;
        _qn = long.Parse(DateTimeOffset.UtcNow.ToOffset(TimeSpan.FromHours(8)).ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }

    public string Mn { get; }

    public string Pw { get; }

    /// <summary>The CRC the station computes (some stations send Modbus CRC).</summary>
    public Hj212CrcKind Crc { get; init; } = Hj212CrcKind.Standard;

    public static async Task<Hj212Station> ConnectAsync(ServerProcess server, string mn, string pw, Hj212CrcKind crc = Hj212CrcKind.Standard)
    {
        var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync("127.0.0.1", server.Hj212Port);
        return new Hj212Station(client, mn, pw) { Crc = crc };
    }

    /// <summary>A new request number (the station's clock to the millisecond, unique per station).</summary>
    public string NextQn() => (++_qn).ToString(CultureInfo.InvariantCulture);

    /// <summary>A data segment of this station: <c>QN;ST;CN;PW;MN;Flag;CP=&amp;&amp;cp&amp;&amp;</c>.</summary>
    public string Segment(string cn, string cp, int flag = 5, string? qn = null, string st = "22") =>
        $"QN={qn ?? NextQn()};ST={st};CN={cn};PW={Pw};MN={Mn};Flag={flag};CP=&&{cp}&&";

    /// <summary>The station's local time (UTC+8) <paramref name="ago"/> before now, as <c>DataTime</c>, and its Unix milliseconds.</summary>
    public static (string Text, long Ms) DataTime(TimeSpan ago)
    {
        var at = DateTimeOffset.UtcNow - ago;
        at = new DateTimeOffset(at.Year, at.Month, at.Day, at.Hour, at.Minute, at.Second, TimeSpan.Zero).ToOffset(TimeSpan.FromHours(8));
        return (at.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture), at.ToUnixTimeMilliseconds());
    }

    /// <summary>Frames and sends <paramref name="segment"/> with the station's CRC; returns the frame's QN.</summary>
    public async Task SendAsync(string segment) => await SendRawAsync(Hj212Framing.Encode(segment, Crc));

    public async Task SendRawAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    /// <summary>Sends an upload asking for an answer and returns the server's answer (9014 for data).</summary>
    public async Task<Hj212Message> UploadAsync(string cn, string cp, string? qn = null)
    {
        qn ??= NextQn();
        await SendAsync(Segment(cn, cp, 5, qn));
        var answer = await ReadAsync();
        Assert.Equal(qn, answer.Qn);
        return answer;
    }

    /// <summary>Reads the server's next frame (checked with the station's CRC kind).</summary>
    public async Task<Hj212Message> ReadAsync()
    {
        using var guard = new CancellationTokenSource(Guard);
        while (true)
        {
            var status = Hj212Framing.TryRead(_buffer.AsSpan(0, _buffered), Hj212Framing.MaxDataLength, Crc, out var segment, out var consumed, out var error);
            if (status == Hj212ReadStatus.Frame)
            {
                var text = Encoding.ASCII.GetString(_buffer.AsSpan(segment));
                Buffer.BlockCopy(_buffer, consumed, _buffer, 0, _buffered - consumed);
                _buffered -= consumed;
                Assert.True(Hj212Message.TryParse(text, out var message, out var problem), problem);
                return message!;
            }

            Assert.True(status == Hj212ReadStatus.NeedMore, $"The server sent a frame that is not valid: {error}");
            var read = await _stream.ReadAsync(_buffer.AsMemory(_buffered), guard.Token);
            Assert.True(read > 0, "The server closed the connection instead of answering.");
            _buffered += read;
        }
    }

    /// <summary>Waits until the server closes the connection (end of stream or reset), failing if it sends a frame first.</summary>
    public async Task ExpectClosedAsync()
    {
        using var guard = new CancellationTokenSource(Guard);
        try
        {
            var read = await _stream.ReadAsync(_buffer.AsMemory(_buffered), guard.Token);
            Assert.True(read == 0, $"The server sent {Encoding.ASCII.GetString(_buffer, _buffered, read)} instead of closing the connection.");
        }
        catch (IOException)
        {
            // Reset: closed too.
        }
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>The HJ 212 listener's counters in <c>/metrics</c>, by reason.</summary>
public static class Hj212Metrics
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    /// <summary><c>taihu_protocol_rejected_total{protocol="hj212",reason=...}</c> (0 when absent).</summary>
    public static async Task<double> RejectedAsync(ServerProcess server, string reason)
    {
        using var http = new HttpClient { BaseAddress = server.HttpBaseAddress };
        var text = await http.GetStringAsync("/metrics");
        double sum = 0;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("taihu_protocol_rejected_total{", StringComparison.Ordinal) && line.Contains("protocol=\"hj212\"", StringComparison.Ordinal)
                && line.Contains($"reason=\"{reason}\"", StringComparison.Ordinal))
            {
                sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    /// <summary>Reads the counter again and again (each read a round trip, no sleeping) until it reaches <paramref name="atLeast"/>.</summary>
    public static async Task WaitForRejectedAsync(ServerProcess server, string reason, double atLeast)
    {
        var deadline = DateTime.UtcNow + Guard;
        while (true)
        {
            var value = await RejectedAsync(server, reason);
            if (value >= atLeast)
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"hj212 rejections for {reason} stayed at {value}, below {atLeast}.");
        }
    }
}
