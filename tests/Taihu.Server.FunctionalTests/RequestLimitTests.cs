using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Request bodies are bounded before they are read: 4 KiB on the calls anyone may make, 1 MiB on the management
/// API, the ingest limit on device telemetry; a larger body is a 413 with problem details.
/// </summary>
public sealed class RequestLimitTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Theory]
    [InlineData("/api/auth/login")]
    [InlineData("/api/auth/token")]
    [InlineData("/api/noauth/activate")]
    [InlineData("/api/v1/provision")]
    public async Task UnauthenticatedCall_WithABodyOver4KiB_Is413(string path)
    {
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var response = await http.PostAsync(path, new StringContent(JsonPadded(4097), Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task Login_WithA4KiBBody_IsStillRead()
    {
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var body = JsonPadded(4096);
        var response = await http.PostAsync("/api/auth/login", new StringContent(body, Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task Login_AnnouncingA25MBBody_Is413_WithoutTheServerWaitingForIt()
    {
        // Only the headers are sent: a server that meant to read the body would wait for it, not answer.
        var clock = Stopwatch.StartNew();
        var (status, body) = await AnnounceBodyAsync("/api/auth/login", 25 * 1024 * 1024, token: null);
        Assert.Equal(413, status);
        Assert.Equal(413, JsonNode.Parse(body)!["status"]!.GetValue<int>());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task Login_WithAChunkedBodyOver4KiB_Is413()
    {
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        // No Content-Length: the limit must hold while reading, too.
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(JsonPadded(64 * 1024))));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/auth/login") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        var response = await http.SendAsync(request);
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task ManagementCall_WithABodyOver1MiB_Is413_AndASmallerOneIsRead()
    {
        var (status, body) = await AnnounceBodyAsync("/api/device", 1024 * 1024 + 1, fixture.Admin.Token);
        Assert.Equal(413, status);
        Assert.Equal(413, JsonNode.Parse(body)!["status"]!.GetValue<int>());
        var fits = await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device", "{\"name\":\"padded-" + Guid.NewGuid().ToString("N")[..8] + "\",\"label\":\"l\",\"x\":\"" + new string('a', 100_000) + "\"}");
        await PlatformApi.ExpectAsync(fits, HttpStatusCode.OK);
    }

    [Fact]
    public async Task DeviceTelemetry_KeepsTheIngestLimit()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("limits-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        var fits = await http.PostAsync($"/api/v1/{token}/telemetry", new StringContent("{\"s\":\"" + new string('a', 60_000) + "\"}", Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectAsync(fits, HttpStatusCode.OK);
        var large = await http.PostAsync($"/api/v1/{token}/telemetry", new StringContent("{\"s\":\"" + new string('a', 70_000) + "\"}", Encoding.UTF8, "application/json"));
        await PlatformApi.ExpectProblemAsync(large, HttpStatusCode.RequestEntityTooLarge);
    }

    /// <summary>A JSON object of exactly <paramref name="length"/> bytes.</summary>
    private static string JsonPadded(int length)
    {
        const string start = "{\"username\":\"nobody@example.com\",\"password\":\"x\",\"pad\":\"";
        return start + new string('a', length - start.Length - 2) + "\"}";
    }

    /// <summary>Sends a POST's headers announcing <paramref name="contentLength"/> bytes and the first few of them, then reads the answer.</summary>
    private async Task<(int Status, string Body)> AnnounceBodyAsync(string path, long contentLength, string? token)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, fixture.Server.HttpPort);
        var stream = tcp.GetStream();
        var authorization = token is null ? "" : $"X-Authorization: Bearer {token}\r\n";
        var head = $"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{authorization}Content-Length: {contentLength}\r\n\r\n{{\"name\":\"";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        return await ReadResponseAsync(stream).WaitAsync(ServerProcess.Guard);
    }

    private static async Task<(int Status, string Body)> ReadResponseAsync(NetworkStream stream)
    {
        var buffer = new List<byte>();
        var chunk = new byte[4096];
        async Task ReadMoreAsync()
        {
            var read = await stream.ReadAsync(chunk);
            Assert.True(read > 0, "The server closed the connection before the answer was complete.");
            buffer.AddRange(chunk.AsSpan(0, read));
        }

        int headerEnd;
        while ((headerEnd = IndexOf(buffer, "\r\n\r\n"u8)) < 0)
        {
            await ReadMoreAsync();
        }

        var head = Encoding.ASCII.GetString(buffer.GetRange(0, headerEnd).ToArray());
        var status = int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var lines = head.Split("\r\n");
        if (lines.Any(l => l.StartsWith("Transfer-Encoding:", StringComparison.OrdinalIgnoreCase) && l.Contains("chunked", StringComparison.OrdinalIgnoreCase)))
        {
            var body = new List<byte>();
            var position = headerEnd + 4;
            while (true)
            {
                int lineEnd;
                while ((lineEnd = IndexOf(buffer, "\r\n"u8, position)) < 0)
                {
                    await ReadMoreAsync();
                }

                var size = Convert.ToInt32(Encoding.ASCII.GetString(buffer.GetRange(position, lineEnd - position).ToArray()).Split(';')[0], 16);
                while (buffer.Count < lineEnd + 2 + size + 2)
                {
                    await ReadMoreAsync();
                }

                if (size == 0)
                {
                    return (status, Encoding.UTF8.GetString(body.ToArray()));
                }

                body.AddRange(buffer.GetRange(lineEnd + 2, size));
                position = lineEnd + 2 + size + 2;
            }
        }

        var lengthLine = lines.FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        var length = lengthLine is null ? 0 : int.Parse(lengthLine["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        while (buffer.Count < headerEnd + 4 + length)
        {
            await ReadMoreAsync();
        }

        return (status, Encoding.UTF8.GetString(buffer.GetRange(headerEnd + 4, length).ToArray()));
    }

    private static int IndexOf(List<byte> buffer, ReadOnlySpan<byte> value, int from = 0)
    {
        for (var i = from; i + value.Length <= buffer.Count; i++)
        {
            var match = true;
            for (var j = 0; j < value.Length && match; j++)
            {
                match = buffer[i + j] == value[j];
            }

            if (match)
            {
                return i;
            }
        }

        return -1;
    }
}
