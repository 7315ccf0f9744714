using Taihu.Mqtt;

namespace Taihu.Bench.Client;

/// <summary>Which MQTT client implementation a run drives the broker with.</summary>
public enum ClientKind
{
    /// <summary>taihu-bench's own client on the project's codec: no allocation per message, batched writes.</summary>
    Taihu,

    /// <summary>
    /// The MQTTnet 5 client, as third-party applications use it: one write per packet, its own acknowledgement
    /// handling and timing. A broker that only our own client has measured may hide what another client finds.
    /// </summary>
    MqttNet,

    /// <summary>
    /// The npm mqtt client (MQTT.js) in a Node.js process of its own: only for the rpc scenario's devices
    /// (<see cref="Scenarios.MqttJsDeviceFleet"/>), a client whose timing and collector are neither ours nor .NET's.
    /// </summary>
    MqttJs,
}

/// <summary>What the message-flow scenarios need of a client; every payload starts with the timing header.</summary>
public interface IBenchClient : IAsyncDisposable
{
    /// <summary>Messages received (any topic).</summary>
    MessageHandler? OnMessage { get; set; }

    /// <summary>QoS 1/2 publishes of this client the broker acknowledged with success.</summary>
    long Acknowledged { get; }

    /// <summary>QoS 1/2 publishes of this client the broker refused (a reason code of 0x80 or more).</summary>
    long Refused { get; }

    Task<ReasonCode> ConnectAsync(string clientId, BrokerTarget target, ushort keepAlive, bool cleanStart, CancellationToken cancellationToken);

    Task<ReasonCode> SubscribeAsync(string filter, QoS qos, CancellationToken cancellationToken);

    /// <summary>
    /// Publishes one message whose payload starts with the timing header. For QoS 1/2 waits for a slot in the
    /// inflight window first. <paramref name="flush"/> false lets a client that can batch several publishes into
    /// one write do so.
    /// </summary>
    ValueTask PublishAsync(ReadOnlyMemory<byte> topicUtf8, int payloadSize, QoS qos, int publisherId, long sequence, bool flush, CancellationToken cancellationToken);

    /// <summary>Sends what earlier unflushed publishes wrote.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>Sends DISCONNECT and closes.</summary>
    Task DisconnectAsync();
}

/// <summary>Opens a client of the chosen kind.</summary>
public static class BenchClients
{
    public static async Task<IBenchClient> OpenAsync(ClientKind kind, BrokerTarget target, int maxInflight, CancellationToken cancellationToken, System.Net.IPAddress? localAddress = null) => kind switch
    {
        ClientKind.MqttNet => MqttNetBenchClient.Create(target, maxInflight, localAddress),
        ClientKind.Taihu => await BenchClient.OpenAsync(target, maxInflight, cancellationToken, localAddress),
        _ => throw new ArgumentException($"--client {Name(kind)} drives only the rpc scenario's devices; use taihu or mqttnet here."),
    };

    /// <summary>Parses <c>--client</c>: taihu, mqttnet or mqttjs (rpc only).</summary>
    public static ClientKind Parse(string? name) => name?.ToLowerInvariant() switch
    {
        null or "" or "taihu" => ClientKind.Taihu,
        "mqttnet" => ClientKind.MqttNet,
        "mqttjs" => ClientKind.MqttJs,
        _ => throw new ArgumentException($"Unknown client '{name}'; use taihu, mqttnet or (for rpc) mqttjs."),
    };

    /// <summary>The name <c>--client</c> takes, as results report it.</summary>
    public static string Name(ClientKind kind) => kind switch
    {
        ClientKind.MqttNet => "mqttnet",
        ClientKind.MqttJs => "mqttjs",
        _ => "taihu",
    };
}
