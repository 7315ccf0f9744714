using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// A client of the live WebSocket API (<c>/api/ws</c>, <c>/api/ws/plugins/telemetry</c>) on
/// <see cref="ClientWebSocket"/>, as a dashboard's script would be. Every wait is for a real frame, with a
/// wall-clock guard that only turns a hang into a failure.
/// </summary>
public sealed class LiveClient : IAsyncDisposable
{
    public static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private readonly ClientWebSocket _ws = new();

    private LiveClient()
    {
    }

    public WebSocketState State => _ws.State;

    public WebSocketCloseStatus? CloseStatus => _ws.CloseStatus;

    public string? CloseStatusDescription => _ws.CloseStatusDescription;

    /// <summary>Connects to <paramref name="pathAndQuery"/> (e.g. <c>/api/ws</c>).</summary>
    public static async Task<LiveClient> OpenAsync(ServerProcess server, string pathAndQuery)
    {
        var client = new LiveClient();
        await client._ws.ConnectAsync(new Uri($"ws://127.0.0.1:{server.HttpPort}{pathAndQuery}"), CancellationToken.None).WaitAsync(Guard);
        return client;
    }

    /// <summary>Connects to <c>/api/ws</c> and sends the first frame: authCmd with <paramref name="token"/>, and <paramref name="cmds"/>.</summary>
    public static async Task<LiveClient> ConnectAsync(ServerProcess server, string token, params object[] cmds)
    {
        var client = await OpenAsync(server, "/api/ws");
        await client.SendAsync(new { authCmd = new { cmdId = 0, token }, cmds });
        return client;
    }

    public Task SendAsync(object frame) => SendTextAsync(System.Text.Json.JsonSerializer.Serialize(frame));

    public async Task SendTextAsync(string text) =>
        await _ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None).WaitAsync(Guard);

    /// <summary>The next frame, parsed; fails when the socket closes instead.</summary>
    public async Task<JsonObject> NextAsync()
    {
        var text = await NextTextAsync();
        Assert.True(text is not null, $"The socket closed instead of sending a frame: {_ws.CloseStatus} {_ws.CloseStatusDescription}");
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>The next frame of subscription <paramref name="subscriptionId"/>, skipping frames of others.</summary>
    public async Task<JsonObject> NextOfAsync(int subscriptionId)
    {
        while (true)
        {
            var frame = await NextAsync();
            if (frame["subscriptionId"]!.GetValue<int>() == subscriptionId)
            {
                return frame;
            }
        }
    }

    /// <summary>The next text frame, or null when the server closed the socket (its close frame answered).</summary>
    public async Task<string?> NextTextAsync()
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        while (true)
        {
            var result = await _ws.ReceiveAsync(buffer, CancellationToken.None).WaitAsync(Guard);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                // Answer the close as a browser does, so that the server's side of the handshake completes.
                if (_ws.State == WebSocketState.CloseReceived)
                {
                    await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).WaitAsync(Guard);
                }

                return null;
            }

            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return Encoding.UTF8.GetString(message.ToArray());
            }
        }
    }

    /// <summary>Reads (and drops) frames until the server's close frame; returns its status and reason.</summary>
    public async Task<(WebSocketCloseStatus? Status, string? Reason)> ReadToCloseAsync()
    {
        while (await NextTextAsync() is not null)
        {
        }

        return (_ws.CloseStatus, _ws.CloseStatusDescription);
    }

    public async ValueTask DisposeAsync()
    {
        if (_ws.State == WebSocketState.Open)
        {
            try
            {
                await _ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).WaitAsync(Guard);
            }
            catch (Exception e) when (e is WebSocketException or TimeoutException)
            {
                // Closing is courtesy; a server that went away already is fine.
            }
        }

        _ws.Dispose();
    }
}
