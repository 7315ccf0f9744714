using System.Buffers.Text;
using System.Diagnostics;
using Taihu.Bench.Client;
using Taihu.Bench.Measurement;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// telemetry: N devices send ThingsBoard telemetry (<c>{"k0":v,..}</c> on <c>v1/devices/me/telemetry</c>) to a
/// Taihu server, each with its own access token, and the run counts what the server acknowledged. With
/// <c>Ingest:AckAfterCommit</c> on, an acknowledgement means the points are committed, so acknowledged messages
/// times keys is the durable ingest rate. The devices are created through the management API first (a tenant of
/// their own, deleted at the end).
/// </summary>
public sealed class TelemetryScenario(BenchOptions o, TelemetryOptions t, IProgress<ProgressReport>? progress)
{
    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(t.ApiUrl), Timeout = TimeSpan.FromMinutes(2) };
        var tenant = await BenchTenant.CreateAsync(http, t.AdminUser, t.AdminPassword, cancellationToken);
        var runId = tenant.RunId;
        if (t.Rules)
        {
            var profile = await BenchTenant.SendAsync(http, HttpMethod.Get, tenant.AdminToken, "/api/deviceProfileInfo/default", null, cancellationToken);
            using var rules = System.Text.Json.JsonDocument.Parse(AlarmRules);
            await BenchTenant.SendAsync(http, HttpMethod.Post, tenant.AdminToken, "/api/deviceProfile", new
            {
                id = new { entityType = "DEVICE_PROFILE", id = profile.GetProperty("id").GetProperty("id").GetString() },
                name = profile.GetProperty("name").GetString(),
                profileData = new { alarms = rules.RootElement },
            }, cancellationToken);
        }

        string[] ids;
        string[] tokens;
        try
        {
            // The last ThirdPartyDevices devices are the third-party publisher's (mosquitto_pub, started by the script).
            (ids, tokens) = await tenant.CreateDevicesAsync(o.Clients + t.ThirdPartyDevices, progress, cancellationToken);
        }
        catch
        {
            await tenant.DeleteAsync();
            throw;
        }

        var clients = new BenchClient[o.Clients];
        var failures = 0;
        try
        {
            string? firstError = null;
            using (var gate = new SemaphoreSlim(64))
            {
                var connecting = new Task[o.Clients];
                for (var d = 0; d < o.Clients; d++)
                {
                    var i = d;
                    await gate.WaitAsync(cancellationToken);
                    connecting[i] = Task.Run(async () =>
                    {
                        try
                        {
                            var target = o.Target with { UserName = tokens[i], Password = null };
                            var client = await BenchClient.OpenAsync(target, o.MaxInflight, cancellationToken);
                            clients[i] = client;
                            var code = await client.ConnectAsync($"{runId}-device-{i}", target, 0, true, cancellationToken);
                            if (code != ReasonCode.Success)
                            {
                                throw new InvalidOperationException($"CONNACK {code} for device {i}");
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
                throw new InvalidOperationException($"{failures} devices could not connect; the first: {firstError}");
            }

            if (t.ThirdPartyTokenFile is { } file)
            {
                // One token a line; the script starts one mosquitto_pub per line once the file is there.
                await File.WriteAllLinesAsync(file + ".tmp", tokens[o.Clients..], cancellationToken);
                File.Move(file + ".tmp", file, overwrite: true);
            }

            var result = await MeasureAsync(clients, cancellationToken);
            if (t.ThirdPartyDevices == 0 || !t.Rules)
            {
                return result;
            }

            var raised = await ThirdPartyAlarmsAsync(http, tenant.AdminToken, ids[o.Clients..], cancellationToken);
            return result with
            {
                Note = result.Note + string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"; third-party publisher (mosquitto_pub): {t.ThirdPartyDevices} devices, {raised} of them raised their alarm"),
            };
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

            await tenant.DeleteAsync();
        }
    }

    /// <summary>
    /// How many of the third party's devices have an alarm (with --rules its k0 crosses the Sequence rule's
    /// threshold); waits up to 20 s for the ones still publishing or whose alarm is on its way.
    /// </summary>
    private static async Task<int> ThirdPartyAlarmsAsync(HttpClient http, string adminToken, string[] deviceIds, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (20 * Stopwatch.Frequency);
        var raised = new bool[deviceIds.Length];
        var count = 0;
        while (true)
        {
            for (var i = 0; i < deviceIds.Length; i++)
            {
                if (!raised[i])
                {
                    var page = await BenchTenant.SendAsync(http, HttpMethod.Get, adminToken, $"/api/alarm/DEVICE/{deviceIds[i]}?pageSize=10&page=0", null, cancellationToken);
                    if (page.GetProperty("data").GetArrayLength() > 0)
                    {
                        raised[i] = true;
                        count++;
                    }
                }
            }

            if (count == deviceIds.Length || Stopwatch.GetTimestamp() > deadline)
            {
                return count;
            }

            await Task.Delay(500, cancellationToken);
        }
    }

    private async Task<BenchResult> MeasureAsync(BenchClient[] clients, CancellationToken cancellationToken)
    {
        var topic = "v1/devices/me/telemetry"u8.ToArray();
        var qos = (QoS)o.QoS;
        var start = Stopwatch.GetTimestamp();
        var windowStart = start + (long)(o.WarmupSeconds * Stopwatch.Frequency);
        var windowEnd = windowStart + (long)(o.DurationSeconds * Stopwatch.Frequency);
        var perDevice = o.Rate / clients.Length;
        long sent = 0;
        var publishing = new Task[clients.Length];
        for (var d = 0; d < clients.Length; d++)
        {
            var index = d;
            publishing[d] = Task.Run(async () =>
            {
                var client = clients[index];
                var buffer = new byte[16 + (t.Keys * 32)];
                // Small bursts: a device waiting for each acknowledgement must still notice the window's end.
                var pacer = RateController.ForDevice(perDevice, start, Stopwatch.Frequency, index, clients.Length, maxBurst: perDevice == 0 ? 4 : 100);
                // With rules, one device in 100 raises an alarm (at k0 = 20), the starts staggered over 40 messages so
                // that the alarms come spread out rather than in one instant; the others' values never reach it.
                long offset = !t.Rules ? 0 : index % 100 == 0 ? -(index / 100 % 40) : -1_000_000_000;
                long sequence = 0;
                while (Stopwatch.GetTimestamp() < windowEnd && !cancellationToken.IsCancellationRequested)
                {
                    var now = Stopwatch.GetTimestamp();
                    var due = pacer.Due(now, sequence);
                    if (due == 0)
                    {
                        await pacer.WaitForNextAsync(sequence, cancellationToken);
                        continue;
                    }

                    for (var n = 0; n < due; n++)
                    {
                        var length = WritePayload(buffer, t.Keys, offset + sequence++);
                        await client.PublishRawAsync(topic, buffer.AsMemory(0, length), qos, flush: false, cancellationToken);
                        if (Stopwatch.GetTimestamp() >= windowStart)
                        {
                            Interlocked.Increment(ref sent);
                        }
                    }

                    await client.FlushAsync(cancellationToken);
                }
            }, cancellationToken);
        }

        // Everything is sampled at the window's edges from here, the same way for the broker, the server's
        // committed-points counter and the acknowledgements the devices received.
        ProcessSample? brokerStart = null;
        ProcessSample? brokerEnd = null;
        ProcessSample? selfStart = null;
        ProcessSample? selfEnd = null;
        double? pointsStart = null;
        double? pointsEnd = null;
        double? allocatedStart = null;
        double? allocatedEnd = null;
        long acknowledgedStart = 0;
        long acknowledgedEnd = 0;
        long windowStarted = 0;
        long windowEnded = 0;
        var all = Task.WhenAll(publishing);
        while (!all.IsCompleted)
        {
            var now = Stopwatch.GetTimestamp();
            var wait = windowStarted == 0 ? windowStart - now : windowEnded == 0 ? windowEnd - now : Stopwatch.Frequency / 4;
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(Math.Clamp((double)wait / Stopwatch.Frequency, 0.001, 0.25)), cancellationToken));
            now = Stopwatch.GetTimestamp();
            long acked = 0;
            foreach (var client in clients)
            {
                acked += client.Acknowledged;
            }

            if (windowStarted == 0 && now >= windowStart)
            {
                windowStarted = now;
                acknowledgedStart = acked;
                brokerStart = o.BrokerPid is { } pid ? ProcessSampler.Sample(pid) : null;
                selfStart = ProcessSampler.Self();
                pointsStart = o.MetricsUrl is { } url ? await MetricsScraper.ReadAsync(url, "taihu_ingest_points_total", cancellationToken) : null;
                allocatedStart = o.MetricsUrl is { } url2 ? await MetricsScraper.ReadAsync(url2, MetricsScraper.AllocatedBytesMetric, cancellationToken) : null;
            }
            else if (windowStarted != 0 && windowEnded == 0 && now >= windowEnd)
            {
                windowEnded = now;
                acknowledgedEnd = acked;
                brokerEnd = o.BrokerPid is { } pid ? ProcessSampler.Sample(pid) : null;
                selfEnd = ProcessSampler.Self();
                pointsEnd = o.MetricsUrl is { } url ? await MetricsScraper.ReadAsync(url, "taihu_ingest_points_total", cancellationToken) : null;
                allocatedEnd = o.MetricsUrl is { } url2 ? await MetricsScraper.ReadAsync(url2, MetricsScraper.AllocatedBytesMetric, cancellationToken) : null;
            }

            progress?.Report(new ProgressReport(now < windowStart ? "warming up" : "publishing", Stopwatch.GetElapsedTime(start),
                TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds), Interlocked.Read(ref sent), acked, 0));
        }

        await all;
        long refused = 0;
        foreach (var client in clients)
        {
            refused += client.Refused;
        }

        if (windowEnded == 0)
        {
            throw new InvalidOperationException("The publishers stopped before the measurement window ended.");
        }

        var acknowledged = acknowledgedEnd - acknowledgedStart;
        var seconds = (double)(windowEnded - windowStarted) / Stopwatch.Frequency;
        var committed = pointsStart is { } p0 && pointsEnd is { } p1 ? (p1 - p0) / seconds : (double?)null;
        double? brokerCpu = null;
        double? perMillion = null;
        if (brokerStart is { } b0 && brokerEnd is { } b1)
        {
            brokerCpu = ProcessSampler.CpuPercent(b0, b1);
            perMillion = (b1.CpuTime - b0.CpuTime).TotalSeconds / Math.Max(1, acknowledged) * 1_000_000;
        }

        var pointsPerSecond = acknowledged * t.Keys / seconds;
        return new BenchResult
        {
            Scenario = "telemetry",
            Target = $"{o.Host}:{o.Port}",
            Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
            QoS = o.QoS,
            PayloadSize = WritePayload(new byte[16 + (t.Keys * 32)], t.Keys, 0),
            OfferedRate = o.Rate,
            DurationSeconds = seconds,
            Publishers = clients.Length,
            Sent = Interlocked.Read(ref sent),
            Expected = Interlocked.Read(ref sent),
            Delivered = acknowledged,
            Lost = refused,
            DeliveredPerSecond = acknowledged / seconds,
            BrokerCpuPercent = brokerCpu,
            BrokerCpuSecondsPerMillion = perMillion,
            BrokerResidentBytes = brokerEnd?.ResidentBytes,
            // Everything the server allocated in the window (the messages, their commits, rules) per message acknowledged.
            BrokerAllocatedBytesPerDelivered = allocatedStart is { } a0 && allocatedEnd is { } a1 && acknowledged > 0 ? (a1 - a0) / acknowledged : null,
            GeneratorCpuPercent = selfStart is { } s0 && selfEnd is { } s1 ? ProcessSampler.CpuPercent(s0, s1) : 0,
            Connections = clients.Length,
            Note = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{t.Keys} keys per message: {pointsPerSecond:N0} points/s acknowledged{(committed is { } c ? $", {c:N0} points/s committed by the server (taihu_ingest_points_total)" : "")}; 'delivered' counts acknowledged messages, 'lost' refused ones"),
        };
    }

    /// <summary>
    /// Three alarm rules as a city's profile might have them, evaluated on every message: k0 (the message's sequence
    /// number) raises "Sequence" from 20 to 22 and clears it after, so each device that gets there (one in 100, see
    /// the publishers) raises and clears one alarm in a run (what the commit-to-alarm delay is measured on; a range, because two messages of one device stamped in
    /// the same millisecond are one point per key, the later value winning, as in the store); a DURATION rule and a REPEATING rule whose conditions
    /// never hold (k1 and k3 stay below 110, k2 never goes negative) are evaluated on every point and raise nothing.
    /// </summary>
    public const string AlarmRules = """
        [{"id": "sequence", "alarmType": "Sequence", "createRules": {"MAJOR": {"condition": {"condition": [
            {"key": {"type": "TIME_SERIES", "key": "k0"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "GREATER_OR_EQUAL", "value": {"defaultValue": 20}}},
            {"key": {"type": "TIME_SERIES", "key": "k0"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": {"defaultValue": 22}}}],
            "spec": {"type": "SIMPLE"}}}},
          "clearRule": {"condition": {"condition": [
            {"key": {"type": "TIME_SERIES", "key": "k0"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 22}}}],
            "spec": {"type": "SIMPLE"}}}},
         {"id": "sustained", "alarmType": "Sustained", "createRules": {"MINOR": {"condition": {"condition": [
            {"key": {"type": "TIME_SERIES", "key": "k3"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 110}}}],
            "spec": {"type": "DURATION", "unit": "SECONDS", "predicate": {"defaultValue": 30}}}}}},
         {"id": "spiky", "alarmType": "Spiky", "createRules": {"WARNING": {"condition": {"condition": [
            {"key": {"type": "TIME_SERIES", "key": "k2"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 0}}},
            {"key": {"type": "TIME_SERIES", "key": "k1"}, "valueType": "NUMERIC", "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 110}}}],
            "spec": {"type": "REPEATING", "predicate": {"defaultValue": 3}}}}}}]
        """;

    /// <summary>Writes <c>{"k0":v,"k1":v,..}</c> with changing values; returns the length.</summary>
    internal static int WritePayload(Span<byte> buffer, int keys, long sequence)
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
            Utf8Formatter.TryFormat(k, buffer[position..], out var written);
            position += written;
            buffer[position++] = (byte)'"';
            buffer[position++] = (byte)':';
            // Alternate integers and decimals, as meters send them.
            if (k % 2 == 0)
            {
                Utf8Formatter.TryFormat(sequence + k, buffer[position..], out written);
            }
            else
            {
                Utf8Formatter.TryFormat(((sequence % 1000) / 10.0) + k, buffer[position..], out written);
            }

            position += written;
        }

        buffer[position++] = (byte)'}';
        return position;
    }
}

/// <summary>Options of the telemetry scenario beyond the common ones.</summary>
public sealed record TelemetryOptions(string ApiUrl, string AdminUser, string AdminPassword, int Keys)
{
    /// <summary>Put the devices' profile under <see cref="TelemetryScenario.AlarmRules"/> before they publish.</summary>
    public bool Rules { get; init; }

    /// <summary>Devices created beyond the bench's own for a third-party publisher; their tokens go to <see cref="ThirdPartyTokenFile"/>.</summary>
    public int ThirdPartyDevices { get; init; }

    /// <summary>A file to write the third party's access tokens to, one a line, once the bench's devices are connected.</summary>
    public string? ThirdPartyTokenFile { get; init; }
}
