using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Mqtt;

namespace Taihu.Bench.Client;

/// <summary>
/// The load generator's second client: MQTTnet 5, used as applications use it. Received messages are
/// acknowledged automatically when the handler returns (the handler only records the timing header); QoS 1/2
/// publishes are pipelined up to the inflight window, each awaited for its acknowledgement in the background.
/// Unlike <see cref="BenchClient"/> it allocates per message (a payload array and MQTTnet's own objects) and
/// writes one packet at a time, which is the point: other clients' timing finds what our own hides.
/// </summary>
public sealed class MqttNetBenchClient : IBenchClient
{
    private readonly IMqttClient _client;
    private readonly SemaphoreSlim _inflight;
    private readonly MqttClientOptionsBuilder _builder;
    private long _acknowledged;
    private long _refused;
    private long _failed;

    private MqttNetBenchClient(IMqttClient client, MqttClientOptionsBuilder builder, int maxInflight)
    {
        _client = client;
        _builder = builder;
        _inflight = new SemaphoreSlim(maxInflight, maxInflight);
        _client.ApplicationMessageReceivedAsync += e =>
        {
            var payload = e.ApplicationMessage.Payload;
            if (payload.Length >= BenchClient.HeaderSize && OnMessage is { } handler)
            {
                Span<byte> header = stackalloc byte[BenchClient.HeaderSize];
                payload.Slice(0, BenchClient.HeaderSize).CopyTo(header);
                handler(BinaryPrimitives.ReadInt64LittleEndian(header), BinaryPrimitives.ReadInt32LittleEndian(header[8..]), BinaryPrimitives.ReadInt64LittleEndian(header[12..]));
            }

            return Task.CompletedTask;
        };
    }

    public MessageHandler? OnMessage { get; set; }

    public long Acknowledged => Volatile.Read(ref _acknowledged);

    public long Refused => Volatile.Read(ref _refused);

    /// <summary>Publishes whose acknowledgement never came (the connection ended or MQTTnet gave up).</summary>
    public long Failed => Volatile.Read(ref _failed);

    internal static MqttNetBenchClient Create(BrokerTarget target, int maxInflight, IPAddress? localAddress)
    {
        ArgumentNullException.ThrowIfNull(target);
        var builder = new MqttClientOptionsBuilder()
            .WithProtocolVersion(target.Version == ProtocolVersion.V500 ? MqttProtocolVersion.V500 : MqttProtocolVersion.V311)
            .WithTimeout(TimeSpan.FromSeconds(30));
        if (target.WebSocketPath is { } path)
        {
            builder = builder.WithWebSocketServer(ws => ws.WithUri($"{(target.Tls ? "wss" : "ws")}://{target.Host}:{target.Port}{path}"));
        }
        else
        {
            builder = builder.WithTcpServer(target.Host, target.Port);
            if (localAddress is not null)
            {
                builder = builder.WithTcpServer(tcp =>
                {
                    tcp.RemoteEndpoint = new DnsEndPoint(target.Host, target.Port);
                    tcp.LocalEndpoint = new IPEndPoint(localAddress, 0);
                    tcp.NoDelay = true;
                });
            }
        }

        if (target.Tls)
        {
            var trusted = target.CaFile is null ? null : X509CertificateLoader.LoadCertificateFromFile(target.CaFile);
            builder = builder.WithTlsOptions(tls => tls
                .UseTls()
                .WithCertificateValidationHandler(context => context.SslPolicyErrors == System.Net.Security.SslPolicyErrors.None
                    || (trusted is not null && context.Certificate is not null && context.Certificate.GetCertHashString() == trusted.GetCertHashString())));
        }

        return new MqttNetBenchClient(new MqttClientFactory().CreateMqttClient(), builder, maxInflight);
    }

    public async Task<ReasonCode> ConnectAsync(string clientId, BrokerTarget target, ushort keepAlive, bool cleanStart, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(target);
        var builder = _builder.WithClientId(clientId).WithCleanSession(cleanStart).WithKeepAlivePeriod(TimeSpan.FromSeconds(keepAlive));
        if (target.UserName is not null)
        {
            builder = builder.WithCredentials(target.UserName, target.Password);
        }

        if (target.Version == ProtocolVersion.V500)
        {
            builder = builder.WithReceiveMaximum(65_535);
        }

        var result = await _client.ConnectAsync(builder.Build(), cancellationToken);
        return (ReasonCode)(byte)result.ResultCode;
    }

    public async Task<ReasonCode> SubscribeAsync(string filter, QoS qos, CancellationToken cancellationToken)
    {
        var result = await _client.SubscribeAsync(
            new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, (MqttQualityOfServiceLevel)(int)qos).Build(), cancellationToken);
        return (ReasonCode)(byte)result.Items.First().ResultCode;
    }

    public async ValueTask PublishAsync(ReadOnlyMemory<byte> topicUtf8, int payloadSize, QoS qos, int publisherId, long sequence, bool flush, CancellationToken cancellationToken)
    {
        var payload = new byte[Math.Max(payloadSize, BenchClient.HeaderSize)];
        BinaryPrimitives.WriteInt64LittleEndian(payload, Stopwatch.GetTimestamp());
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(8), publisherId);
        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(12), sequence);
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(System.Text.Encoding.UTF8.GetString(topicUtf8.Span))
            .WithPayload(payload)
            .WithQualityOfServiceLevel((MqttQualityOfServiceLevel)(int)qos)
            .Build();
        if (qos == QoS.AtMostOnce)
        {
            await _client.PublishAsync(message, cancellationToken);
            return;
        }

        await _inflight.WaitAsync(cancellationToken);
        _ = AcknowledgedAsync(_client.PublishAsync(message, cancellationToken));
    }

    private async Task AcknowledgedAsync(Task<MqttClientPublishResult> publish)
    {
        try
        {
            var result = await publish;
            if (result.IsSuccess)
            {
                Interlocked.Increment(ref _acknowledged);
            }
            else
            {
                Interlocked.Increment(ref _refused);
            }
        }
        catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or InvalidOperationException or MQTTnet.Exceptions.MqttClientNotConnectedException)
        {
            Interlocked.Increment(ref _failed);
        }
        finally
        {
            _inflight.Release();
        }
    }

    /// <summary>MQTTnet writes each packet as it is published; there is nothing to flush.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public async Task DisconnectAsync()
    {
        try
        {
            if (_client.IsConnected)
            {
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().Build(), CancellationToken.None);
            }
        }
        catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or InvalidOperationException)
        {
            // Already gone.
        }

        await DisposeAsync();
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}
