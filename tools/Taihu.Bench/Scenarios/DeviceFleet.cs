using System.Buffers;
using Taihu.Bench.Client;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// Connects many devices (taihu-bench's own client, one connection per access token), 64 connects at a time
/// (round robin over --source-addresses when given),
/// optionally subscribing each to <c>v1/devices/me/rpc/request/+</c> at QoS 1 and answering every command on
/// <c>v1/devices/me/rpc/response/{id}</c> at QoS 1 with <c>{"seq":N}</c> (the command's <c>params.seq</c>).
/// </summary>
public static class DeviceFleet
{
    /// <summary>Called on a device's receive loop for each command it gets, before it answers.</summary>
    public delegate void CommandHandler(int device, int requestId, long sequence, bool hasSequence);

    public static async Task<BenchClient[]> ConnectAsync(BenchOptions o, string runId, string[] tokens, CommandHandler? onCommand, IProgress<ProgressReport>? progress,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(tokens);
        var clients = new BenchClient[tokens.Length];
        var failures = 0;
        var connected = 0;
        string? firstError = null;
        using (var gate = new SemaphoreSlim(64))
        {
            var connecting = new Task[tokens.Length];
            for (var d = 0; d < tokens.Length; d++)
            {
                var i = d;
                await gate.WaitAsync(cancellationToken);
                connecting[i] = Task.Run(async () =>
                {
                    try
                    {
                        var target = o.Target with { UserName = tokens[i], Password = null };
                        // --source-addresses spreads the devices over local addresses, as a fleet comes from many
                        // (the server limits authentication checks in flight per source address).
                        var local = o.SourceAddresses.Length == 0 ? null : System.Net.IPAddress.Parse(o.SourceAddresses[i % o.SourceAddresses.Length]);
                        var client = await BenchClient.OpenAsync(target, o.MaxInflight, cancellationToken, local, BenchClient.SmallBuffers);
                        clients[i] = client;
                        if (onCommand is not null)
                        {
                            client.OnPublish = (topic, payload) => Answer(client, i, topic, payload, onCommand);
                        }

                        var code = await client.ConnectAsync($"{runId}-device-{i}", target, 0, true, cancellationToken);
                        if (code != ReasonCode.Success)
                        {
                            throw new InvalidOperationException($"CONNACK {code} for device {i}");
                        }

                        if (onCommand is not null)
                        {
                            var granted = await client.SubscribeAsync("v1/devices/me/rpc/request/+", QoS.AtLeastOnce, cancellationToken);
                            if (granted >= ReasonCode.UnspecifiedError)
                            {
                                throw new InvalidOperationException($"SUBACK {granted} for device {i}");
                            }
                        }

                        var n = Interlocked.Increment(ref connected);
                        if (n % 500 == 0)
                        {
                            progress?.Report(new ProgressReport("connecting devices", TimeSpan.Zero, TimeSpan.FromSeconds(1), n, 0, 0));
                        }
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        Interlocked.Increment(ref failures);
                        Interlocked.CompareExchange(ref firstError, e.Message, null);
                    }
                    finally
                    {
                        gate.Release();
                    }
                }, cancellationToken);
            }

            await Task.WhenAll(connecting);
        }

        if (failures > 0)
        {
            await DisposeAsync(clients);
            throw new InvalidOperationException($"{failures} devices could not connect; the first: {firstError}");
        }

        return clients;
    }

    public static async Task DisposeAsync(BenchClient?[] clients)
    {
        ArgumentNullException.ThrowIfNull(clients);
        foreach (var client in clients)
        {
            if (client is not null)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static void Answer(BenchClient client, int device, ReadOnlySpan<byte> topic, ReadOnlySequence<byte> payload, CommandHandler onCommand)
    {
        if (!RpcMessages.TryParseRequestId(topic, out var id))
        {
            return;
        }

        var hasSequence = RpcMessages.TryReadSequence(payload, out var sequence);
        onCommand(device, id, sequence, hasSequence);
        _ = ReplyAsync(client, id, sequence);
    }

    private static async Task ReplyAsync(BenchClient client, int id, long sequence)
    {
        try
        {
            await client.PublishRawAsync(RpcMessages.ResponseTopic(id), RpcMessages.Reply(sequence), QoS.AtLeastOnce, flush: true, CancellationToken.None);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            // The run is ending or the connection dropped; the missing reply shows in the counts.
        }
    }
}

/// <summary>
/// The same fleet on the MQTTnet 5 client (<c>--client mqttnet</c>), as a third-party device's firmware or script
/// would use it: each device subscribes to <c>v1/devices/me/rpc/request/+</c> at QoS 1 and answers every command
/// on <c>v1/devices/me/rpc/response/{id}</c> at QoS 1 with <c>{"seq":N}</c>, from MQTTnet's message handler
/// (acknowledged when the handler returns). MQTTnet's own timing is the point: the server must not depend on how
/// our client batches.
/// </summary>
public static class MqttNetDeviceFleet
{
    public static async Task<MQTTnet.IMqttClient[]> ConnectAsync(BenchOptions o, string runId, string[] tokens, DeviceFleet.CommandHandler onCommand,
        IProgress<ProgressReport>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(tokens);
        var factory = new MQTTnet.MqttClientFactory();
        var clients = new MQTTnet.IMqttClient[tokens.Length];
        var connected = 0;
        using var gate = new SemaphoreSlim(64);
        var connecting = new Task[tokens.Length];
        for (var d = 0; d < tokens.Length; d++)
        {
            var i = d;
            await gate.WaitAsync(cancellationToken);
            connecting[i] = Task.Run(async () =>
            {
                try
                {
                    var client = factory.CreateMqttClient();
                    clients[i] = client;
                    client.ApplicationMessageReceivedAsync += e =>
                    {
                        Answer(client, i, e.ApplicationMessage, onCommand);
                        return Task.CompletedTask;
                    };
                    var options = new MQTTnet.MqttClientOptionsBuilder()
                        .WithTcpServer(o.Target.Host, o.Target.Port)
                        .WithProtocolVersion(o.Target.Version == ProtocolVersion.V500 ? MQTTnet.Formatter.MqttProtocolVersion.V500 : MQTTnet.Formatter.MqttProtocolVersion.V311)
                        .WithClientId($"{runId}-device-{i}")
                        .WithCredentials(tokens[i], (string?)null)
                        .WithCleanSession(true)
                        .WithKeepAlivePeriod(TimeSpan.Zero)
                        .WithTimeout(TimeSpan.FromSeconds(60))
                        .Build();
                    var result = await client.ConnectAsync(options, cancellationToken);
                    if (result.ResultCode != MQTTnet.MqttClientConnectResultCode.Success)
                    {
                        throw new InvalidOperationException($"CONNACK {result.ResultCode} for device {i}");
                    }

                    var granted = await client.SubscribeAsync(new MQTTnet.MqttClientSubscribeOptionsBuilder()
                        .WithTopicFilter("v1/devices/me/rpc/request/+", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
                    if ((int)granted.Items.First().ResultCode >= 0x80)
                    {
                        throw new InvalidOperationException($"SUBACK {granted.Items.First().ResultCode} for device {i}");
                    }

                    var n = Interlocked.Increment(ref connected);
                    if (n % 500 == 0)
                    {
                        progress?.Report(new ProgressReport("connecting MQTTnet devices", TimeSpan.Zero, TimeSpan.FromSeconds(1), n, 0, 0));
                    }
                }
                finally
                {
                    gate.Release();
                }
            }, cancellationToken);
        }

        try
        {
            await Task.WhenAll(connecting);
        }
        catch
        {
            await DisposeAsync(clients);
            throw;
        }

        return clients;
    }

    public static async Task DisposeAsync(MQTTnet.IMqttClient?[] clients)
    {
        ArgumentNullException.ThrowIfNull(clients);
        foreach (var client in clients)
        {
            if (client is null)
            {
                continue;
            }

            try
            {
                if (client.IsConnected)
                {
                    await client.DisconnectAsync(new MQTTnet.MqttClientDisconnectOptionsBuilder().Build());
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Closing anyway.
            }

            client.Dispose();
        }
    }

    private static void Answer(MQTTnet.IMqttClient client, int device, MQTTnet.MqttApplicationMessage message, DeviceFleet.CommandHandler onCommand)
    {
        var topic = message.Topic;
        const string prefix = "v1/devices/me/rpc/request/";
        if (!topic.StartsWith(prefix, StringComparison.Ordinal)
            || !int.TryParse(topic.AsSpan(prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id))
        {
            return;
        }

        var hasSequence = RpcMessages.TryReadSequence(message.Payload, out var sequence);
        onCommand(device, id, sequence, hasSequence);
        _ = ReplyAsync(client, id, sequence);
    }

    private static async Task ReplyAsync(MQTTnet.IMqttClient client, int id, long sequence)
    {
        try
        {
            await client.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder()
                .WithTopic("v1/devices/me/rpc/response/" + id.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .WithPayload(RpcMessages.Reply(sequence))
                .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
                .Build());
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The run is ending or the connection dropped; the missing reply shows in the counts.
        }
    }
}
