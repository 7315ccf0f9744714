using System.Threading.Channels;
using MQTTnet;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>An MQTTnet client that queues what it receives and remembers how its connection ended.</summary>
public class ReceivingMqttClient : IAsyncDisposable
{
    protected static readonly TimeSpan Guard = TimeSpan.FromSeconds(15);
    private readonly Channel<MqttApplicationMessage> _received = Channel.CreateUnbounded<MqttApplicationMessage>();
    private readonly TaskCompletionSource<MqttClientDisconnectedEventArgs> _disconnected = new(TaskCreationOptions.RunContinuationsAsynchronously);

    protected ReceivingMqttClient(IMqttClient client)
    {
        Client = client;
        client.ApplicationMessageReceivedAsync += e =>
        {
            _received.Writer.TryWrite(e.ApplicationMessage);
            return Task.CompletedTask;
        };
        client.DisconnectedAsync += e =>
        {
            _disconnected.TrySetResult(e);
            return Task.CompletedTask;
        };
    }

    public IMqttClient Client { get; }

    /// <summary>Completes when the connection ends, with how it ended (the server's DISCONNECT reason for 5.0).</summary>
    public Task<MqttClientDisconnectedEventArgs> Disconnected => _disconnected.Task;

    /// <summary>The next message received (guarded).</summary>
    public async Task<MqttApplicationMessage> NextAsync() => await _received.Reader.ReadAsync().AsTask().WaitAsync(Guard);

    /// <summary>Whether a message is already waiting.</summary>
    public bool TryTake(out MqttApplicationMessage? message) => _received.Reader.TryRead(out message);

    public async ValueTask DisposeAsync()
    {
        if (Client.IsConnected)
        {
            try
            {
                await Client.DisconnectAsync().WaitAsync(Guard);
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or TimeoutException)
            {
            }
        }

        Client.Dispose();
        GC.SuppressFinalize(this);
    }
}
