using System.Diagnostics.Metrics;
using Taihu.Mqtt;

namespace Taihu.Broker;

/// <summary>
/// The broker's counters, on the "Taihu.Broker" meter (exported by the host, e.g. to Prometheus), and the same
/// totals as plain fields for $SYS.
/// </summary>
public sealed class BrokerMetrics : IDisposable
{
    public const string MeterName = "Taihu.Broker";

    private readonly Meter _meter;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _connectionsAccepted;
    private readonly Counter<long> _publishersHeldBack;
    private readonly Counter<long> _readingPaused;
    private readonly Counter<long> _connectionsRefused;
    private readonly Counter<long> _rateLimited;
    private readonly Histogram<double> _connectDuration;
    private long _connected;
    private long _totalMessagesReceived;
    private long _totalMessagesSent;
    private long _totalBytesReceived;
    private long _totalBytesSent;
    private long _totalDropped;
    private long _totalHeldBack;
    private long _totalReadingPaused;
    private long _publishReceived;
    private long _publishSent;

    public BrokerMetrics(IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        // Counted on every packet: read from the plain totals when exported, so that the hot path pays one
        // interlocked add and not a call through every metrics listener (the exporter's aggregation showed in the
        // profile of idle connections pinging, docs/benchmarks.md).
        _meter.CreateObservableCounter("taihu.mqtt.packets.received", () => Volatile.Read(ref _totalMessagesReceived), "{packet}", "MQTT packets received from clients.");
        _meter.CreateObservableCounter("taihu.mqtt.packets.sent", () => Volatile.Read(ref _totalMessagesSent), "{packet}", "MQTT packets sent to clients.");
        _meter.CreateObservableCounter("taihu.mqtt.bytes.received", () => Volatile.Read(ref _totalBytesReceived), "By", "Bytes received from MQTT clients.");
        _meter.CreateObservableCounter("taihu.mqtt.bytes.sent", () => Volatile.Read(ref _totalBytesSent), "By", "Bytes sent to MQTT clients.");
        _dropped = _meter.CreateCounter<long>("taihu.mqtt.messages.dropped", "{message}", "Application messages dropped, by reason.");
        _connectionsAccepted = _meter.CreateCounter<long>("taihu.mqtt.connections.accepted", "{connection}", "Network connections accepted.");
        _publishersHeldBack = _meter.CreateCounter<long>("taihu.mqtt.publishers.held_back", "{wait}", "Times a publisher was held back because a subscriber's queue was full.");
        _readingPaused = _meter.CreateCounter<long>("taihu.mqtt.reading.paused", "{pause}", "Times reading from a connection stopped because its outbound queue was full.");
        _connectionsRefused = _meter.CreateCounter<long>("taihu.mqtt.connections.refused", "{connection}", "Connections closed before CONNECT was accepted by the decoder, by reason.");
        _rateLimited = _meter.CreateCounter<long>("taihu.mqtt.connections.rate_limited", "{connection}", "Connections ended for going over a publish rate limit, by limit (messages or bytes).");
        _connectDuration = _meter.CreateHistogram("taihu.mqtt.connect.duration", "ms",
            "Time to accept a client: from its connection's opening (from=open) and from its CONNECT (from=connect) to the CONNACK that accepted it.", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] });
        _meter.CreateObservableUpDownCounter("taihu.mqtt.connections", () => Volatile.Read(ref _connected), "{connection}", "Clients connected now.");
        _meter.CreateObservableCounter("taihu.mqtt.publish.received", () => Volatile.Read(ref _publishReceived), "{message}", "PUBLISH packets received from clients.");
        _meter.CreateObservableCounter("taihu.mqtt.publish.sent", () => Volatile.Read(ref _publishSent), "{message}", "PUBLISH packets sent to clients.");
    }

    public long Connected => Volatile.Read(ref _connected);
    public long MessagesReceived => Volatile.Read(ref _totalMessagesReceived);
    public long MessagesSent => Volatile.Read(ref _totalMessagesSent);
    public long BytesReceived => Volatile.Read(ref _totalBytesReceived);
    public long BytesSent => Volatile.Read(ref _totalBytesSent);
    public long Dropped => Volatile.Read(ref _totalDropped);
    public long PublishReceived => Volatile.Read(ref _publishReceived);
    public long PublishSent => Volatile.Read(ref _publishSent);

    internal void ConnectionAccepted() => _connectionsAccepted.Add(1);

    /// <summary>Times a publisher waited for room in a subscriber's full queue (a total, for tests and $SYS).</summary>
    public long PublishersHeldBack => Volatile.Read(ref _totalHeldBack);

    /// <summary>Times a connection's reading stopped because its outbound queue was full.</summary>
    public long ReadingPausedCount => Volatile.Read(ref _totalReadingPaused);

    internal void ReadingPaused()
    {
        Interlocked.Increment(ref _totalReadingPaused);
        _readingPaused.Add(1);
    }

    internal void PublisherHeldBack()
    {
        Interlocked.Increment(ref _totalHeldBack);
        _publishersHeldBack.Add(1);
    }

    internal void ConnectionRefused(string reason) => _connectionsRefused.Add(1, new KeyValuePair<string, object?>("reason", reason));

    internal void RateLimited(string limit) => _rateLimited.Add(1, new KeyValuePair<string, object?>("limit", limit));

    internal void ClientConnected() => Interlocked.Increment(ref _connected);

    /// <summary>A client accepted: the milliseconds from its connection's opening and from its CONNECT to the CONNACK.</summary>
    internal void ConnectAccepted(double fromOpen, double fromConnect)
    {
        if (_connectDuration.Enabled)
        {
            _connectDuration.Record(fromOpen, new KeyValuePair<string, object?>("from", "open"));
            _connectDuration.Record(fromConnect, new KeyValuePair<string, object?>("from", "connect"));
        }
    }

    internal void ClientDisconnected() => Interlocked.Decrement(ref _connected);

    internal void PacketReceived(bool isPublish)
    {
        Interlocked.Increment(ref _totalMessagesReceived);
        if (isPublish)
        {
            Interlocked.Increment(ref _publishReceived);
        }
    }

    internal void PacketsSent(int packets, int publishes)
    {
        Interlocked.Add(ref _totalMessagesSent, packets);
        Interlocked.Add(ref _publishSent, publishes);
    }

    internal void Received(long bytes)
    {
        Interlocked.Add(ref _totalBytesReceived, bytes);
    }

    internal void Sent(long bytes)
    {
        Interlocked.Add(ref _totalBytesSent, bytes);
    }

    internal void MessageDropped(string reason)
    {
        Interlocked.Increment(ref _totalDropped);
        _dropped.Add(1, new KeyValuePair<string, object?>("reason", reason));
    }

    public void Dispose() => _meter.Dispose();
}

/// <summary>Reasons a message is dropped, as metric tags.</summary>
internal static class DropReasons
{
    public const string QueueFull = "queue_full";
    public const string QueueBytesFull = "queue_bytes_full";
    public const string OutboundQueueFull = "outbound_queue_full";
    public const string Expired = "expired";
    public const string TooLargeForClient = "too_large_for_client";
    public const string NoSubscribers = "no_subscribers";
    public const string NotAuthorized = "not_authorized";
    public const string RetainedLimit = "retained_limit";
    public const string RateLimited = "rate_limited";
}

/// <summary>Reasons a connection is closed before its CONNECT is accepted, as metric tags.</summary>
internal static class RefusalReasons
{
    /// <summary>The first packet's type, from its first byte, is not CONNECT.</summary>
    public const string FirstPacketNotConnect = "first_packet_not_connect";

    /// <summary>The first packet's fixed header announces more than Broker:MaximumConnectPacketSize.</summary>
    public const string ConnectTooLarge = "connect_too_large";

    /// <summary>The CONNECT asks for a protocol version the broker does not speak.</summary>
    public const string UnsupportedProtocolVersion = "unsupported_protocol_version";

    /// <summary>The first packet is malformed (its remaining length, or the body of CONNECT).</summary>
    public const string MalformedConnect = "malformed_connect";

    public static string For(MqttProtocolException exception) => exception.ReasonCode switch
    {
        ReasonCode.PacketTooLarge => ConnectTooLarge,
        ReasonCode.UnsupportedProtocolVersion => UnsupportedProtocolVersion,
        _ when exception.PacketType != PacketType.Connect => FirstPacketNotConnect,
        _ => MalformedConnect,
    };
}
