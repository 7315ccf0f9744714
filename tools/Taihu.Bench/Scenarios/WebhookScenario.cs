using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Taihu.Bench.Client;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>Options of the webhook scenario beyond the common ones.</summary>
public sealed record WebhookOptions(string ApiUrl, string AdminUser, string AdminPassword)
{
    /// <summary>Seconds the receiver is stopped after the measurement window while the devices go on publishing.</summary>
    public double DowntimeSeconds { get; init; } = 60;

    /// <summary>Seconds to wait, after the receiver is back, for every acknowledged message's event.</summary>
    public double CatchUpSeconds { get; init; } = 600;

    /// <summary>The receiver's port (0: a free one, kept across the stop).</summary>
    public int ReceiverPort { get; init; }

    /// <summary>A file to write the access token of one more device to, for a third-party publisher (mosquitto_pub).</summary>
    public string? ThirdPartyTokenFile { get; init; }

    /// <summary>Messages the third-party publisher sends (k0 = 0, 1, ...); the run waits for their events too.</summary>
    public int ThirdPartyMessages { get; init; }
}

/// <summary>
/// webhook: a webhook integration (TELEMETRY) of a bench tenant to a receiver in this process (Kestrel on
/// 127.0.0.1), devices publishing telemetry at QoS 1. Three phases: (1) the measurement window, receiver up: events
/// delivered per second; (2) the receiver stopped for --downtime seconds while the devices go on; (3) publishing
/// stopped, the receiver back: every acknowledged message's event must arrive (the catch-up rate and time are
/// reported), with the duplicates (the same event id twice), events out of order per device, and bad signatures.
/// </summary>
public sealed class WebhookScenario(BenchOptions o, WebhookOptions w, IProgress<ProgressReport>? progress)
{
    private const string Secret = "bench-webhook-secret-0123456789";
    private static readonly string[] TelemetryOnly = ["TELEMETRY"];
    private readonly Receiver _receiver = new(Encoding.UTF8.GetBytes(Secret));

    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        var port = w.ReceiverPort != 0 ? w.ReceiverPort : FreePort();
        using var http = new HttpClient { BaseAddress = new Uri(w.ApiUrl), Timeout = TimeSpan.FromMinutes(2) };
        var tenant = await BenchTenant.CreateAsync(http, w.AdminUser, w.AdminPassword, cancellationToken);
        var clients = new BenchClient[o.Clients];
        WebApplication? app = null;
        try
        {
            var (_, tokens) = await tenant.CreateDevicesAsync(o.Clients + (w.ThirdPartyTokenFile is null ? 0 : 1), progress, cancellationToken);
            var integration = await BenchTenant.SendAsync(http, HttpMethod.Post, tenant.AdminToken, "/api/integration", new
            {
                name = "bench webhook",
                type = "HTTP",
                messageTypes = TelemetryOnly,
                configuration = new { url = $"http://127.0.0.1:{port}/hook", secret = Secret, requestTimeoutMs = 10_000 },
            }, cancellationToken);
            var integrationId = integration.GetProperty("id").GetProperty("id").GetString()!;
            app = await _receiver.StartAsync(port, cancellationToken);
            await ConnectAsync(clients, tokens, tenant.RunId, cancellationToken);
            if (w.ThirdPartyTokenFile is { } file)
            {
                // The last device is the third party's; the script starts mosquitto_pub once the file is there.
                await File.WriteAllTextAsync(file + ".tmp", tokens[^1], cancellationToken);
                File.Move(file + ".tmp", file, overwrite: true);
            }

            return await MeasureAsync(clients, http, tenant.AdminToken, integrationId, port, () => app, a => app = a, cancellationToken);
        }
        finally
        {
            foreach (var client in clients)
            {
                if (client is not null)
                {
                    await client.DisposeAsync();
                }
            }

            if (app is not null)
            {
                await app.StopAsync(CancellationToken.None);
                await app.DisposeAsync();
            }

            await tenant.DeleteAsync();
        }
    }

    private async Task ConnectAsync(BenchClient[] clients, string[] tokens, string runId, CancellationToken cancellationToken)
    {
        using var gate = new SemaphoreSlim(64);
        var connecting = new Task[clients.Length];
        for (var d = 0; d < clients.Length; d++)
        {
            var i = d;
            await gate.WaitAsync(cancellationToken);
            connecting[i] = Task.Run(async () =>
            {
                try
                {
                    var target = o.Target with { UserName = tokens[i], Password = null };
                    clients[i] = await BenchClient.OpenAsync(target, o.MaxInflight, cancellationToken);
                    var code = await clients[i].ConnectAsync($"{runId}-device-{i}", target, 0, true, cancellationToken);
                    if (code != ReasonCode.Success)
                    {
                        throw new InvalidOperationException($"CONNACK {code} for device {i}");
                    }
                }
                finally
                {
                    gate.Release();
                }
            }, cancellationToken);
        }

        await Task.WhenAll(connecting);
    }

    private async Task<BenchResult> MeasureAsync(BenchClient[] clients, HttpClient http, string adminToken, string integrationId, int port,
        Func<WebApplication?> getApp, Action<WebApplication?> setApp, CancellationToken cancellationToken)
    {
        var topic = "v1/devices/me/telemetry"u8.ToArray();
        var start = Stopwatch.GetTimestamp();
        var f = (double)Stopwatch.Frequency;
        var windowStart = start + (long)(o.WarmupSeconds * f);
        var windowEnd = windowStart + (long)(o.DurationSeconds * f);
        var publishEnd = windowEnd + (long)(w.DowntimeSeconds * f);
        var perDevice = o.Rate / clients.Length;
        // A day ago, so that sequence numbers as milliseconds stay in the past.
        var baseTs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 86_400_000;
        var publishing = new Task[clients.Length];
        for (var d = 0; d < clients.Length; d++)
        {
            var client = clients[d];
            var index = d;
            publishing[d] = Task.Run(async () =>
            {
                var buffer = new byte[64 + (5 * 32)];
                var pacer = RateController.ForDevice(perDevice, start, Stopwatch.Frequency, index, clients.Length, maxBurst: perDevice == 0 ? 4 : 100);
                long sequence = 0;
                while (Stopwatch.GetTimestamp() < publishEnd && !cancellationToken.IsCancellationRequested)
                {
                    var due = pacer.Due(Stopwatch.GetTimestamp(), sequence);
                    if (due == 0)
                    {
                        await pacer.WaitForNextAsync(sequence, cancellationToken);
                        continue;
                    }

                    for (var n = 0; n < due; n++)
                    {
                        // k0 is the device's sequence number and the ts is its own, so that no two messages of a device
                        // share a ts (they would be one point per key, and the event would carry only the later one).
                        var length = WritePayload(buffer, baseTs, sequence++);
                        await client.PublishRawAsync(topic, buffer.AsMemory(0, length), QoS.AtLeastOnce, flush: false, cancellationToken);
                    }

                    await client.FlushAsync(cancellationToken);
                }
            }, cancellationToken);
        }

        long Acked()
        {
            long acked = 0;
            foreach (var client in clients)
            {
                acked += client.Acknowledged;
            }

            return acked;
        }

        // (1) The window, receiver up.
        await WaitUntilAsync(windowStart, "warming up", cancellationToken);
        var acked0 = Acked();
        var received0 = _receiver.Messages;
        var events0 = _receiver.Events;
        var broker0 = o.BrokerPid is { } pid0 ? ProcessSampler.Sample(pid0) : null;
        var self0 = ProcessSampler.Self();
        await WaitUntilAsync(windowEnd, "receiver up", cancellationToken);
        var window = (Stopwatch.GetTimestamp() - windowStart) / f;
        var ackedWindow = Acked() - acked0;
        var deliveredWindow = _receiver.Messages - received0;
        var eventsWindow = _receiver.Events - events0;
        var broker1 = o.BrokerPid is { } pid1 ? ProcessSampler.Sample(pid1) : null;
        var self1 = ProcessSampler.Self();

        // (2) The receiver stopped; the devices go on.
        if (w.DowntimeSeconds > 0)
        {
            var app = getApp()!;
            await app.StopAsync(cancellationToken);
            await app.DisposeAsync();
            setApp(null);
            await WaitUntilAsync(publishEnd, "receiver down", cancellationToken);
        }

        await Task.WhenAll(publishing);
        var ackedTotal = Acked();
        long refused = 0;
        foreach (var client in clients)
        {
            refused += client.Refused;
        }

        // (3) The receiver back: every acknowledged message's event (and the third party's) must come.
        var expected = ackedTotal + w.ThirdPartyMessages;
        var backlog = expected - _receiver.Messages;
        var back = Stopwatch.GetTimestamp();
        var receivedAtBack = _receiver.Messages;
        var eventsAtBack = _receiver.Events;
        if (getApp() is null)
        {
            setApp(await _receiver.StartAsync(port, cancellationToken));
        }

        var deadline = back + (long)(w.CatchUpSeconds * f);
        long caughtUp = 0;
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (_receiver.Messages >= expected)
            {
                var stats = await BenchTenant.SendAsync(http, HttpMethod.Get, adminToken, $"/api/integration/{integrationId}/stats", null, cancellationToken);
                if (stats.GetProperty("outboxSize").GetInt64() == 0)
                {
                    caughtUp = Stopwatch.GetTimestamp();
                    break;
                }
            }

            progress?.Report(new ProgressReport("catching up", Stopwatch.GetElapsedTime(start), TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds + w.DowntimeSeconds + w.CatchUpSeconds),
                ackedTotal, _receiver.Messages, 0));
            await Task.Delay(100, cancellationToken);
        }

        var catchUpSeconds = ((caughtUp == 0 ? Stopwatch.GetTimestamp() : caughtUp) - back) / f;
        var catchUpRate = (_receiver.Messages - receivedAtBack) / Math.Max(0.001, catchUpSeconds);
        var catchUpEvents = (_receiver.Events - eventsAtBack) / Math.Max(0.001, catchUpSeconds);
        var missing = Math.Max(0, expected - _receiver.Messages);
        double? brokerCpu = broker0 is { } b0 && broker1 is { } b1 ? ProcessSampler.CpuPercent(b0, b1) : null;
        var c = CultureInfo.InvariantCulture;
        var note = string.Concat(
            string.Create(c, $"window {window:F1} s: {ackedWindow / window:N0} msg/s acknowledged, {eventsWindow / window:N0} events/s ({deliveredWindow / window:N0} messages/s) delivered to the webhook; "),
            string.Create(c, $"receiver down {w.DowntimeSeconds:F0} s, then a backlog of {backlog:N0} messages caught up in {catchUpSeconds:F1} s ({catchUpEvents:N0} events/s, {catchUpRate:N0} messages/s){(caughtUp == 0 ? " (NOT caught up: timed out)" : "")}; "),
            string.Create(c, $"{_receiver.Posts:N0} POSTs of {_receiver.Events:N0} events holding {_receiver.Messages:N0} messages: {_receiver.Duplicates:N0} duplicate POSTs, {_receiver.OutOfOrder:N0} points out of order per device, {_receiver.BadSignatures:N0} bad signatures"),
            w.ThirdPartyMessages > 0 ? string.Create(c, $"; third-party publisher (mosquitto_pub): {_receiver.ThirdParty(clients.Length):N0} of its {w.ThirdPartyMessages:N0} messages arrived") : "");
        return new BenchResult
        {
            Scenario = "webhook",
            Target = $"{o.Host}:{o.Port}",
            Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
            QoS = 1,
            PayloadSize = WritePayload(new byte[64 + (5 * 32)], 0, 0),
            OfferedRate = o.Rate,
            DurationSeconds = window,
            Publishers = clients.Length + (w.ThirdPartyMessages > 0 ? 1 : 0),
            Sent = ackedTotal + refused + w.ThirdPartyMessages,
            Expected = expected,
            Delivered = _receiver.Messages,
            Lost = missing,
            Duplicates = _receiver.Duplicates,
            DeliveredPerSecond = deliveredWindow / window,
            BrokerCpuPercent = brokerCpu,
            BrokerResidentBytes = broker1?.ResidentBytes,
            GeneratorCpuPercent = ProcessSampler.CpuPercent(self0, self1),
            Connections = clients.Length,
            Note = note,
        };
    }

    /// <summary><c>{"ts":baseTs+sequence,"values":{"k0":sequence,..}}</c>; returns the length.</summary>
    internal static int WritePayload(byte[] buffer, long baseTs, long sequence)
    {
        var prefix = string.Create(CultureInfo.InvariantCulture, $"{{\"ts\":{baseTs + sequence},\"values\":");
        var written = Encoding.ASCII.GetBytes(prefix, buffer);
        var values = new byte[16 + (5 * 32)];
        var length = TelemetryScenario.WritePayload(values, 5, sequence);
        values.AsSpan(0, length).CopyTo(buffer.AsSpan(written));
        buffer[written + length] = (byte)'}';
        return written + length + 1;
    }

    private async Task WaitUntilAsync(long timestamp, string phase, CancellationToken cancellationToken)
    {
        var total = TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds + w.DowntimeSeconds);
        var start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() < timestamp)
        {
            progress?.Report(new ProgressReport(phase, Stopwatch.GetElapsedTime(start), total, 0, _receiver.Messages, 0));
            var left = (timestamp - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency;
            await Task.Delay(TimeSpan.FromSeconds(Math.Clamp(left, 0.001, 0.25)), cancellationToken);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// The webhook receiver: checks each POST's signature, counts distinct event ids (a second POST of one id is a
    /// duplicate) and, per device, events whose k0 (the device's sequence) is below one already seen.
    /// </summary>
    private sealed class Receiver(byte[] secret)
    {
        private readonly Lock _gate = new();
        private readonly HashSet<Guid> _ids = [];
        private readonly Dictionary<string, long> _last = new(StringComparer.Ordinal);
        private readonly Dictionary<string, long> _perDevice = new(StringComparer.Ordinal);
        private long _events;
        private long _messages;
        private long _posts;
        private long _duplicates;
        private long _outOfOrder;
        private long _badSignatures;

        /// <summary>Distinct events (event ids) received.</summary>
        public long Events { get { lock (_gate) { return _events; } } }

        /// <summary>Messages whose points arrived (k0 values, each device's in order; the platform's own points are not counted).</summary>
        public long Messages { get { lock (_gate) { return _messages; } } }

        public long Posts => Interlocked.Read(ref _posts);

        public long Duplicates { get { lock (_gate) { return _duplicates; } } }

        public long OutOfOrder { get { lock (_gate) { return _outOfOrder; } } }

        public long BadSignatures => Interlocked.Read(ref _badSignatures);

        /// <summary>Messages of the device created last ("bench meter {index}", index = the publishers' count).</summary>
        public long ThirdParty(int index)
        {
            lock (_gate)
            {
                return _perDevice.GetValueOrDefault("bench meter " + index.ToString(CultureInfo.InvariantCulture));
            }
        }

        public async Task<WebApplication> StartAsync(int port, CancellationToken cancellationToken)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port));
            var app = builder.Build();
            app.MapPost("/hook", async (HttpContext context) =>
            {
                var length = (int)(context.Request.ContentLength ?? 0);
                using var buffer = new MemoryStream(length > 0 ? length : 512);
                await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
                Take(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), context.Request.Headers["X-Taihu-Signature"].ToString());
                return Results.Ok();
            });
            await app.StartAsync(cancellationToken);
            return app;
        }

        private void Take(ReadOnlySpan<byte> body, string signature)
        {
            Interlocked.Increment(ref _posts);
            Span<byte> hash = stackalloc byte[32];
            HMACSHA256.HashData(secret, body, hash);
            if (signature != "sha256=" + Convert.ToHexStringLower(hash))
            {
                Interlocked.Increment(ref _badSignatures);
            }

            using var document = JsonDocument.Parse(body.ToArray());
            var root = document.RootElement;
            var id = root.GetProperty("id").GetGuid();
            var device = root.GetProperty("deviceName").GetString()!;
            lock (_gate)
            {
                if (!_ids.Add(id))
                {
                    _duplicates++;
                    return;
                }

                // One event holds a run of a device's messages committed together, each under its own ts.
                foreach (var entry in root.GetProperty("data").EnumerateArray())
                {
                    if (!entry.GetProperty("values").TryGetProperty("k0", out var value) || !value.TryGetInt64(out var k0))
                    {
                        continue;
                    }

                    if (_last.TryGetValue(device, out var last) && k0 <= last)
                    {
                        _outOfOrder++;
                        continue;
                    }

                    _last[device] = k0;
                    _perDevice[device] = _perDevice.GetValueOrDefault(device) + 1;
                    _messages++;
                }

                _events++;
            }
        }
    }
}
