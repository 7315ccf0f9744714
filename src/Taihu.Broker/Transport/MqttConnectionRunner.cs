using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Transport;

/// <summary>
/// Runs one MQTT connection over a duplex pipe, whatever carries it (TCP, TLS, WebSocket): a receive loop that
/// decodes frames and feeds the channel, and a send loop that drains the channel's outbound queue and flushes
/// once per batch rather than once per packet.
/// </summary>
public static partial class MqttConnectionRunner
{
    /// <param name="connectionClosed">Fires when the transport is gone.</param>
    /// <param name="closeRequested">Fires when the server asks the connection to end (shutdown): 5.0 clients are told 0x8B.</param>
    public static async Task RunAsync(MqttBroker broker, IDuplexPipe transport, EndPoint? remoteEndPoint, X509Certificate2? clientCertificate, CancellationToken connectionClosed, CancellationToken closeRequested = default)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(transport);
        using var channel = new MqttChannel(broker, remoteEndPoint, clientCertificate);
        if (!channel.Accepted)
        {
            LogTooManyConnections(broker.Logger, remoteEndPoint, broker.Options.MaximumConnections);
            channel.OnTransportClosed();
            return;
        }

        using var registration = connectionClosed.Register(static state => ((MqttChannel)state!).Close(ReasonCode.Success, null, publishWill: true, sendDisconnect: false), channel);
        using var shutdown = closeRequested.Register(static state => ((MqttChannel)state!).Close(ReasonCode.ServerShuttingDown, "The server is shutting down.", publishWill: false), channel);
        var sending = SendLoopAsync(broker, channel, transport.Output);
        try
        {
            await ReceiveLoopAsync(broker, channel, transport.Input);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or System.Net.Sockets.SocketException or Microsoft.AspNetCore.Connections.ConnectionResetException)
        {
            // The peer went away; the will and session rules below apply.
            channel.Close(ReasonCode.Success, null, publishWill: true, sendDisconnect: false);
        }
        finally
        {
            channel.Close(ReasonCode.Success, null, publishWill: true, sendDisconnect: false);
            channel.DetachFromSession();
            await sending;
            channel.OnTransportClosed();
            await transport.Input.CompleteAsync();
        }
    }

    private static async Task ReceiveLoopAsync(MqttBroker broker, MqttChannel channel, PipeReader input)
    {
        var reader = channel.Reader;
        var closing = channel.Closing;
        while (!closing.IsCancellationRequested)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(closing);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            var buffer = result.Buffer;
            var start = buffer.Length;
            var keepReading = true;
            try
            {
                while (keepReading && reader.TryRead(ref buffer, channel.ReusablePublish, out var packet))
                {
                    var handled = channel.HandleAsync(packet, closing);
                    keepReading = handled.IsCompletedSuccessfully ? handled.Result : await handled;
                }
            }
            catch (MqttProtocolException ex)
            {
                channel.OnProtocolError(ex);
                keepReading = false;
            }

            broker.Metrics.Received(start - buffer.Length);
            input.AdvanceTo(buffer.Start, buffer.End);
            if (!keepReading || result.IsCompleted || result.IsCanceled)
            {
                return;
            }
        }
    }

    private static async Task SendLoopAsync(MqttBroker broker, MqttChannel channel, PipeWriter output)
    {
        var outbound = channel.Outbound;
        try
        {
            while (await outbound.WaitToReadAsync())
            {
                long bytes = 0;
                var packets = 0;
                var publishes = 0;
                while (outbound.TryRead(out var item))
                {
                    var written = channel.WriteOutbound(item, output);
                    if (written > 0)
                    {
                        bytes += written;
                        packets++;
                        if (item.Message is not null)
                        {
                            publishes++;
                        }
                    }
                }

                broker.Metrics.Sent(bytes);
                broker.Metrics.PacketsSent(packets, publishes);
                var flush = await output.FlushAsync();
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or System.Net.Sockets.SocketException or Microsoft.AspNetCore.Connections.ConnectionResetException)
        {
            channel.Close(ReasonCode.Success, null, publishWill: true, sendDisconnect: false);
        }
        finally
        {
            while (outbound.TryRead(out var left))
            {
                left.Message?.Release();
            }

            await output.CompleteAsync();
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "Connection from {RemoteEndPoint} refused: the limit of {Limit} connections is reached")]
    private static partial void LogTooManyConnections(ILogger logger, EndPoint? remoteEndPoint, int limit);
}
