using System.Collections.Concurrent;
using MQTTnet;
using MQTTnet.Formatter;

namespace Taihu.Broker.Tests.Support;

/// <summary>MQTTnet clients connected to a <see cref="BrokerHost"/>, collecting what they receive.</summary>
public sealed class TestClient : IAsyncDisposable
{
    private readonly ConcurrentQueue<MqttApplicationMessageReceivedEventArgs> _received = new();
    private readonly SemaphoreSlim _signal = new(0);

    private TestClient(IMqttClient client)
    {
        Client = client;
        client.ApplicationMessageReceivedAsync += e =>
        {
            _received.Enqueue(e);
            _signal.Release();
            return Task.CompletedTask;
        };
    }

    public IMqttClient Client { get; }
    public MqttClientConnectResult? ConnectResult { get; private set; }

    public static async Task<TestClient> ConnectAsync(BrokerHost host, string? clientId = null, MqttProtocolVersion version = MqttProtocolVersion.V500, Action<MqttClientOptionsBuilder>? configure = null)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var result = new TestClient(client);
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", host.Port)
            .WithProtocolVersion(version)
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (clientId is not null)
        {
            builder.WithClientId(clientId);
        }

        configure?.Invoke(builder);
        result.ConnectResult = await client.ConnectAsync(builder.Build());
        return result;
    }

    /// <summary>
    /// Connects with options the caller built completely, for transports other than TCP: MQTTnet's builder uses
    /// TCP whenever WithTcpServer was called, even if WithWebSocketServer follows.
    /// </summary>
    public static async Task<TestClient> ConnectAsync(MqttClientOptions options)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var result = new TestClient(client);
        result.ConnectResult = await client.ConnectAsync(options);
        return result;
    }

    /// <summary>Waits for the next message (up to 10 s of wall clock, a failure guard only).</summary>
    public async Task<MqttApplicationMessageReceivedEventArgs> NextAsync()
    {
        if (!await _signal.WaitAsync(TimeSpan.FromSeconds(10)))
        {
            throw new TimeoutException("No message arrived.");
        }

        _received.TryDequeue(out var message);
        return message!;
    }

    /// <summary>True if a message is already waiting (does not wait).</summary>
    public bool HasPending => !_received.IsEmpty;

    public int PendingCount => _received.Count;

    public async ValueTask DisposeAsync()
    {
        if (Client.IsConnected)
        {
            try
            {
                await Client.DisconnectAsync();
            }
            catch (MQTTnet.Exceptions.MqttCommunicationException)
            {
            }
        }

        Client.Dispose();
        _signal.Dispose();
    }
}
