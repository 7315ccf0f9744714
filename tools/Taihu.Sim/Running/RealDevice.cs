using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// What a real device did, read from the MQTT packets passing the proxy both ways: its connections, what it
/// published (how often, how large, on which of ThingsBoard's device topics), what it subscribed to, and what the
/// server delivered to it and it acknowledged. Fed by the proxy's two pumps, so one lock keeps it whole.
/// </summary>
public sealed class MqttWatch
{
    private const string Telemetry = "v1/devices/me/telemetry";
    private const string Attributes = "v1/devices/me/attributes";
    private const string RpcRequest = "v1/devices/me/rpc/request/";
    private const string RpcResponse = "v1/devices/me/rpc/response/";

    private readonly Lock _gate = new();
    private readonly PacketScanner _up = new();
    private readonly PacketScanner _down = new();
    private readonly Queue<long> _lastMinute = new();
    private readonly HashSet<ushort> _telemetryIds = [];
    private readonly HashSet<ushort> _attributeIds = [];
    private readonly HashSet<string> _subscriptions = new(StringComparer.Ordinal);
    private byte _version = 4;

    public int ConnectionsAccepted { get; private set; }

    public long? FirstConnectedAt { get; private set; }

    public int TelemetrySent { get; private set; }

    public int TelemetryAcknowledged { get; private set; }

    public int PublishesSent { get; private set; }

    public int MaxPerMinute { get; private set; }

    public int MaxPayload { get; private set; }

    public int RpcRequests { get; private set; }

    public int RpcResponses { get; private set; }

    public int AttributeUpdates { get; private set; }

    public int AttributeUpdatesAcknowledged { get; private set; }

    /// <summary>SUBSCRIBE packets the device sent, on any of its connections.</summary>
    public int SubscribesSent { get; private set; }

    /// <summary>Whether the broker accepted the device's newest CONNECT (and the connection is not known to be gone).</summary>
    public bool Connected { get; private set; }

    public IReadOnlyCollection<string> Subscriptions
    {
        get
        {
            lock (_gate)
            {
                return [.. _subscriptions];
            }
        }
    }

    public void DeviceSent(ReadOnlySpan<byte> bytes, bool newConnection)
    {
        lock (_gate)
        {
            if (newConnection)
            {
                _up.Reset();
                _down.Reset();
                Connected = false;
            }

            _up.Feed(bytes, OnDevicePacket);
        }
    }

    public void ServerSent(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            _down.Feed(bytes, OnServerPacket);
        }
    }

    /// <summary>The connection ended (the proxy saw it close).</summary>
    public void Closed()
    {
        lock (_gate)
        {
            Connected = false;
        }
    }

    private void OnDevicePacket(byte header, ReadOnlySpan<byte> body)
    {
        switch (header >> 4)
        {
            case 1 when body.Length >= 7:
                // CONNECT: protocol name (2 + n bytes), then the level.
                var nameLength = BinaryPrimitives.ReadUInt16BigEndian(body);
                if (body.Length > 2 + nameLength)
                {
                    _version = body[2 + nameLength];
                }

                break;
            case 3:
                if (!TryPublish(header, body, out var topic, out var id, out var payload))
                {
                    return;
                }

                PublishesSent++;
                MaxPayload = Math.Max(MaxPayload, payload);
                var now = Stopwatch.GetTimestamp();
                _lastMinute.Enqueue(now);
                while (_lastMinute.TryPeek(out var first) && now - first > Stopwatch.Frequency * 60)
                {
                    _lastMinute.Dequeue();
                }

                MaxPerMinute = Math.Max(MaxPerMinute, _lastMinute.Count);
                if (topic == Telemetry)
                {
                    TelemetrySent++;
                    if (id is { } packetId)
                    {
                        _telemetryIds.Add(packetId);
                    }
                    else
                    {
                        // QoS 0: nothing comes back; sent is all there is.
                        TelemetryAcknowledged++;
                    }
                }
                else if (topic.StartsWith(RpcResponse, StringComparison.Ordinal))
                {
                    RpcResponses++;
                }

                break;
            case 4 when body.Length >= 2:
                // PUBACK from the device: for a shared-attribute update the server sent at QoS 1.
                if (_attributeIds.Remove(BinaryPrimitives.ReadUInt16BigEndian(body)))
                {
                    AttributeUpdatesAcknowledged++;
                }

                break;
            case 8 when body.Length >= 2:
                ReadSubscribe(body);
                SubscribesSent++;
                break;
        }
    }

    private void OnServerPacket(byte header, ReadOnlySpan<byte> body)
    {
        switch (header >> 4)
        {
            case 2 when body.Length >= 2:
                // CONNACK: return code (3.1.1) or reason code (5.0) 0 is success.
                if (body[1] == 0)
                {
                    Connected = true;
                    ConnectionsAccepted++;
                    FirstConnectedAt ??= Stopwatch.GetTimestamp();
                }

                break;
            case 3:
                if (!TryPublish(header, body, out var topic, out var id, out _))
                {
                    return;
                }

                if (topic.StartsWith(RpcRequest, StringComparison.Ordinal))
                {
                    RpcRequests++;
                }
                else if (topic == Attributes)
                {
                    AttributeUpdates++;
                    if (id is { } packetId)
                    {
                        _attributeIds.Add(packetId);
                    }
                    else
                    {
                        AttributeUpdatesAcknowledged++;
                    }
                }

                break;
            case 4 when body.Length >= 2:
                if (_telemetryIds.Remove(BinaryPrimitives.ReadUInt16BigEndian(body)) && (body.Length < 3 || body[2] < 0x80))
                {
                    TelemetryAcknowledged++;
                }

                break;
        }
    }

    private static bool TryPublish(byte header, ReadOnlySpan<byte> body, out string topic, out ushort? id, out int payload)
    {
        topic = "";
        id = null;
        payload = 0;
        if (body.Length < 2)
        {
            return false;
        }

        var topicLength = BinaryPrimitives.ReadUInt16BigEndian(body);
        var at = 2 + topicLength;
        if (body.Length < at)
        {
            return false;
        }

        topic = Encoding.UTF8.GetString(body.Slice(2, topicLength));
        if (((header >> 1) & 3) > 0)
        {
            if (body.Length < at + 2)
            {
                return false;
            }

            id = BinaryPrimitives.ReadUInt16BigEndian(body[at..]);
            at += 2;
        }

        payload = body.Length - at;
        return true;
    }

    private void ReadSubscribe(ReadOnlySpan<byte> body)
    {
        var at = 2;
        if (_version == 5)
        {
            if (!FaultProxy.TryReadVarint(body, ref at, out var properties))
            {
                return;
            }

            at += properties;
        }

        while (at + 2 <= body.Length)
        {
            var length = BinaryPrimitives.ReadUInt16BigEndian(body[at..]);
            if (at + 2 + length + 1 > body.Length)
            {
                return;
            }

            _subscriptions.Add(Encoding.UTF8.GetString(body.Slice(at + 2, length)));
            at += 2 + length + 1;
        }
    }

    /// <summary>Cuts a byte stream into MQTT packets (fixed header, remaining length, body).</summary>
    private sealed class PacketScanner
    {
        private byte[] _buffer = new byte[4096];
        private int _length;
        private bool _lost;

        public void Reset()
        {
            _length = 0;
            _lost = false;
        }

        public delegate void PacketHandler(byte header, ReadOnlySpan<byte> body);

        public void Feed(ReadOnlySpan<byte> bytes, PacketHandler onPacket)
        {
            if (_lost)
            {
                return;
            }

            if (_length + bytes.Length > _buffer.Length)
            {
                Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + bytes.Length));
            }

            bytes.CopyTo(_buffer.AsSpan(_length));
            _length += bytes.Length;
            var at = 0;
            while (at < _length)
            {
                var position = at + 1;
                if (!FaultProxy.TryReadVarint(_buffer.AsSpan(0, _length), ref position, out var remaining))
                {
                    if (_length - at > 5)
                    {
                        // Not MQTT (or broken): stop reading this connection rather than guess.
                        _lost = true;
                    }

                    break;
                }

                if (_length - position < remaining)
                {
                    break;
                }

                onPacket(_buffer[at], _buffer.AsSpan(position, remaining));
                at = position + remaining;
            }

            _buffer.AsSpan(at, _length - at).CopyTo(_buffer);
            _length -= at;
        }
    }
}

/// <summary>
/// A real device as the run sees it: not driven by the simulator, only watched through its proxy. Dropping it
/// closes its connection and refuses its next attempts, so that the waits between them show its back-off.
/// </summary>
public sealed class RealDeviceConnection(FleetDefinition fleet, FaultProxy proxy, MqttWatch watch) : ISimDevice
{
    /// <summary>Attempts refused after a drop: three waits to compare.</summary>
    private const int Refused = 2;

    private readonly List<string> _log = [];
    private bool _held;

    public RealDeviceDefinition Definition { get; } = fleet.Real!;

    /// <summary>When the run began waiting for the device (a <see cref="Stopwatch"/> timestamp).</summary>
    public long StartedAt { get; } = Stopwatch.GetTimestamp();

    public FaultProxy Proxy { get; } = proxy;

    public MqttWatch Watch { get; } = watch;

    /// <summary>How each drop ended: the waits between the device's attempts, and whether they show a back-off.</summary>
    public IReadOnlyList<string> Drops
    {
        get
        {
            lock (_log)
            {
                return [.. _log];
            }
        }
    }

    /// <summary>From a drop the run injects until the device is let back in (its refused attempts in between) and has subscribed again.</summary>
    public bool HeldOffline => Volatile.Read(ref _held);

    public bool IsConnected => Watch.Connected && Proxy.Current is { Dead: false, Dropped: false, ServerClosed: false };

    public int ConnectionsLost => Proxy.Current is { ServerClosed: true } ? 1 : 0;

    public int Reconnects => Math.Max(0, Watch.ConnectionsAccepted - 1);

    public int RpcAnswered => Watch.RpcResponses;

    public int AttributeUpdates => Watch.AttributeUpdates;

    /// <summary>Waits for the device to connect (up to its <c>connectWithin</c>); it not doing so is for the report, not an error of the run.</summary>
    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(Definition.ConnectWithin.TotalSeconds * Stopwatch.Frequency);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        while (!IsConnected && Stopwatch.GetTimestamp() < deadline)
        {
            await timer.WaitForNextTickAsync(cancellationToken);
        }
    }

    public Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken) => Task.FromResult(SendResult.NotConnected);

    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => Task.FromResult(SendResult.NotConnected);

    public Task DropAsync(bool reconnect) => DropAndWatchAsync(CancellationToken.None);

    /// <summary>
    /// Closes the device's connection, refuses its next two attempts, and waits (up to a minute) for the third to
    /// be let through; returns how it went: the waits (from the drop to the first attempt, then between attempts),
    /// and "with back-off" when the wait after a refusal grows (by half, to 0.1 s or more) or every wait after a
    /// refusal is a second or more (the first attempt may come at once after a drop, as most devices' does; a wait
    /// includes the time the device took to see the refusal, which on a loaded machine hid a doubling from 1 s);
    /// "without back-off" when the device hammers.
    /// </summary>
    public async Task<string> DropAndWatchAsync(CancellationToken cancellationToken)
    {
        if (Proxy.Current is not { } link || !IsConnected)
        {
            return "not connected";
        }

        var before = Proxy.Attempts.Count;
        var accepted = Watch.ConnectionsAccepted;
        var subscribes = Watch.SubscribesSent;
        Proxy.RefuseNext(Refused);
        var dropped = Stopwatch.GetTimestamp();
        Volatile.Write(ref _held, true);
        FaultProxy.Drop(link);
        var deadline = dropped + (Stopwatch.Frequency * 60);
        using (var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(20)))
        {
            try
            {
                while (Watch.ConnectionsAccepted == accepted && Stopwatch.GetTimestamp() < deadline)
                {
                    await timer.WaitForNextTickAsync(cancellationToken);
                }

                // Back in, the device subscribes again before a call can reach it: until then (or 5 s, for a device
                // that keeps its session and does not) the run still holds it offline. A call made in between cannot
                // reach it and ends 504, counted as timed out (seen once in a loop of the simulator's tests).
                var subscribedBy = Stopwatch.GetTimestamp() + (Stopwatch.Frequency * 5);
                while (Watch.ConnectionsAccepted != accepted && Watch.SubscribesSent == subscribes && Stopwatch.GetTimestamp() < subscribedBy)
                {
                    await timer.WaitForNextTickAsync(cancellationToken);
                }
            }
            finally
            {
                Volatile.Write(ref _held, false);
            }
        }

        var attempts = Proxy.Attempts.Skip(before).ToList();
        var waits = new List<double>();
        var last = dropped;
        foreach (var (at, _) in attempts.Take(Refused + 1))
        {
            waits.Add((double)(at - last) / Stopwatch.Frequency);
            last = at;
        }

        var text = string.Join(", ", waits.Select(w => w.ToString("0.00 s", CultureInfo.InvariantCulture)));
        string outcome;
        if (Watch.ConnectionsAccepted == accepted)
        {
            outcome = $"not reconnected within a minute (attempts after {(text.Length == 0 ? "none" : text)})";
        }
        else if (waits.Count > Refused && ((waits[2] >= 1.5 * waits[1] && waits[2] >= 0.1) || Math.Min(waits[1], waits[2]) >= 1.0))
        {
            outcome = $"reconnected with back-off (waits {text})";
        }
        else
        {
            outcome = $"reconnected without back-off (waits {text})";
        }

        lock (_log)
        {
            _log.Add(outcome);
        }

        return outcome;
    }

    public async ValueTask DisposeAsync() => await Proxy.DisposeAsync();
}
