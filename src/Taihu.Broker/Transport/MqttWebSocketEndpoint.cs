using System.IO.Pipelines;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;

namespace Taihu.Broker.Transport;

/// <summary>
/// MQTT over WebSocket (5.0 section 6): binary messages, subprotocol "mqtt" (or "mqttv3.1"), fed to the same
/// connection logic as TCP through a stream-backed pipe.
/// </summary>
public static class MqttWebSocketEndpoint
{
    private static readonly string[] s_subProtocols = ["mqtt", "mqttv3.1"];

    public static async Task HandleAsync(HttpContext context, MqttBroker broker)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(broker);
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await Results.Problem(detail: "This endpoint speaks MQTT over WebSocket; connect with a WebSocket client and subprotocol 'mqtt'.", statusCode: StatusCodes.Status400BadRequest, title: "WebSocket upgrade required").ExecuteAsync(context);
            return;
        }

        string? chosen = null;
        foreach (var requested in context.WebSockets.WebSocketRequestedProtocols)
        {
            if (Array.IndexOf(s_subProtocols, requested) >= 0)
            {
                chosen = requested;
                break;
            }
        }

        if (chosen is null && context.WebSockets.WebSocketRequestedProtocols.Count > 0)
        {
            await Results.Problem(detail: "Supported subprotocols are 'mqtt' and 'mqttv3.1'.", statusCode: StatusCodes.Status400BadRequest, title: "Unsupported WebSocket subprotocol").ExecuteAsync(context);
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync(chosen);
        await using var stream = WebSocketStream.Create(socket, WebSocketMessageType.Binary, ownsWebSocket: false);
        var pipe = new StreamDuplexPipe(stream);
        var certificate = await context.Connection.GetClientCertificateAsync();
        await MqttConnectionRunner.RunAsync(broker, pipe, new System.Net.IPEndPoint(context.Connection.RemoteIpAddress ?? System.Net.IPAddress.None, context.Connection.RemotePort), certificate, context.RequestAborted);
        if (socket.State == WebSocketState.Open)
        {
            try
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
            }
            catch (WebSocketException)
            {
                // The peer is already gone.
            }
        }
    }

    private sealed class StreamDuplexPipe : IDuplexPipe
    {
        public StreamDuplexPipe(Stream stream)
        {
            Input = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
            Output = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        }

        public PipeReader Input { get; }
        public PipeWriter Output { get; }
    }
}
