using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Logging;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Topics;

namespace Taihu.Broker;

/// <summary>Something to write to a connection: a control packet, or one delivery of an application message.</summary>
internal readonly struct OutboundItem
{
    public OutboundItem(MqttPacket packet)
    {
        Packet = packet;
    }

    public OutboundItem(BrokerMessage message, QoS qos, bool retain, bool dup, ushort packetId, List<uint>? subscriptionIds)
    {
        Message = message;
        QoS = qos;
        Retain = retain;
        Dup = dup;
        PacketId = packetId;
        SubscriptionIds = subscriptionIds;
    }

    /// <summary>An acknowledgement without properties (PUBACK, PUBREC, PUBREL, PUBCOMP), carried without an object.</summary>
    public OutboundItem(PacketType ackType, ushort packetId, ReasonCode reasonCode)
    {
        AckType = ackType;
        PacketId = packetId;
        AckReason = reasonCode;
    }

    public MqttPacket? Packet { get; }
    public BrokerMessage? Message { get; }
    /// <summary>For an acknowledgement item, its packet type; otherwise Reserved.</summary>
    public PacketType AckType { get; }
    public ReasonCode AckReason { get; }
    public QoS QoS { get; }
    public bool Retain { get; }
    public bool Dup { get; }
    public ushort PacketId { get; }
    public List<uint>? SubscriptionIds { get; }
}

/// <summary>
/// The protocol state machine of one client connection. It does no I/O: the transport feeds it decoded packets
/// (<see cref="HandleAsync"/>) and drains what it has to send (<see cref="Outbound"/>, encoded by
/// <see cref="WriteOutbound"/>), and tells it when the socket is gone (<see cref="OnTransportClosed"/>).
/// Deliveries from other connections arrive on other threads through the session and the outbound queue.
/// </summary>
public sealed partial class MqttChannel : ISessionOutput
{
    private enum State
    {
        AwaitingConnect,
        Authenticating,
        Connected,
        Closed,
    }

    private readonly MqttBroker _broker;
    private readonly OutboundQueue _outbound = new();
    private IChannelTransport? _transport;
    private readonly long _id;
    private readonly long _openedAt;
    private long _connectAt; // when the CONNECT came (a TimeProvider timestamp)
    private State _state;
    private int _closed;
    private int _detached;
    private bool _suppressWill;
    private long _lastActivity;
    // CONNECT is kept only until CONNACK; afterwards only its will, to keep an idle connection small.
    private ConnectPacket? _connect;
    private WillMessage? _will;
    private MqttSession? _session;
    private ClientIdentity _identity = ClientIdentity.Anonymous;
    private ushort _keepAlive;
    private uint _connectSessionExpiry;
    private int _clientReceiveMaximum = 65_535;
    private int _clientMaximumPacketSize = int.MaxValue;
    private int _clientTopicAliasMaximum;
    private bool _requestProblemInformation = true;
    private Dictionary<ushort, string>? _inboundAliases;
    private Dictionary<string, ushort>? _outboundAliases;
    private int _authStep;
    private int _pendingIncoming;
    // Reused by the sender for every outgoing PUBLISH; created on first use so idle connections do not carry them.
    private PublishPacket? _scratchPublish;
    private MqttProperties? _scratchProperties;
    private PublishPacket? _reusablePublish;
    // Null unless this connection has a publish rate limit (set at CONNECT).
    private PublishRateLimiter? _rateLimiter;

    public MqttChannel(MqttBroker broker, EndPoint? remoteEndPoint, X509Certificate2? clientCertificate)
    {
        ArgumentNullException.ThrowIfNull(broker);
        _broker = broker;
        RemoteEndPoint = remoteEndPoint;
        ClientCertificate = clientCertificate;
        Reader = new PacketReader
        {
            MaximumPacketSize = broker.Options.MaximumPacketSize,
            AwaitingConnect = true,
            MaximumConnectPacketSize = broker.Options.MaximumConnectPacketSize,
            ReuseAcknowledgements = true,
        };
        _openedAt = broker.Time.GetTimestamp();
        _lastActivity = _openedAt;
        Accepted = broker.TryRegister(this, out _id);
    }

    /// <summary>False when the broker refused the connection (too many): close it at once.</summary>
    public bool Accepted { get; }

    public EndPoint? RemoteEndPoint { get; }
    public X509Certificate2? ClientCertificate { get; }

    /// <summary>
    /// The PUBLISH object the decoder fills for every incoming publish on this connection, so that decoding
    /// allocates nothing beyond the payload. Safe because packets are handled one at a time and nothing keeps the
    /// packet past its handling (routing copies what it needs into a <see cref="BrokerMessage"/>). Made with the
    /// decoder's topic cache on the first PUBLISH: a connection that never publishes carries neither.
    /// </summary>
    public PublishPacket ReusablePublish => _reusablePublish ?? CreateReusablePublish();

    private PublishPacket CreateReusablePublish()
    {
        Reader.TopicCache ??= new TopicNameCache();
        return _reusablePublish = new PublishPacket();
    }

    /// <summary>The decoder for this connection; its version follows CONNECT.</summary>
    public PacketReader Reader { get; }

    public ProtocolVersion Version { get; private set; }
    public string? ClientId { get; private set; }
    public ClientIdentity Identity => _identity;
    public bool IsConnected => _state == State.Connected;

    /// <summary>The session this connection serves, once CONNECT is accepted.</summary>
    internal MqttSession? Session => _session;

    /// <summary>Connects the channel to the transport that sends what it queues and reads what it handles.</summary>
    public void AttachTransport(IChannelTransport transport) => _transport = transport;

    /// <summary>True once the connection is closing; nothing more is queued.</summary>
    public bool IsClosing => Volatile.Read(ref _closed) != 0;

    /// <summary>QoS 1 and 2 messages this client may have unacknowledged: its Receive Maximum, capped by ours.</summary>
    internal int SendQuota => Math.Min(_clientReceiveMaximum, _broker.Options.MaximumInflightMessages);

    private bool IsV5 => Version == ProtocolVersion.V500;

    /// <summary>Handles one packet from the client. False when the connection must close.</summary>
    public ValueTask<bool> HandleAsync(MqttPacket packet, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(packet);
        _lastActivity = _broker.Time.GetTimestamp();
        _broker.Metrics.PacketReceived(packet.Type == PacketType.Publish);
        if (_state == State.Connected)
        {
            switch (packet)
            {
                case PublishPacket publish:
                    return HandlePublishAsync(publish, cancellationToken);
                case PublishAckPacket ack:
                    return ValueTask.FromResult(HandleAck(ack));
                case SubscribePacket subscribe:
                    return HandleSubscribeAsync(subscribe, cancellationToken);
                case UnsubscribePacket unsubscribe:
                    return ValueTask.FromResult(HandleUnsubscribe(unsubscribe));
                case PingReqPacket:
                    Send(PingRespPacket.Instance);
                    return ValueTask.FromResult(true);
                case DisconnectPacket disconnect:
                    return ValueTask.FromResult(HandleDisconnect(disconnect));
                case ConnectPacket:
                    return Fail(ReasonCode.ProtocolError, "A second CONNECT on the same connection.");
                case AuthPacket:
                    return Fail(ReasonCode.ProtocolError, "Re-authentication is not supported.");
                default:
                    return Fail(ReasonCode.ProtocolError, $"A client may not send {packet.Type}.");
            }
        }

        if (_state == State.AwaitingConnect)
        {
            if (packet is ConnectPacket connect)
            {
                return HandleConnectAsync(connect, cancellationToken);
            }

            // Before CONNECT nothing else is allowed, and there is no version to answer in: close. (The decoder
            // refuses such a packet from its first byte; this holds for any other source of packets.)
            _broker.Metrics.ConnectionRefused(RefusalReasons.FirstPacketNotConnect);
            if (_broker.Logger.IsEnabled(LogLevel.Warning) && _broker.ShouldLogRefusal())
            {
                LogBeforeConnect(_broker.Logger, packet.Type, RemoteEndPoint);
            }

            Close(ReasonCode.ProtocolError, null, publishWill: false);
            return ValueTask.FromResult(false);
        }

        if (_state == State.Authenticating && packet is AuthPacket auth)
        {
            return HandleAuthAsync(auth, cancellationToken);
        }

        return _state == State.Authenticating
            ? Fail(ReasonCode.ProtocolError, "Only AUTH may follow CONNECT while authentication is in progress.")
            : ValueTask.FromResult(false);
    }

    /// <summary>The decoder found a malformed frame: 5.0 clients are told why (DISCONNECT, or CONNACK for a bad CONNECT), then the connection closes.</summary>
    public void OnProtocolError(MqttProtocolException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (_broker.Logger.IsEnabled(LogLevel.Warning) && _broker.ShouldLogRefusal())
        {
            LogProtocolError(_broker.Logger, LogText.Clean(ClientId ?? "(not connected)"), exception.ReasonCode, LogText.Clean(exception.Message));
        }

        if (_state == State.AwaitingConnect)
        {
            _broker.Metrics.ConnectionRefused(RefusalReasons.For(exception));
            if (exception.ReasonCode == ReasonCode.UnsupportedProtocolVersion)
            {
                // The client's version is unknown: answer as 3.1.1 does (return code 1), which 5.0 clients also understand as a refusal.
                Version = ProtocolVersion.V311;
                Send(new ConnAckPacket { ReasonCode = ReasonCode.UnsupportedProtocolVersion });
            }
            else if (exception.ConnectVersion == ProtocolVersion.V500 || (exception.PacketType == PacketType.Connect && exception.ConnectVersion != ProtocolVersion.Unknown))
            {
                Version = exception.ConnectVersion;
                if (IsV5)
                {
                    Send(new ConnAckPacket { ReasonCode = exception.ReasonCode, Properties = ReasonProperties(exception.Message) });
                }
            }

            Close(ReasonCode.Success, null, publishWill: false);
            return;
        }

        Close(exception.ReasonCode, exception.Message, publishWill: true);
    }

    private ValueTask<bool> Fail(ReasonCode code, string reason) => ValueTask.FromResult(FailNow(code, reason));

    /// <summary>Logs the protocol error and closes (5.0: DISCONNECT with <paramref name="code"/> first). Always false.</summary>
    private bool FailNow(ReasonCode code, string reason)
    {
        if (_broker.Logger.IsEnabled(LogLevel.Warning) && _broker.ShouldLogRefusal())
        {
            LogProtocolError(_broker.Logger, LogText.Clean(ClientId ?? "(not connected)"), code, LogText.Clean(reason));
        }

        Close(code, reason, publishWill: true);
        return false;
    }

    private MqttProperties? ReasonProperties(string? reason) =>
        reason is null || !_requestProblemInformation ? null : new MqttProperties { ReasonString = reason };

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Client {ClientId} connected (namespace '{Namespace}', MQTT level {Level}, session present {SessionPresent}) from {RemoteEndPoint}")]
    private static partial void LogConnected(ILogger logger, string clientId, string @namespace, int level, bool sessionPresent, EndPoint? remoteEndPoint);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "Client {ClientId} disconnected ({How})")]
    private static partial void LogDisconnected(ILogger logger, string clientId, string how);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "Connection from {RemoteEndPoint} refused for client {ClientId}: {ReasonCode}")]
    private static partial void LogConnectRefused(ILogger logger, string clientId, ReasonCode reasonCode, EndPoint? remoteEndPoint);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "Protocol error from client {ClientId}: {ReasonCode} {Reason}")]
    private static partial void LogProtocolError(ILogger logger, string clientId, ReasonCode reasonCode, string reason);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information, Message = "Client {ClientId} missed its keep alive of {KeepAlive} s")]
    private static partial void LogKeepAliveTimeout(ILogger logger, string clientId, ushort keepAlive);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "Connection from {RemoteEndPoint} sent {PacketType} before CONNECT")]
    private static partial void LogBeforeConnect(ILogger logger, PacketType packetType, EndPoint? remoteEndPoint);
}
