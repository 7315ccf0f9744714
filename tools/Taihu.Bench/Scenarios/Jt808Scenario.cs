using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using HdrHistogram;
using Taihu.Bench.Measurement;
using Taihu.Protocols.Jt808;

namespace Taihu.Bench.Scenarios;

/// <summary>Options of the jt808 scenario beyond the common ones.</summary>
public sealed record Jt808Options(PlatformTarget Platform, int Port, double IntervalSeconds, double HeartbeatSeconds);

/// <summary>
/// jt808: N JT/T 808 terminals (raw TCP, 2013 frames) on Taihu's JT/T 808 listener. They provision themselves: a
/// device profile of the bench's tenant has the terminals' manufacturer ID as its provision key, so each terminal
/// registers (0x0100, the server creates its device and answers 0x8100 with a code) and authenticates (0x0102).
/// Then each sends a location report (0x0200, with mileage and fuel) every --interval seconds and a heartbeat every
/// --heartbeat seconds, spread evenly over the terminals. The server answers a report with 0x8001 after its points
/// are committed (Ingest:AckAfterCommit), so the latency from report to 0x8001 is the latency to a committed point.
/// </summary>
public sealed class Jt808Scenario(BenchOptions o, Jt808Options j, IProgress<ProgressReport>? progress)
{
    private readonly LongConcurrentHistogram _latency = new(1, 600_000_000, 3);
    private long _acknowledged;
    private long _heartbeatsAcknowledged;
    private long _refused;
    private long _windowStart;
    private long _windowEnd;

    public async Task<BenchResult> RunAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = new Uri(j.Platform.ApiUrl), Timeout = TimeSpan.FromMinutes(2) };
        var tenant = await BenchTenant.CreateAsync(http, j.Platform.AdminUser, j.Platform.AdminPassword, cancellationToken);
        var terminals = new Terminal[o.Clients];
        try
        {
            var key = tenant.RunId[..5].ToUpperInvariant();
            await BenchTenant.SendAsync(http, HttpMethod.Post, tenant.AdminToken, "/api/deviceProfile", new
            {
                name = "bench buses " + tenant.RunId,
                provisionType = "ALLOW_CREATE_NEW_DEVICES",
                profileData = new { provisionConfiguration = new { type = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, provisionDeviceSecret = "unused" } },
            }, cancellationToken);

            var started = Stopwatch.GetTimestamp();
            var connected = 0;
            string? firstError = null;
            using (var gate = new SemaphoreSlim(32))
            {
                var connecting = new Task[o.Clients];
                for (var t = 0; t < o.Clients; t++)
                {
                    var i = t;
                    await gate.WaitAsync(cancellationToken);
                    connecting[i] = Task.Run(async () =>
                    {
                        try
                        {
                            // 12 digits, distinct per run and terminal.
                            var phone = $"1{Math.Abs(tenant.RunId.GetHashCode(StringComparison.Ordinal)) % 100_000:D5}{i:D6}";
                            terminals[i] = await Terminal.ConnectAsync(this, o.Host, j.Port, phone, key, cancellationToken);
                            if (Interlocked.Increment(ref connected) % 100 == 0)
                            {
                                progress?.Report(new ProgressReport("registering terminals", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(1), connected, 0, 0));
                            }
                        }
                        catch (Exception e) when (e is not OperationCanceledException)
                        {
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

            if (firstError is not null)
            {
                throw new InvalidOperationException($"{o.Clients - connected} terminals could not register and authenticate; the first: {firstError}");
            }

            var registerSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            return await MeasureAsync(terminals, registerSeconds, cancellationToken);
        }
        finally
        {
            foreach (var terminal in terminals)
            {
                terminal?.Dispose();
            }

            await tenant.DeleteAsync();
        }
    }

    private async Task<BenchResult> MeasureAsync(Terminal[] terminals, double registerSeconds, CancellationToken cancellationToken)
    {
        var frequency = Stopwatch.Frequency;
        var start = Stopwatch.GetTimestamp();
        _windowStart = start + (long)(o.WarmupSeconds * frequency);
        _windowEnd = _windowStart + (long)(o.DurationSeconds * frequency);
        double? pointsStart = null, pointsEnd = null, allocatedStart = null, allocatedEnd = null;
        ProcessSample? serverStart = null, serverEnd = null, selfStart = null;

        // One scheduler: report k goes to terminal k mod N at start + k * interval / N, so each terminal reports every
        // interval and the reports are spread evenly; heartbeats likewise on their own period.
        var reportStep = j.IntervalSeconds * frequency / terminals.Length;
        var heartbeatStep = j.HeartbeatSeconds * frequency / terminals.Length;
        long reports = 0, heartbeats = 0, sent = 0, late = 0;
        var windowStarted = false;
        while (true)
        {
            var now = Stopwatch.GetTimestamp();
            if (now >= _windowEnd)
            {
                break;
            }

            if (!windowStarted && now >= _windowStart)
            {
                windowStarted = true;
                serverStart = o.BrokerPid is { } pid ? ProcessSampler.Sample(pid) : null;
                selfStart = ProcessSampler.Self();
                pointsStart = o.MetricsUrl is { } url ? await MetricsScraper.ReadAsync(url, "taihu_ingest_points_total", cancellationToken) : null;
                allocatedStart = o.MetricsUrl is { } url2 ? await MetricsScraper.ReadAsync(url2, "dotnet_gc_heap_total_allocated_bytes_total", cancellationToken) : null;
            }

            var nextReport = start + (long)(reports * reportStep);
            var nextHeartbeat = start + (long)((heartbeats + 0.5) * heartbeatStep);
            if (nextReport <= now)
            {
                if (now - nextReport > frequency)
                {
                    late++;
                }

                var terminal = terminals[reports % terminals.Length];
                reports++;
                if (await terminal.SendLocationAsync(now, cancellationToken) && now >= _windowStart)
                {
                    sent++;
                }

                continue;
            }

            if (nextHeartbeat <= now)
            {
                await terminals[heartbeats % terminals.Length].SendHeartbeatAsync(cancellationToken);
                heartbeats++;
                continue;
            }

            // Nothing due: sleep until the next (at least a millisecond; what falls due meanwhile goes out together,
            // so the generator never spins on the cores the server needs).
            var wait = Math.Min(Math.Min(nextReport, nextHeartbeat), _windowEnd) - now;
            await Task.Delay(TimeSpan.FromSeconds(Math.Max((double)wait / frequency, 0.001)), cancellationToken);

            progress?.Report(new ProgressReport(now < _windowStart ? "warming up" : "reporting", Stopwatch.GetElapsedTime(start),
                TimeSpan.FromSeconds(o.WarmupSeconds + o.DurationSeconds), sent, Interlocked.Read(ref _acknowledged), Percentile(99)));
        }

        serverEnd = o.BrokerPid is { } p ? ProcessSampler.Sample(p) : null;
        var selfEnd = ProcessSampler.Self();
        pointsEnd = o.MetricsUrl is { } u ? await MetricsScraper.ReadAsync(u, "taihu_ingest_points_total", cancellationToken) : null;
        allocatedEnd = o.MetricsUrl is { } u2 ? await MetricsScraper.ReadAsync(u2, "dotnet_gc_heap_total_allocated_bytes_total", cancellationToken) : null;

        // What was sent in the window has --drain seconds to be acknowledged.
        var drainEnd = Stopwatch.GetTimestamp() + (long)(o.DrainSeconds * frequency);
        while (Interlocked.Read(ref _acknowledged) < sent && Stopwatch.GetTimestamp() < drainEnd)
        {
            await Task.Delay(20, cancellationToken);
        }

        var acknowledged = Interlocked.Read(ref _acknowledged);
        var seconds = o.DurationSeconds;
        var committed = pointsStart is { } p0 && pointsEnd is { } p1 ? (p1 - p0) / seconds : (double?)null;
        return new BenchResult
        {
            Scenario = "jt808",
            Target = $"{o.Host}:{j.Port}",
            Protocol = "JT/T 808-2013",
            Client = "taihu-bench raw TCP",
            PayloadSize = Terminal.LocationBodyLength,
            OfferedRate = terminals.Length / j.IntervalSeconds,
            DurationSeconds = seconds,
            Publishers = terminals.Length,
            Sent = sent,
            Expected = sent,
            Delivered = acknowledged,
            Lost = sent - acknowledged,
            DeliveredPerSecond = acknowledged / seconds,
            LatencyP50Ms = Percentile(50),
            LatencyP90Ms = Percentile(90),
            LatencyP99Ms = Percentile(99),
            LatencyP999Ms = Percentile(99.9),
            LatencyMaxMs = _latency.TotalCount == 0 ? 0 : _latency.GetMaxValue() / 1000.0,
            BrokerCpuPercent = serverStart is { } s0 && serverEnd is { } s1 ? ProcessSampler.CpuPercent(s0, s1) : null,
            BrokerResidentBytes = serverEnd?.ResidentBytes,
            Connections = terminals.Length,
            PacedMessagesSkipped = late,
            GeneratorCpuPercent = selfStart is { } g0 ? ProcessSampler.CpuPercent(g0, selfEnd) : 0,
            // Everything the server allocated in the window (reports, heartbeats, their commits) per report acknowledged.
            BrokerAllocatedBytesPerDelivered = allocatedStart is { } a0 && allocatedEnd is { } a1 && acknowledged > 0 ? (a1 - a0) / acknowledged : null,
            Note = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"locations every {j.IntervalSeconds} s and heartbeats every {j.HeartbeatSeconds} s per terminal; latency from a report's write to its 0x8001 (sent after the commit); "
                + $"{Interlocked.Read(ref _heartbeatsAcknowledged):N0} heartbeats acknowledged, {Interlocked.Read(ref _refused)} replies with a result other than 0; "
                + $"registration and authentication of all terminals took {registerSeconds:F1} s{(committed is { } c ? $"; {c:N0} points/s committed (taihu_ingest_points_total)" : "")}"),
        };
    }

    private double Percentile(double percentile) => _latency.TotalCount == 0 ? 0 : _latency.GetValueAtPercentile(percentile) / 1000.0;

    private void Acknowledged(long sentAt, long now, byte result)
    {
        if (result != Jt808Results.Ok)
        {
            Interlocked.Increment(ref _refused);
            return;
        }

        if (sentAt >= _windowStart && sentAt < _windowEnd)
        {
            Interlocked.Increment(ref _acknowledged);
            _latency.RecordValue(Math.Max(1, (now - sentAt) * 1_000_000 / Stopwatch.Frequency));
        }
    }

    /// <summary>One terminal: a socket, its serial numbers, and the send times of its reports awaiting their 0x8001.</summary>
    private sealed class Terminal : IDisposable
    {
        public const int LocationBodyLength = 28 + 6 + 4;
        private const int Slots = 64;
        private readonly Jt808Scenario _owner;
        private readonly Socket _socket;
        private readonly Jt808Header _header;
        private readonly long[] _sentAt = new long[Slots];
        private readonly ushort[] _sentSerial = new ushort[Slots];
        private readonly byte[] _body = new byte[LocationBodyLength];
        private readonly SemaphoreSlim _write = new(1, 1);
        private ushort _serial;
        private long _lastSecond;
        private Task _receiving = Task.CompletedTask;

        private Terminal(Jt808Scenario owner, Socket socket, string phone)
        {
            _owner = owner;
            _socket = socket;
            _header = new Jt808Header(0, 0, null, phone, 0, null, null);
        }

        public static async Task<Terminal> ConnectAsync(Jt808Scenario owner, string host, int port, string phone, string manufacturer, CancellationToken cancellationToken)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(host, port, cancellationToken);
            var terminal = new Terminal(owner, socket, phone);
            var reader = new FrameReader(socket);
            var registration = new byte[37];
            BinaryPrimitives.WriteUInt16BigEndian(registration, 32);
            BinaryPrimitives.WriteUInt16BigEndian(registration.AsSpan(2), 320);
            System.Text.Encoding.ASCII.GetBytes(manufacturer, registration.AsSpan(4, 5));
            "BENCH-T808"u8.CopyTo(registration.AsSpan(9));
            await terminal.SendAsync(Jt808MessageIds.Registration, registration, cancellationToken);
            var (id, body) = await reader.ReadAsync(cancellationToken);
            if (id != Jt808MessageIds.RegistrationReply || body.Length < 4 || body[2] != 0)
            {
                throw new InvalidOperationException($"Registration of {phone} was answered with 0x{id:X4} result {(body.Length > 2 ? body[2] : -1)}.");
            }

            await terminal.SendAsync(Jt808MessageIds.Authentication, body.AsMemory(3).ToArray(), cancellationToken);
            (id, body) = await reader.ReadAsync(cancellationToken);
            if (id != Jt808MessageIds.PlatformReply || body.Length < 5 || body[4] != 0)
            {
                throw new InvalidOperationException($"Authentication of {phone} failed.");
            }

            terminal._receiving = terminal.ReceiveAsync(reader);
            return terminal;
        }

        public async Task<bool> SendLocationAsync(long now, CancellationToken cancellationToken)
        {
            var serial = _serial;
            var slot = serial % Slots;
            _sentSerial[slot] = serial;
            Volatile.Write(ref _sentAt[slot], now);
            // A terminal's fix times go forward by whole seconds (the BCD time has no finer unit): two reports in one
            // second would be one point per key, the second an update of a stored minute (recomputed in the store).
            var second = Math.Max(DateTimeOffset.UtcNow.ToUnixTimeSeconds(), _lastSecond + 1);
            _lastSecond = second;
            WriteLocation(_body, serial, DateTimeOffset.FromUnixTimeSeconds(second));
            return await SendAsync(Jt808MessageIds.Location, _body, cancellationToken);
        }

        public Task<bool> SendHeartbeatAsync(CancellationToken cancellationToken) => SendAsync(Jt808MessageIds.Heartbeat, [], cancellationToken);

        private async Task<bool> SendAsync(ushort id, byte[] body, CancellationToken cancellationToken)
        {
            await _write.WaitAsync(cancellationToken);
            try
            {
                var frame = Jt808Framing.Encode([.. (_header with { MessageId = id, Serial = _serial++ }).Encode(body.Length), .. body]);
                await _socket.SendAsync(frame, SocketFlags.None, cancellationToken);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
            finally
            {
                _write.Release();
            }
        }

        private static void WriteLocation(byte[] body, ushort serial, DateTimeOffset time)
        {
            // Around Wuxi, moving a little each report; status: ACC on, positioned.
            BinaryPrimitives.WriteUInt32BigEndian(body, 0);
            BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(4), 0x3);
            BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(8), 31_490_000u + serial);
            BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(12), 120_310_000u + serial);
            BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(16), 5);
            BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(18), (ushort)(300 + (serial % 200)));
            BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(20), (ushort)(serial % 360));
            var local = time.ToOffset(TimeSpan.FromHours(8));
            Span<int> parts = [local.Year % 100, local.Month, local.Day, local.Hour, local.Minute, local.Second];
            for (var i = 0; i < 6; i++)
            {
                body[22 + i] = (byte)(((parts[i] / 10) << 4) | (parts[i] % 10));
            }

            // Extras: mileage (0x01, 1/10 km) and fuel (0x02, 1/10 L).
            body[28] = 0x01;
            body[29] = 4;
            BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(30), 100_000u + serial);
            body[34] = 0x02;
            body[35] = 2;
            BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(36), 500);
        }

        private async Task ReceiveAsync(FrameReader reader)
        {
            try
            {
                while (true)
                {
                    var (id, body) = await reader.ReadAsync(CancellationToken.None);
                    var now = Stopwatch.GetTimestamp();
                    if (id != Jt808MessageIds.PlatformReply || body.Length < 5)
                    {
                        continue;
                    }

                    var serial = BinaryPrimitives.ReadUInt16BigEndian(body);
                    var answered = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(2));
                    if (answered == Jt808MessageIds.Heartbeat)
                    {
                        Interlocked.Increment(ref _owner._heartbeatsAcknowledged);
                    }
                    else if (answered == Jt808MessageIds.Location && _sentSerial[serial % Slots] == serial)
                    {
                        _owner.Acknowledged(Volatile.Read(ref _sentAt[serial % Slots]), now, body[4]);
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException or OperationCanceledException)
            {
            }
        }

        public void Dispose()
        {
            _socket.Dispose();
            _write.Dispose();
        }
    }

    /// <summary>Reads whole frames from a socket with the codec.</summary>
    private sealed class FrameReader(Socket socket)
    {
        private readonly byte[] _buffer = new byte[8192];
        private readonly byte[] _message = new byte[Jt808Framing.MaxUnescapedLength];
        private int _start;
        private int _end;

        public async Task<(ushort Id, byte[] Body)> ReadAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                var status = Jt808Framing.TryRead(_buffer.AsSpan(_start, _end - _start), _message, out var length, out var consumed, out _);
                _start += consumed;
                if (status == Jt808ReadStatus.Frame && Jt808HeaderFields.TryRead(_message.AsSpan(0, length), out var header) == Jt808HeaderError.None)
                {
                    return (header.MessageId, _message.AsSpan(header.Length, header.BodyLength).ToArray());
                }

                if (status != Jt808ReadStatus.NeedMore)
                {
                    continue;
                }

                if (_start > 0)
                {
                    _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
                    _end -= _start;
                    _start = 0;
                }

                var n = await socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken);
                if (n == 0)
                {
                    throw new EndOfStreamException("The server closed the connection.");
                }

                _end += n;
            }
        }
    }
}
