using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>What became of one message a device sent.</summary>
/// <param name="Acknowledged">The server took it (PUBACK success, HTTP 2xx).</param>
/// <param name="Outcome">In words, for the report: "acknowledged", "refused: PUBACK 0x99 PayloadFormatInvalid", "connection closed by the server", "not connected", "HTTP 413".</param>
public readonly record struct SendResult(bool Acknowledged, string Outcome)
{
    /// <summary>What the client said when it failed (the exception's type and message), for the run's log.</summary>
    public string? Detail { get; init; }

    public static SendResult Ok { get; } = new(true, "acknowledged");

    public static SendResult NotConnected { get; } = new(false, "not connected");

    /// <summary>The outcome of a send that failed because the server closed the connection (the report adds its reason when known).</summary>
    public const string ClosedByServerOutcome = "connection closed by the server";

    /// <summary>A send that failed on a connection the server closed.</summary>
    public static SendResult ClosedByServer { get; } = new(false, ClosedByServerOutcome);

    public bool IsClosedByServer => Outcome == ClosedByServerOutcome;
}

/// <summary>One simulated device's connection to the server.</summary>
public interface ISimDevice : IAsyncDisposable
{
    Task ConnectAsync(CancellationToken cancellationToken);

    bool IsConnected { get; }

    Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken);

    Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken);

    /// <summary>Drops the connection (a fault); with <paramref name="reconnect"/> the device comes back by its back-off, else the caller reconnects it.</summary>
    Task DropAsync(bool reconnect);

    /// <summary>Times the device lost its connection without being told to (the server closed it), and times it connected again.</summary>
    int ConnectionsLost { get; }

    int Reconnects { get; }

    /// <summary>Server-side RPC commands answered, and shared-attribute updates applied.</summary>
    int RpcAnswered { get; }

    int AttributeUpdates { get; }
}

/// <summary>
/// A device on MQTT through the MQTTnet client (a client Taihu did not write), ThingsBoard's device topics, QoS 1.
/// It reconnects with back-off after losing its connection, answers server-side RPC after its delay, and applies
/// shared-attribute updates, as the fleet's behaviour says.
/// </summary>
public sealed class MqttSimDevice(string host, int port, string clientId, string token, FleetDefinition fleet, ScenarioScaling scaling, Random random) : ISimDevice
{
    private static readonly MqttClientFactory Factory = new();
    private readonly IMqttClient _client = Factory.CreateMqttClient();
    private readonly CancellationTokenSource _stopping = new();
    private int _reconnecting;
    private int _connectionsLost;
    private int _reconnects;
    private int _rpcAnswered;
    private int _attributeUpdates;
    private int _expectedDisconnects;

    // Completed (and replaced) each time a connection the device wanted is lost, after its reason is recorded.
    private TaskCompletionSource _lost = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Whether the device wants to be connected: false from a fault's drop until it is told to come back.
    private volatile bool _wanted;

    public bool IsConnected => _client.IsConnected;

    public int ConnectionsLost => Volatile.Read(ref _connectionsLost);

    public int Reconnects => Volatile.Read(ref _reconnects);

    public int RpcAnswered => Volatile.Read(ref _rpcAnswered);

    public int AttributeUpdates => Volatile.Read(ref _attributeUpdates);

    /// <summary>The reason the server gave when it last closed the connection (MQTT 5), or null.</summary>
    public string? LastServerDisconnect { get; private set; }

    /// <summary>
    /// Waits until more than <paramref name="lostBefore"/> connections were lost and the last one's reason is in
    /// <see cref="LastServerDisconnect"/>, or <paramref name="limit"/> passes. MQTTnet fails the publishes still
    /// waiting for their PUBACK before it reports the disconnect, so a send that failed does not mean the reason
    /// is known yet. Returns whether the loss was seen.
    /// </summary>
    public async Task<bool> WaitForConnectionLostAsync(int lostBefore, TimeSpan limit, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(limit);
        try
        {
            // The signal is read before the count: a loss counted after the read completes that signal.
            for (var lost = Volatile.Read(ref _lost); ConnectionsLost <= lostBefore; lost = Volatile.Read(ref _lost))
            {
                await lost.Task.WaitAsync(deadline.Token);
            }

            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return ConnectionsLost > lostBefore;
        }
    }

    private MqttClientOptions Options()
    {
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(host, port)
            .WithProtocolVersion(fleet.Mqtt5 ? MQTTnet.Formatter.MqttProtocolVersion.V500 : MQTTnet.Formatter.MqttProtocolVersion.V311)
            .WithClientId(clientId)
            .WithCleanSession(true)
            .WithKeepAlivePeriod(KeepAlive(fleet, scaling))
            .WithTimeout(TimeSpan.FromSeconds(Math.Max(5, 2 * KeepAlive(fleet, scaling).TotalSeconds)));

        // No token: a plain MQTT server's anonymous access.
        return (token.Length == 0 ? options : options.WithCredentials(token, (string?)null)).Build();
    }

    /// <summary>The fleet's keep alive in real time: whole seconds, at least one (MQTT's unit).</summary>
    internal static TimeSpan KeepAlive(FleetDefinition fleet, ScenarioScaling scaling) =>
        TimeSpan.FromSeconds(Math.Max(1, Math.Ceiling(scaling.Real(fleet.KeepAlive).TotalSeconds)));

    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        _client.DisconnectedAsync += OnDisconnectedAsync;
        _wanted = true;
        await ConnectOnceAsync(cancellationToken);
    }

    private async Task ConnectOnceAsync(CancellationToken cancellationToken)
    {
        var result = await _client.ConnectAsync(Options(), cancellationToken);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"The server refused device {clientId}: CONNACK {result.ResultCode}.");
        }

        var subscribe = new MqttClientSubscribeOptionsBuilder().WithTopicFilter("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtLeastOnce);
        if (fleet.Behaviour.SharedAttributes)
        {
            subscribe.WithTopicFilter("v1/devices/me/attributes", MqttQualityOfServiceLevel.AtLeastOnce);
        }

        await _client.SubscribeAsync(subscribe.Build(), cancellationToken);
    }

    private Task OnDisconnectedAsync(MqttClientDisconnectedEventArgs e)
    {
        if (_stopping.IsCancellationRequested)
        {
            return Task.CompletedTask;
        }

        // A drop the run made is expected; any other is the server (or the network) closing the connection.
        if (Interlocked.Decrement(ref _expectedDisconnects) < 0)
        {
            Interlocked.Exchange(ref _expectedDisconnects, 0);
            // What the server said when it closed (MQTT 5's DISCONNECT; 3.1.1 has none), known before the loss is counted.
            LastServerDisconnect = e.Reason != MqttClientDisconnectReason.NormalDisconnection || !string.IsNullOrEmpty(e.ReasonString)
                ? string.Create(CultureInfo.InvariantCulture, $"DISCONNECT 0x{(int)e.Reason:X2} {e.Reason}") + (string.IsNullOrEmpty(e.ReasonString) ? "" : $" \"{e.ReasonString}\"")
                : null;
            Interlocked.Increment(ref _connectionsLost);
            Interlocked.Exchange(ref _lost, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        }

        if (_wanted)
        {
            _ = ReconnectAsync();
        }

        return Task.CompletedTask;
    }

    /// <summary>Waits the back-off (initial, doubling to max, ±25% jitter; scenario time) and connects again until it works.</summary>
    private async Task ReconnectAsync()
    {
        if (Interlocked.Exchange(ref _reconnecting, 1) == 1)
        {
            return;
        }

        try
        {
            if (await ReconnectBackoff.RunAsync(fleet.Behaviour, scaling, random, () => _wanted && !_client.IsConnected, async cancellationToken =>
                {
                    try
                    {
                        await ConnectOnceAsync(cancellationToken);
                        return true;
                    }
                    catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or TimeoutException)
                    {
                        return false;
                    }
                }, _stopping.Token))
            {
                Interlocked.Increment(ref _reconnects);
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
        finally
        {
            Volatile.Write(ref _reconnecting, 0);
        }
    }

    public async Task DropAsync(bool reconnect)
    {
        _wanted = reconnect;
        try
        {
            if (_client.IsConnected)
            {
                Interlocked.Increment(ref _expectedDisconnects);
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().Build());
            }
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
        {
            // Already gone.
        }

        if (reconnect)
        {
            _ = ReconnectAsync();
        }
    }

    /// <summary>Connects again now, with no back-off (a reconnect storm, the end of a silence).</summary>
    public async Task<bool> ReconnectNowAsync(CancellationToken cancellationToken)
    {
        _wanted = true;
        if (_client.IsConnected)
        {
            return true;
        }

        try
        {
            await ConnectOnceAsync(cancellationToken);
            Interlocked.Increment(ref _reconnects);
            return true;
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or TimeoutException)
        {
            _ = ReconnectAsync();
            return false;
        }
    }

    private async Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var topic = e.ApplicationMessage.Topic;
        if (topic.StartsWith("v1/devices/me/rpc/request/", StringComparison.Ordinal))
        {
            var requestId = topic["v1/devices/me/rpc/request/".Length..];
            var delay = scaling.Real(fleet.Behaviour.RpcDelay);
            bool error;
            lock (random)
            {
                error = random.NextDouble() < fleet.Behaviour.RpcErrors;
            }

            _ = AnswerAsync(requestId, e.ApplicationMessage.ConvertPayloadToString(), delay, error);
        }
        else if (topic == "v1/devices/me/attributes")
        {
            Interlocked.Increment(ref _attributeUpdates);
        }

        await Task.CompletedTask;
    }

    private async Task AnswerAsync(string requestId, string request, TimeSpan delay, bool error)
    {
        try
        {
            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, _stopping.Token);
            }

            var method = "";
            try
            {
                using var json = System.Text.Json.JsonDocument.Parse(request);
                method = json.RootElement.TryGetProperty("method", out var m) ? m.GetString() ?? "" : "";
            }
            catch (System.Text.Json.JsonException)
            {
                method = "?";
            }

            var answer = error
                ? $"{{\"error\":\"simulated failure\",\"method\":{System.Text.Json.JsonSerializer.Serialize(method)}}}"
                : $"{{\"result\":\"ok\",\"method\":{System.Text.Json.JsonSerializer.Serialize(method)},\"device\":{System.Text.Json.JsonSerializer.Serialize(clientId)}}}";
            var result = await PublishAsync("v1/devices/me/rpc/response/" + requestId, Encoding.UTF8.GetBytes(answer), _stopping.Token);
            if (result.Acknowledged)
            {
                Interlocked.Increment(ref _rpcAnswered);
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    public Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => PublishAsync("v1/devices/me/telemetry", payload, cancellationToken);

    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => PublishAsync("v1/devices/me/attributes", payload, cancellationToken);

    /// <summary>Publishes at QoS 1 on any topic (a gateway's, for its devices).</summary>
    public async Task<SendResult> PublishAsync(string topic, byte[] payload, CancellationToken cancellationToken)
    {
        if (!_client.IsConnected)
        {
            return SendResult.NotConnected;
        }

        try
        {
            var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build();
            var result = await _client.PublishAsync(message, cancellationToken);
            return result.IsSuccess
                ? SendResult.Ok
                : new SendResult(false, string.Create(CultureInfo.InvariantCulture, $"refused: PUBACK 0x{(int)result.ReasonCode:X2} {result.ReasonCode}"));
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException || IsClientsOwnFailure(e))
        {
            return SendResult.ClosedByServer with
            {
                Detail = $"{e.GetType().Name}: {e.Message}" + (LastServerDisconnect is { } reason ? $"; the server's last disconnect: {reason}" : ""),
            };
        }
    }

    /// <summary>
    /// MQTTnet 5's publish can fail inside the client with a NullReferenceException when the server closes the
    /// connection while a QoS 1 publish waits for its PUBACK (seen in CI: a flood fault's device cut off by its rate
    /// limit). For the simulator that send failed as any other on a closed connection.
    /// </summary>
    private static bool IsClientsOwnFailure(Exception e) =>
        e is NullReferenceException && e.TargetSite?.DeclaringType?.Assembly == typeof(MqttClient).Assembly;

    public async ValueTask DisposeAsync()
    {
        _wanted = false;
        await _stopping.CancelAsync();
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
        _stopping.Dispose();
    }
}

/// <summary>
/// A device behind a gateway (ThingsBoard's gateway API): it says it is connected with <c>v1/gateway/connect</c> and
/// reports with <c>v1/gateway/telemetry</c> <c>{"name":[{"ts":..,"values":{..}}]}</c> over its gateway's connection,
/// which its fleet's devices share (the first to connect opens it).
/// </summary>
public sealed class GatewayChildDevice(MqttSimDevice gateway, string name, SemaphoreSlim gatewayGate) : ISimDevice
{
    private readonly byte[] _nameJson = Encoding.UTF8.GetBytes(System.Text.Json.JsonSerializer.Serialize(name));

    public bool IsConnected => gateway.IsConnected;

    public int ConnectionsLost => 0;

    public int Reconnects => 0;

    public int RpcAnswered => 0;

    public int AttributeUpdates => 0;

    public MqttSimDevice Gateway => gateway;

    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        await gatewayGate.WaitAsync(cancellationToken);
        try
        {
            if (!gateway.IsConnected)
            {
                await gateway.ConnectAsync(cancellationToken);
            }
        }
        finally
        {
            gatewayGate.Release();
        }

        var connected = await gateway.PublishAsync("v1/gateway/connect", Encoding.UTF8.GetBytes($"{{\"device\":{Encoding.UTF8.GetString(_nameJson)}}}"), cancellationToken);
        if (!connected.Acknowledged)
        {
            throw new InvalidOperationException($"The gateway refused to connect {name}: {connected.Outcome}.");
        }
    }

    public Task DropAsync(bool reconnect) =>
        gateway.PublishAsync("v1/gateway/disconnect", Encoding.UTF8.GetBytes($"{{\"device\":{Encoding.UTF8.GetString(_nameJson)}}}"), CancellationToken.None);

    public Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => gateway.PublishAsync("v1/gateway/telemetry", Wrap(payload), cancellationToken);

    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => gateway.PublishAsync("v1/gateway/attributes", Wrap(payload, asArray: false), cancellationToken);

    /// <summary><c>{"name":[payload]}</c> (telemetry) or <c>{"name":payload}</c> (attributes).</summary>
    private byte[] Wrap(byte[] payload, bool asArray = true)
    {
        var wrapped = new byte[_nameJson.Length + payload.Length + (asArray ? 5 : 3)];
        var span = wrapped.AsSpan();
        span[0] = (byte)'{';
        _nameJson.CopyTo(span[1..]);
        var at = 1 + _nameJson.Length;
        span[at++] = (byte)':';
        if (asArray)
        {
            span[at++] = (byte)'[';
        }

        payload.CopyTo(span[at..]);
        at += payload.Length;
        if (asArray)
        {
            span[at++] = (byte)']';
        }

        span[at] = (byte)'}';
        return wrapped;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>A device on ThingsBoard's HTTP device API (<c>POST /api/v1/{token}/telemetry</c>): no connection to lose.</summary>
public sealed class HttpSimDevice(HttpClient http, string token) : ISimDevice
{
    public bool IsConnected => true;

    public int ConnectionsLost => 0;

    public int Reconnects => 0;

    public int RpcAnswered => 0;

    public int AttributeUpdates => 0;

    public Task ConnectAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task DropAsync(bool reconnect) => Task.CompletedTask;

    public Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => PostAsync("telemetry", payload, cancellationToken);

    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => PostAsync("attributes", payload, cancellationToken);

    private async Task<SendResult> PostAsync(string what, byte[] payload, CancellationToken cancellationToken)
    {
        using var content = new ByteArrayContent(payload);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        try
        {
            using var response = await http.PostAsync($"/api/v1/{Uri.EscapeDataString(token)}/{what}", content, cancellationToken);
            return response.IsSuccessStatusCode ? SendResult.Ok : new SendResult(false, string.Create(CultureInfo.InvariantCulture, $"refused: HTTP {(int)response.StatusCode}"));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return new SendResult(false, "connection failed: " + e.Message);
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

internal static class Utf8
{
    public static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);
}
