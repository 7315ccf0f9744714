using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Platform.Devices;

namespace Taihu.Platform.Integrations;

public enum DeliveryOutcome
{
    Delivered,
    Retry,
    Dead,
}

/// <summary>
/// What one attempt came to: delivered, to be retried, or dead (with the HTTP status, 0 when none, and why); a
/// webhook's answer to a client-side RPC request is <see cref="Reply"/>.
/// </summary>
public readonly record struct DeliveryResult(DeliveryOutcome Outcome, int Status, string? Reason, byte[]? Reply = null)
{
    public static DeliveryResult Delivered(int status = 0, byte[]? reply = null) => new(DeliveryOutcome.Delivered, status, null, reply);

    public static DeliveryResult Retry(int status, string reason) => new(DeliveryOutcome.Retry, status, reason);

    public static DeliveryResult Dead(int status, string reason) => new(DeliveryOutcome.Dead, status, reason);
}

/// <summary>Sends one outbox row to an integration's target. Safe to call for several devices at once.</summary>
public interface IIntegrationSender : IAsyncDisposable
{
    Task<DeliveryResult> SendAsync(OutboxRow row, CancellationToken cancellationToken);
}

/// <summary>
/// The HTTP webhook: one event per POST, the body as stored, the configured headers, and
/// <c>X-Taihu-Signature: sha256=&lt;hex HMAC-SHA256 of the body with the secret&gt;</c>. 2xx is delivered; a 4xx
/// other than 408 and 429 will never succeed and is dead at once; anything else (5xx, 408, 429, refused, no answer
/// within the request timeout) is retried. With <c>answerRpc</c>, the body of a 2xx answer to an <c>RPC_REQUEST</c>
/// event (at most <see cref="MaxReplyBytes"/>) is read as the reply to the device.
/// </summary>
public sealed class WebhookSender : IIntegrationSender
{
    /// <summary>The largest RPC reply taken from a webhook; a longer body is no answer (the device gets the server's).</summary>
    public const int MaxReplyBytes = 65_536;

    private const string RpcRequest = "RPC_REQUEST";

    private readonly IntegrationConfiguration _configuration;
    private readonly HttpClient _http;
    private readonly TimeProvider _time;
    private readonly byte[] _secret;
    private readonly Uri _url;

    public WebhookSender(IntegrationConfiguration configuration, TimeProvider time, int maxConnections)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        _configuration = configuration;
        _time = time;
        _secret = Encoding.UTF8.GetBytes(configuration.Secret ?? "");
        _url = new Uri(configuration.Url!);
        _http = new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
            MaxConnectionsPerServer = Math.Max(1, maxConnections),
            AllowAutoRedirect = false,
            UseCookies = false,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary><c>sha256=</c> and the lower-case hex HMAC-SHA256 of <paramref name="body"/>.</summary>
    public static string Signature(byte[] secret, ReadOnlySpan<byte> body) => "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(secret, body));

    public async Task<DeliveryResult> SendAsync(OutboxRow row, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(row);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(_configuration.RequestTimeoutMs), _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        using var request = new HttpRequestMessage(HttpMethod.Post, _url) { Content = new ByteArrayContent(row.Body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (_configuration.Headers is { } headers)
        {
            foreach (var (name, value) in headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }

        request.Headers.TryAddWithoutValidation("X-Taihu-Signature", Signature(_secret, row.Body));
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token);
            var status = (int)response.StatusCode;
            if (status is >= 200 and < 300 && _configuration.AnswerRpc == true && row.EventType == RpcRequest)
            {
                return DeliveryResult.Delivered(status, await ReadReplyAsync(response, linked.Token));
            }

            return status switch
            {
                >= 200 and < 300 => DeliveryResult.Delivered(status),
                >= 400 and < 500 and not 408 and not 429 => DeliveryResult.Dead(status, $"The webhook answered {status} {response.ReasonPhrase}; the event will never be accepted as it is."),
                _ => DeliveryResult.Retry(status, $"The webhook answered {status} {response.ReasonPhrase}."),
            };
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return DeliveryResult.Retry(0, $"The webhook did not answer within {_configuration.RequestTimeoutMs} ms.");
        }
        catch (HttpRequestException e)
        {
            return DeliveryResult.Retry(0, $"The webhook could not be reached: {e.Message}");
        }
    }

    /// <summary>The body, or null when it is empty or longer than <see cref="MaxReplyBytes"/>.</summary>
    private static async Task<byte[]?> ReadReplyAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength is > MaxReplyBytes)
        {
            return null;
        }

        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[MaxReplyBytes + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
        {
            length += read;
        }

        return length is 0 or > MaxReplyBytes ? null : buffer.AsSpan(0, length).ToArray();
    }

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>MQTT republish on Taihu's own broker, in the tenant's namespace (its broker users see it).</summary>
public sealed class OwnBrokerSender(Integration integration, IMqttServerPublisher publisher) : IIntegrationSender
{
    public Task<DeliveryResult> SendAsync(OutboxRow row, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(row);
        var configuration = integration.Configuration;
        if (!TopicTemplate.TryFill(configuration.Topic!, integration.TenantId, row.DeviceId, row.DeviceName, row.DeviceType, row.EventType, out var topic, out var reason))
        {
            return Task.FromResult(DeliveryResult.Dead(0, reason!));
        }

        publisher.Publish(DeviceSession.Namespace(integration.TenantId), new PublishPacket { Topic = topic, Payload = row.Body, QoS = (QoS)configuration.Qos });
        return Task.FromResult(DeliveryResult.Delivered());
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// MQTT republish to an external broker through one MQTTnet client per integration, connected when first needed
/// and again after it drops (a failed connect or publish is retried like a webhook's 5xx).
/// </summary>
public sealed class ExternalBrokerSender(Integration integration) : IIntegrationSender
{
    private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();
    private readonly SemaphoreSlim _connectGate = new(1, 1);

    public async Task<DeliveryResult> SendAsync(OutboxRow row, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(row);
        var configuration = integration.Configuration;
        if (!TopicTemplate.TryFill(configuration.Topic!, integration.TenantId, row.DeviceId, row.DeviceName, row.DeviceType, row.EventType, out var topic, out var reason))
        {
            return DeliveryResult.Dead(0, reason!);
        }

        try
        {
            await ConnectAsync(cancellationToken);
            var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(row.Body)
                .WithQualityOfServiceLevel((MqttQualityOfServiceLevel)configuration.Qos).Build();
            var result = await _client.PublishAsync(message, cancellationToken);
            return result.IsSuccess
                ? DeliveryResult.Delivered()
                : DeliveryResult.Retry(0, $"The broker refused the message: {result.ReasonCode} {result.ReasonString}");
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return DeliveryResult.Retry(0, $"The broker {configuration.Host}:{configuration.Port} could not be reached: {e.Message}");
        }
    }

    private async Task ConnectAsync(CancellationToken cancellationToken)
    {
        if (_client.IsConnected)
        {
            return;
        }

        await _connectGate.WaitAsync(cancellationToken);
        try
        {
            if (_client.IsConnected)
            {
                return;
            }

            var configuration = integration.Configuration;
            var builder = new MqttClientOptionsBuilder()
                .WithTcpServer(configuration.Host, configuration.Port)
                .WithClientId("taihu-" + integration.Id.ToString("N"))
                .WithProtocolVersion(configuration.ProtocolVersion == "3.1.1" ? MqttProtocolVersion.V311 : MqttProtocolVersion.V500)
                .WithCleanSession()
                .WithTimeout(TimeSpan.FromSeconds(10));
            if (configuration.Username is not null)
            {
                builder.WithCredentials(configuration.Username, configuration.Password);
            }

            if (configuration.Tls)
            {
                builder.WithTlsOptions(o => o.UseTls());
            }

            await _client.ConnectAsync(builder.Build(), cancellationToken);
        }
        finally
        {
            _connectGate.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            try
            {
                await _client.DisconnectAsync();
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or InvalidOperationException)
            {
                // Already gone.
            }
        }

        _client.Dispose();
        _connectGate.Dispose();
    }
}
