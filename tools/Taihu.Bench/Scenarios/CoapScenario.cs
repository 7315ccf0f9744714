using System.Buffers.Text;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Taihu.Bench.Measurement;
using Taihu.Protocols.Coap;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// coap: N devices (created through the management API, each with its own access token) post ThingsBoard telemetry
/// over CoAP (<c>POST /api/v1/{token}/telemetry</c>, confirmable), each from its own UDP socket, and wait for each
/// answer as a device does. With <c>Ingest:AckAfterCommit</c> the 2.01 comes after the commit, so the latency is
/// from sending to the point being stored. An answer not in within RFC 7252's ACK_TIMEOUT (2 s, doubling) is
/// retransmitted with the same message id, up to 4 times; a request never answered is lost.
/// </summary>
public sealed class CoapScenario(BenchOptions o, PlatformTarget p, int keys, IProgress<ProgressReport>? progress)
{
    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        using var http = p.CreateHttpClient();
        var tenant = await BenchTenant.CreateAsync(http, p.AdminUser, p.AdminPassword, cancellationToken);
        try
        {
            var (_, tokens) = await tenant.CreateDevicesAsync(o.Clients, progress, cancellationToken);
            return await MeasureAsync(tokens, cancellationToken);
        }
        finally
        {
            await tenant.DeleteAsync();
        }
    }

    private async Task<BenchResult> MeasureAsync(string[] tokens, CancellationToken cancellationToken)
    {
        var addresses = await Dns.GetHostAddressesAsync(o.Host, cancellationToken);
        var server = new IPEndPoint(addresses.First(a => a.AddressFamily == AddressFamily.InterNetwork), o.Port);
        var recorder = new RunRecorder(Stopwatch.Frequency, 1);
        var start = Stopwatch.GetTimestamp();
        var windowStart = start + (long)(o.WarmupSeconds * Stopwatch.Frequency);
        var windowEnd = windowStart + (long)(o.DurationSeconds * Stopwatch.Frequency);
        recorder.StartWindow(windowStart);
        recorder.EndWindow(windowEnd);
        var perDevice = o.Rate / tokens.Length;
        long retransmissions = 0, refused = 0, lost = 0, separate = 0;
        var selfStart = ProcessSampler.Self();
        var brokerStart = o.BrokerPid is { } pid0 ? ProcessSampler.Sample(pid0) : null;
        var devices = new Task[tokens.Length];
        for (var d = 0; d < tokens.Length; d++)
        {
            var index = d;
            devices[d] = Task.Run(async () =>
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                socket.Connect(server);
                var token = Encoding.UTF8.GetBytes(tokens[index]);
                var request = new byte[256 + token.Length + (keys * 32)];
                var payload = new byte[16 + (keys * 32)];
                var answer = new byte[1500];
                var options = new CoapOptionRef[16];
                var pacer = RateController.ForDevice(perDevice, start, Stopwatch.Frequency, index, tokens.Length, maxBurst: 1);
                var messageId = (ushort)Random.Shared.Next(65536);
                long sequence = 0;
                while (Stopwatch.GetTimestamp() < windowEnd && !cancellationToken.IsCancellationRequested)
                {
                    if (pacer.Due(Stopwatch.GetTimestamp(), sequence) == 0)
                    {
                        await pacer.WaitForNextAsync(sequence, cancellationToken);
                        continue;
                    }

                    var payloadLength = WritePayload(payload, keys, sequence++);
                    messageId++;
                    var length = WriteRequest(request, messageId, token, payload.AsSpan(0, payloadLength));
                    var sent = Stopwatch.GetTimestamp();
                    recorder.Sent(sent);
                    var timeout = TimeSpan.FromSeconds(2 * (1 + (Random.Shared.NextDouble() / 2)));
                    var answered = false;
                    for (var attempt = 0; attempt <= 4 && !answered; attempt++, timeout *= 2)
                    {
                        if (attempt > 0)
                        {
                            Interlocked.Increment(ref retransmissions);
                        }

                        socket.Send(request.AsSpan(0, length));
                        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                        wait.CancelAfter(timeout);
                        try
                        {
                            while (!answered)
                            {
                                var received = await socket.ReceiveAsync(answer.AsMemory(), SocketFlags.None, wait.Token);
                                if (CoapParser.TryParse(answer.AsSpan(0, received), options, out var header) != CoapParseStatus.Ok)
                                {
                                    continue;
                                }

                                if (header.Type == CoapType.Acknowledgement && header.MessageId == messageId && header.Code == CoapCode.Empty)
                                {
                                    // An empty ACK: the server took long and answers separately; stop retransmitting, wait for it.
                                    Interlocked.Increment(ref separate);
                                    wait.CancelAfter(TimeSpan.FromSeconds(60));
                                    continue;
                                }

                                var response = header.Type == CoapType.Acknowledgement ? header.MessageId == messageId
                                    : header.Type is CoapType.Confirmable or CoapType.NonConfirmable && answer.AsSpan(4, header.TokenLength).SequenceEqual(RequestToken(messageId));
                                if (!response)
                                {
                                    continue;
                                }

                                if (header.Type == CoapType.Confirmable)
                                {
                                    socket.Send([0x60, 0, (byte)(header.MessageId >> 8), (byte)header.MessageId]);
                                }

                                answered = true;
                                if (header.Code == CoapCode.Created)
                                {
                                    recorder.Received(sent, Stopwatch.GetTimestamp());
                                }
                                else
                                {
                                    Interlocked.Increment(ref refused);
                                }
                            }
                        }
                        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                        {
                        }
                    }

                    if (!answered && recorder.InWindow(sent))
                    {
                        Interlocked.Increment(ref lost);
                    }
                }
            }, cancellationToken);
        }

        var all = Task.WhenAll(devices);
        while (!all.IsCompleted)
        {
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromMilliseconds(250), cancellationToken));
            var now = Stopwatch.GetTimestamp();
            progress?.Report(new ProgressReport(now < windowStart ? "warming up" : "posting", Stopwatch.GetElapsedTime(start),
                TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds), recorder.SentInWindow, recorder.ReceivedInWindow, recorder.LivePercentileMs(99)));
        }

        await all;
        var brokerEnd = o.BrokerPid is { } pid1 ? ProcessSampler.Sample(pid1) : null;
        var selfEnd = ProcessSampler.Self();
        var delivered = recorder.ReceivedInWindow;
        return new BenchResult
        {
            Scenario = "coap",
            Target = $"{o.Host}:{o.Port}/udp",
            Protocol = "coap",
            QoS = 1,
            PayloadSize = 16 + (keys * 12),
            OfferedRate = o.Rate,
            DurationSeconds = o.DurationSeconds,
            Publishers = tokens.Length,
            Connections = tokens.Length,
            Sent = recorder.SentInWindow,
            Expected = recorder.SentInWindow,
            Delivered = delivered,
            Lost = Interlocked.Read(ref lost),
            DeliveredPerSecond = delivered / o.DurationSeconds,
            LatencyP50Ms = recorder.LatencyPercentileMs(50),
            LatencyP90Ms = recorder.LatencyPercentileMs(90),
            LatencyP99Ms = recorder.LatencyPercentileMs(99),
            LatencyP999Ms = recorder.LatencyPercentileMs(99.9),
            LatencyMaxMs = recorder.LatencyMaxMs,
            BrokerCpuPercent = brokerStart is { } b0 && brokerEnd is { } b1 ? ProcessSampler.CpuPercent(b0, b1) : null,
            BrokerResidentBytes = brokerEnd?.ResidentBytes,
            GeneratorCpuPercent = ProcessSampler.CpuPercent(selfStart, selfEnd),
            Note = $"{Interlocked.Read(ref retransmissions)} retransmissions, {Interlocked.Read(ref separate)} separate responses, {Interlocked.Read(ref refused)} answered other than 2.01",
        };
    }

    /// <summary>A confirmable POST with Uri-Path api/v1/{token}/telemetry and the payload.</summary>
    private static int WriteRequest(byte[] buffer, ushort messageId, ReadOnlySpan<byte> token, ReadOnlySpan<byte> payload)
    {
        var writer = new CoapWriter(buffer, CoapType.Confirmable, CoapCode.Post, messageId, RequestToken(messageId));
        writer.Option(CoapOption.UriPath, "api"u8);
        writer.Option(CoapOption.UriPath, "v1"u8);
        writer.Option(CoapOption.UriPath, token);
        writer.Option(CoapOption.UriPath, "telemetry"u8);
        writer.UIntOption(CoapOption.ContentFormat, CoapOption.FormatJson);
        writer.Payload(payload);
        return writer.Length;
    }

    /// <summary>The request's token: its message id, so a separate response can be matched without a table.</summary>
    private static ReadOnlySpan<byte> RequestToken(ushort messageId) => new[] { (byte)(messageId >> 8), (byte)messageId };

    /// <summary><c>{"k0":seq,"k1":..}</c> in place.</summary>
    private static int WritePayload(byte[] buffer, int keys, long sequence)
    {
        var position = 0;
        buffer[position++] = (byte)'{';
        for (var k = 0; k < keys; k++)
        {
            if (k > 0)
            {
                buffer[position++] = (byte)',';
            }

            buffer[position++] = (byte)'"';
            buffer[position++] = (byte)'k';
            Utf8Formatter.TryFormat(k, buffer.AsSpan(position), out var written);
            position += written;
            buffer[position++] = (byte)'"';
            buffer[position++] = (byte)':';
            Utf8Formatter.TryFormat(sequence + k, buffer.AsSpan(position), out written);
            position += written;
        }

        buffer[position++] = (byte)'}';
        return position;
    }
}
