using System.Net.Http.Headers;
using System.Text;
using MQTTnet;
using MQTTnet.Protocol;

namespace Taihu.Sim.Running;

/// <summary>One simulated device's connection to the server.</summary>
public interface ISimDevice : IAsyncDisposable
{
    Task ConnectAsync(CancellationToken cancellationToken);

    /// <summary>Sends a telemetry payload; true once the server acknowledged it (PUBACK at QoS 1, HTTP 200), false when it refused or the connection failed.</summary>
    Task<bool> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken);

    /// <summary>Sends client attributes (<c>{"k":v}</c>), acknowledged as telemetry is.</summary>
    Task<bool> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken);
}

/// <summary>A device on MQTT through the MQTTnet client (a client Taihu did not write), ThingsBoard's device topics, QoS 1.</summary>
public sealed class MqttSimDevice(string host, int port, string clientId, string token) : ISimDevice
{
    private static readonly MqttClientFactory Factory = new();
    private readonly IMqttClient _client = Factory.CreateMqttClient();

    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(host, port)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V311)
            .WithClientId(clientId)
            .WithCredentials(token, (string?)null)
            .WithCleanSession(true)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(60))
            .WithTimeout(TimeSpan.FromSeconds(30))
            .Build();
        var result = await _client.ConnectAsync(options, cancellationToken);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"The server refused device {clientId}: CONNACK {result.ResultCode}.");
        }
    }

    public Task<bool> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => PublishAsync("v1/devices/me/telemetry", payload, cancellationToken);

    public Task<bool> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => PublishAsync("v1/devices/me/attributes", payload, cancellationToken);

    private async Task<bool> PublishAsync(string topic, byte[] payload, CancellationToken cancellationToken)
    {
        if (!_client.IsConnected)
        {
            return false;
        }

        try
        {
            var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build();
            var result = await _client.PublishAsync(message, cancellationToken);
            return result.IsSuccess;
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_client.IsConnected)
            {
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().Build());
            }
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
        {
            // Already gone: nothing to close.
        }

        _client.Dispose();
    }
}

/// <summary>A device on ThingsBoard's HTTP device API (<c>POST /api/v1/{token}/telemetry</c>).</summary>
public sealed class HttpSimDevice(HttpClient http, string token) : ISimDevice
{
    public Task ConnectAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<bool> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => PostAsync("telemetry", payload, cancellationToken);

    public Task<bool> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => PostAsync("attributes", payload, cancellationToken);

    private async Task<bool> PostAsync(string what, byte[] payload, CancellationToken cancellationToken)
    {
        using var content = new ByteArrayContent(payload);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        try
        {
            using var response = await http.PostAsync($"/api/v1/{Uri.EscapeDataString(token)}/{what}", content, cancellationToken);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

internal static class Utf8
{
    public static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);
}
