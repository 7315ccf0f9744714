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
                        var client = await BenchClient.OpenAsync(target, o.MaxInflight, cancellationToken, local);
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
