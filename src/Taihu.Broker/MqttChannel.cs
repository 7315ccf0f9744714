using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Unicode;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Extensibility;
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

    public MqttPacket? Packet { get; }
    public BrokerMessage? Message { get; }
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
public sealed partial class MqttChannel : IDisposable
{
    private enum State
    {
        AwaitingConnect,
        Authenticating,
        Connected,
        Closed,
    }

    private readonly MqttBroker _broker;
    private readonly Channel<OutboundItem> _outbound = Channel.CreateUnbounded<OutboundItem>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _closing = new();
    private readonly long _id;
    private readonly long _openedAt;
    private State _state;
    private int _outboundCount;
    private int _closed;
    private int _detached;
    private bool _suppressWill;
    private long _lastActivity;
    private ConnectPacket? _connect;
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
    private readonly PublishPacket _scratchPublish = new();
    private readonly MqttProperties _scratchProperties = new();

    public MqttChannel(MqttBroker broker, EndPoint? remoteEndPoint, X509Certificate2? clientCertificate)
    {
        ArgumentNullException.ThrowIfNull(broker);
        _broker = broker;
        RemoteEndPoint = remoteEndPoint;
        ClientCertificate = clientCertificate;
        Reader = new PacketReader { MaximumPacketSize = broker.Options.MaximumPacketSize, TopicCache = new TopicNameCache() };
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
    /// packet past its handling (routing copies what it needs into a <see cref="BrokerMessage"/>).
    /// </summary>
    public PublishPacket ReusablePublish { get; } = new();

    /// <summary>The decoder for this connection; its version follows CONNECT.</summary>
    public PacketReader Reader { get; }

    public ProtocolVersion Version { get; private set; }
    public string? ClientId { get; private set; }
    public ClientIdentity Identity => _identity;
    public bool IsConnected => _state == State.Connected;

    /// <summary>Cancelled when the connection is closing; the transport stops reading.</summary>
    public CancellationToken Closing => _closing.Token;

    internal ChannelReader<OutboundItem> Outbound => _outbound.Reader;

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

            // Before CONNECT nothing else is allowed, and there is no version to answer in: close.
            LogBeforeConnect(_broker.Logger, packet.Type, RemoteEndPoint);
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
        LogProtocolError(_broker.Logger, ClientId ?? "(not connected)", exception.ReasonCode, exception.Message);
        if (_state == State.AwaitingConnect)
        {
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

    private ValueTask<bool> Fail(ReasonCode code, string reason)
    {
        LogProtocolError(_broker.Logger, ClientId ?? "(not connected)", code, reason);
        Close(code, reason, publishWill: true);
        return ValueTask.FromResult(false);
    }

    private MqttProperties? ReasonProperties(string? reason) =>
        reason is null || !_requestProblemInformation ? null : new MqttProperties { ReasonString = reason };

    // ---------------------------------------------------------------- CONNECT and AUTH

    private async ValueTask<bool> HandleConnectAsync(ConnectPacket connect, CancellationToken cancellationToken)
    {
        Version = connect.ProtocolVersion;
        Reader.Version = Version;
        _connect = connect;
        var options = _broker.Options;
        var properties = connect.Properties;
        if (properties is not null)
        {
            _clientReceiveMaximum = properties.ReceiveMaximum ?? 65_535;
            _clientMaximumPacketSize = properties.MaximumPacketSize is { } max ? (int)Math.Min(max, int.MaxValue) : int.MaxValue;
            _clientTopicAliasMaximum = properties.TopicAliasMaximum ?? 0;
            _requestProblemInformation = properties.RequestProblemInformation != 0;
        }

        var clientId = connect.ClientId;
        string? assignedClientId = null;
        if (clientId.Length == 0)
        {
            if (!IsV5 && (!connect.CleanStart || Version == ProtocolVersion.V310))
            {
                // 3.1.1 section 3.1.3.1: an empty client id needs Clean Session 1.
                return RefuseConnect(ReasonCode.ClientIdentifierNotValid, "An empty client identifier needs a clean session.");
            }

            clientId = "auto-" + Guid.NewGuid().ToString("N");
            if (IsV5)
            {
                assignedClientId = clientId;
            }
        }

        ClientId = clientId;
        var context = new ConnectContext
        {
            ClientId = clientId,
            UserName = connect.UserName,
            Password = connect.Password,
            ProtocolVersion = Version,
            RemoteEndPoint = RemoteEndPoint,
            ClientCertificate = ClientCertificate,
            AuthenticationMethod = properties?.AuthenticationMethod,
            AuthenticationData = properties?.AuthenticationData,
            Packet = connect,
        };
        _pendingContext = context;
        _assignedClientId = assignedClientId;

        if (properties?.AuthenticationMethod is { } method)
        {
            if (_broker.EnhancedAuthenticator is not { } enhanced || !enhanced.Supports(method))
            {
                return RefuseConnect(ReasonCode.BadAuthenticationMethod, $"Authentication method '{method}' is not supported.");
            }

            _state = State.Authenticating;
            var step = await enhanced.AuthenticateAsync(context, _authStep++, properties.AuthenticationData, cancellationToken);
            return ContinueEnhanced(step, method);
        }

        var result = await _broker.Authenticator.AuthenticateAsync(context, cancellationToken);
        if (result.ReasonCode != ReasonCode.Success || result.Identity is null)
        {
            return RefuseConnect(result.ReasonCode == ReasonCode.Success ? ReasonCode.NotAuthorized : result.ReasonCode, result.ReasonString);
        }

        return CompleteConnect(result.Identity, null);
    }

    private ConnectContext? _pendingContext;
    private string? _assignedClientId;

    private async ValueTask<bool> HandleAuthAsync(AuthPacket auth, CancellationToken cancellationToken)
    {
        var method = _pendingContext?.AuthenticationMethod;
        if (auth.ReasonCode != ReasonCode.ContinueAuthentication || auth.Properties?.AuthenticationMethod != method)
        {
            return await Fail(ReasonCode.ProtocolError, "AUTH must continue with the method given in CONNECT.");
        }

        var step = await _broker.EnhancedAuthenticator!.AuthenticateAsync(_pendingContext!, _authStep++, auth.Properties?.AuthenticationData, cancellationToken);
        return ContinueEnhanced(step, method!);
    }

    private bool ContinueEnhanced(AuthenticationStep step, string method)
    {
        if (step.ReasonCode == ReasonCode.ContinueAuthentication)
        {
            Send(new AuthPacket
            {
                ReasonCode = ReasonCode.ContinueAuthentication,
                Properties = new MqttProperties { AuthenticationMethod = method, AuthenticationData = step.ServerData },
            });
            return true;
        }

        if (step.ReasonCode != ReasonCode.Success || step.Identity is null)
        {
            return RefuseConnect(step.ReasonCode == ReasonCode.Success ? ReasonCode.NotAuthorized : step.ReasonCode, null);
        }

        return CompleteConnect(step.Identity, new MqttProperties { AuthenticationMethod = method, AuthenticationData = step.ServerData });
    }

    private bool RefuseConnect(ReasonCode code, string? reason)
    {
        LogConnectRefused(_broker.Logger, ClientId ?? _connect?.ClientId ?? "", code, RemoteEndPoint);
        Send(new ConnAckPacket { ReasonCode = code, Properties = IsV5 ? ReasonProperties(reason) : null });
        Close(ReasonCode.Success, null, publishWill: false);
        return false;
    }

    private bool CompleteConnect(ClientIdentity identity, MqttProperties? ackProperties)
    {
        var connect = _connect!;
        var options = _broker.Options;
        _identity = identity;
        uint expiry;
        var expiryChanged = false;
        if (IsV5)
        {
            expiry = connect.Properties?.SessionExpiryInterval ?? 0;
            if (expiry > options.MaximumSessionExpiryInterval)
            {
                expiry = options.MaximumSessionExpiryInterval;
                expiryChanged = true;
            }
        }
        else
        {
            expiry = connect.CleanStart ? 0 : options.PersistentSessionExpiryInterval;
        }

        _connectSessionExpiry = expiry;
        _keepAlive = connect.KeepAlive;
        ushort? serverKeepAlive = null;
        if (options.MaximumKeepAlive < ushort.MaxValue && (_keepAlive == 0 || _keepAlive > options.MaximumKeepAlive))
        {
            if (!IsV5)
            {
                // 3.1.1 has no Server Keep Alive: a shorter keep alive than announced would cut off a client that
                // pings on time. Refuse it (return code 2), as Mosquitto's max_keepalive does.
                return RefuseConnect(ReasonCode.ClientIdentifierNotValid, null);
            }

            _keepAlive = options.MaximumKeepAlive;
            serverKeepAlive = _keepAlive;
        }

        var session = _broker.AttachSession(this, identity.Namespace, ClientId!, connect.CleanStart, expiry, out var sessionPresent);
        _session = session;
        _state = State.Connected;
        _broker.Metrics.ClientConnected();

        var ack = new ConnAckPacket { SessionPresent = sessionPresent, ReasonCode = ReasonCode.Success };
        if (IsV5)
        {
            var p = ackProperties ?? new MqttProperties();
            p.ReceiveMaximum = (ushort)options.MaximumInflightMessages;
            p.MaximumPacketSize = (uint)options.MaximumPacketSize;
            p.TopicAliasMaximum = options.TopicAliasMaximum;
            p.AssignedClientIdentifier = _assignedClientId;
            p.ServerKeepAlive = serverKeepAlive;
            if (expiryChanged)
            {
                p.SessionExpiryInterval = expiry;
            }

            if (!options.RetainAvailable)
            {
                p.RetainAvailable = 0;
            }

            if (!options.SharedSubscriptionsEnabled)
            {
                p.SharedSubscriptionAvailable = 0;
            }

            ack.Properties = p;
        }

        Send(ack);
        LogConnected(_broker.Logger, ClientId!, identity.Namespace, (int)Version, sessionPresent, RemoteEndPoint);

        // Resume: unacknowledged messages again with DUP, PUBREL for those past PUBREC, then the queue.
        lock (session.Gate)
        {
            if (sessionPresent)
            {
                foreach (var inflight in session.Inflight)
                {
                    if (inflight.Released)
                    {
                        Send(new PublishAckPacket(PacketType.PubRel, inflight.PacketId));
                    }
                    else
                    {
                        inflight.Message.AddReference();
                        Enqueue(new OutboundItem(inflight.Message, inflight.QoS, inflight.Retain, dup: true, inflight.PacketId, inflight.SubscriptionIds));
                    }
                }
            }

            _broker.Pump(session, this);
        }

        return true;
    }

    // ---------------------------------------------------------------- PUBLISH in

    private async ValueTask<bool> HandlePublishAsync(PublishPacket publish, CancellationToken cancellationToken)
    {
        var owner = publish.PayloadOwner;
        try
        {
            return await HandlePublishCoreAsync(publish, cancellationToken);
        }
        finally
        {
            // The publisher's reference: deliveries and the retained store took their own.
            owner?.Release();
        }
    }

    private async ValueTask<bool> HandlePublishCoreAsync(PublishPacket publish, CancellationToken cancellationToken)
    {
        var options = _broker.Options;
        var topic = publish.Topic;
        var properties = publish.Properties;
        if (IsV5 && properties?.TopicAlias is { } alias)
        {
            if (alias == 0 || alias > options.TopicAliasMaximum)
            {
                return await Fail(ReasonCode.TopicAliasInvalid, $"Topic alias {alias} is outside 1..{options.TopicAliasMaximum}.");
            }

            _inboundAliases ??= [];
            if (topic.Length == 0)
            {
                if (!_inboundAliases.TryGetValue(alias, out var known))
                {
                    return await Fail(ReasonCode.ProtocolError, $"Topic alias {alias} was never set.");
                }

                topic = known;
            }
            else
            {
                _inboundAliases[alias] = topic;
            }

            properties = properties.Clone();
            properties.TopicAlias = null;
        }

        if (!CheckTopicLimits(topic, out var topicProblem))
        {
            return await Fail(ReasonCode.TopicNameInvalid, topicProblem);
        }

        var qos = publish.QoS;
        if (qos == QoS.ExactlyOnce)
        {
            var session = _session!;
            bool duplicate;
            bool overLimit;
            lock (session.Gate)
            {
                duplicate = session.IncomingQoS2.Contains(publish.PacketId);
                overLimit = !duplicate && session.IncomingQoS2.Count + _pendingIncoming >= options.MaximumInflightMessages;
            }

            if (overLimit)
            {
                return await Fail(ReasonCode.ReceiveMaximumExceeded, "More QoS 2 messages unacknowledged than Receive Maximum allows.");
            }

            if (duplicate)
            {
                // Already accepted and routed: acknowledge again, deliver nothing again (4.3.3).
                Send(new PublishAckPacket(PacketType.PubRec, publish.PacketId));
                return true;
            }
        }

        if (IsV5 && properties?.PayloadFormatIndicator == 1 && !Utf8.IsValid(publish.Payload.Span))
        {
            return Refuse(publish, ReasonCode.PayloadFormatInvalid, "The payload is marked as UTF-8 but is not.", closeWhenUnacknowledged: true);
        }

        if (publish.Retain && !options.RetainAvailable)
        {
            return await Fail(ReasonCode.RetainNotSupported, "Retained messages are not available.");
        }

        if (topic is "$SYS" || topic.StartsWith("$SYS/", StringComparison.Ordinal))
        {
            return Refuse(publish, ReasonCode.NotAuthorized, "Clients may not publish to $SYS topics.", closeWhenUnacknowledged: false);
        }

        var authorization = await _broker.Authorizer.AuthorizePublishAsync(_identity, ClientId!, topic, cancellationToken);
        if (authorization != ReasonCode.Success)
        {
            _broker.Metrics.MessageDropped(DropReasons.NotAuthorized);
            return Refuse(publish, authorization, $"Not authorized to publish to '{topic}'.", closeWhenUnacknowledged: false);
        }

        var code = ReasonCode.Success;
        if (_broker.PublishObserver is { } observer)
        {
            if (publish.Topic != topic)
            {
                publish.Topic = topic;
            }

            _pendingIncoming++;
            try
            {
                var pending = observer.OnPublishAsync(new ObservedPublish(_identity, ClientId!, publish), cancellationToken);
                code = pending.IsCompletedSuccessfully ? pending.Result : await pending;
            }
            finally
            {
                _pendingIncoming--;
            }

            if (!code.IsSuccess())
            {
                return Refuse(publish, code, null, closeWhenUnacknowledged: true);
            }
        }

        var message = new BrokerMessage(_identity.Namespace, topic, publish.Payload, publish.PayloadOwner, qos, publish.Retain, properties, _broker.Time.GetUtcNow(), ClientId);
        var deliveries = _broker.RouteAndRetain(message);
        if (code == ReasonCode.Success && deliveries == 0 && IsV5)
        {
            code = ReasonCode.NoMatchingSubscribers;
        }

        Acknowledge(publish, code);
        return true;
    }

    private void Acknowledge(PublishPacket publish, ReasonCode code)
    {
        if (publish.QoS == QoS.AtLeastOnce)
        {
            Send(new PublishAckPacket(PacketType.PubAck, publish.PacketId, IsV5 ? code : ReasonCode.Success));
        }
        else if (publish.QoS == QoS.ExactlyOnce)
        {
            if (code.IsSuccess())
            {
                var session = _session!;
                lock (session.Gate)
                {
                    session.IncomingQoS2.Add(publish.PacketId);
                }
            }

            Send(new PublishAckPacket(PacketType.PubRec, publish.PacketId, IsV5 ? code : ReasonCode.Success));
        }
    }

    /// <summary>
    /// Refuses a publish. 5.0 QoS 1/2 carry the code in PUBACK/PUBREC. Where no acknowledgement can carry it
    /// (3.1.1, or QoS 0), the message is dropped silently, or the connection closed when
    /// <paramref name="closeWhenUnacknowledged"/> (bad payloads must not pass unnoticed).
    /// </summary>
    private bool Refuse(PublishPacket publish, ReasonCode code, string? reason, bool closeWhenUnacknowledged)
    {
        if (IsV5 && publish.QoS != QoS.AtMostOnce)
        {
            var ack = new PublishAckPacket(publish.QoS == QoS.AtLeastOnce ? PacketType.PubAck : PacketType.PubRec, publish.PacketId, code)
            {
                Properties = ReasonProperties(reason),
            };
            Send(ack);
            return true;
        }

        if (closeWhenUnacknowledged)
        {
            Close(code, reason, publishWill: true);
            return false;
        }

        if (publish.QoS == QoS.AtLeastOnce)
        {
            Send(new PublishAckPacket(PacketType.PubAck, publish.PacketId));
        }
        else if (publish.QoS == QoS.ExactlyOnce)
        {
            Send(new PublishAckPacket(PacketType.PubRec, publish.PacketId));
        }

        return true;
    }

    private bool CheckTopicLimits(string topic, out string problem)
    {
        var options = _broker.Options;
        if (topic.Length > options.MaximumTopicLength || Encoding.UTF8.GetByteCount(topic) > options.MaximumTopicLength)
        {
            problem = $"The topic is longer than {options.MaximumTopicLength} bytes.";
            return false;
        }

        if (topic.AsSpan().Count('/') + 1 > options.MaximumTopicLevels)
        {
            problem = $"The topic has more than {options.MaximumTopicLevels} levels.";
            return false;
        }

        problem = "";
        return true;
    }

    // ---------------------------------------------------------------- acknowledgements of our PUBLISH, and PUBREL

    private bool HandleAck(PublishAckPacket ack)
    {
        var session = _session!;
        switch (ack.Type)
        {
            case PacketType.PubAck:
            case PacketType.PubComp:
                lock (session.Gate)
                {
                    var index = session.FindInflight(ack.PacketId);
                    if (index >= 0)
                    {
                        var inflight = session.Inflight[index];
                        var expected = ack.Type == PacketType.PubAck ? QoS.AtLeastOnce : QoS.ExactlyOnce;
                        if (inflight.QoS == expected && (ack.Type == PacketType.PubAck || inflight.Released))
                        {
                            session.Inflight.RemoveAt(index);
                            inflight.Message.Release();
                            _broker.Pump(session, this);
                        }
                    }
                }

                return true;
            case PacketType.PubRec:
                lock (session.Gate)
                {
                    var index = session.FindInflight(ack.PacketId);
                    if (index < 0 || session.Inflight[index].QoS != QoS.ExactlyOnce)
                    {
                        Send(new PublishAckPacket(PacketType.PubRel, ack.PacketId, IsV5 ? ReasonCode.PacketIdentifierNotFound : ReasonCode.Success));
                        return true;
                    }

                    var inflight = session.Inflight[index];
                    if (!ack.ReasonCode.IsSuccess())
                    {
                        // The receiver refused it: the exchange ends here (5.0 section 4.3.3).
                        session.Inflight.RemoveAt(index);
                        inflight.Message.Release();
                        _broker.Pump(session, this);
                        return true;
                    }

                    inflight.Released = true;
                }

                Send(new PublishAckPacket(PacketType.PubRel, ack.PacketId));
                return true;
            case PacketType.PubRel:
                bool known;
                lock (session.Gate)
                {
                    known = session.IncomingQoS2.Remove(ack.PacketId);
                }

                Send(new PublishAckPacket(PacketType.PubComp, ack.PacketId, known || !IsV5 ? ReasonCode.Success : ReasonCode.PacketIdentifierNotFound));
                return true;
            default:
                return false;
        }
    }

    // ---------------------------------------------------------------- SUBSCRIBE and UNSUBSCRIBE

    private async ValueTask<bool> HandleSubscribeAsync(SubscribePacket subscribe, CancellationToken cancellationToken)
    {
        var options = _broker.Options;
        var session = _session!;
        var state = _broker.GetNamespace(_identity.Namespace);
        var subscriptionId = subscribe.Properties?.SubscriptionIdentifiers is [var id, ..] ? id : 0u;
        var ack = new SubAckPacket { PacketId = subscribe.PacketId };
        List<(Subscription Subscription, bool IsNew)>? granted = null;
        foreach (var requested in subscribe.Subscriptions)
        {
            var raw = requested.Filter;
            var filter = raw;
            string? group = null;
            if (TopicValidator.TryParseShared(raw, out var shareGroup, out var sharedFilter, out var validShared))
            {
                if (!options.SharedSubscriptionsEnabled)
                {
                    ack.ReasonCodes.Add(ReasonCode.SharedSubscriptionsNotSupported);
                    continue;
                }

                if (!validShared)
                {
                    ack.ReasonCodes.Add(ReasonCode.TopicFilterInvalid);
                    continue;
                }

                if (requested.NoLocal && IsV5)
                {
                    return await Fail(ReasonCode.ProtocolError, "No Local may not be set on a shared subscription.");
                }

                group = shareGroup;
                filter = sharedFilter;
            }

            if (!TopicValidator.IsValidTopicFilter(filter) || !CheckTopicLimits(filter, out _))
            {
                ack.ReasonCodes.Add(ReasonCode.TopicFilterInvalid);
                continue;
            }

            var authorization = await _broker.Authorizer.AuthorizeSubscribeAsync(_identity, ClientId!, raw, cancellationToken);
            if (authorization != ReasonCode.Success)
            {
                ack.ReasonCodes.Add(authorization);
                continue;
            }

            var subscription = new Subscription
            {
                Session = session,
                Filter = filter,
                RawFilter = raw,
                ShareGroup = group,
                QoS = requested.MaximumQoS,
                NoLocal = requested.NoLocal,
                RetainAsPublished = requested.RetainAsPublished,
                RetainHandling = requested.RetainHandling,
                SubscriptionId = subscriptionId,
            };
            lock (session.Gate)
            {
                session.Subscriptions[raw] = subscription;
            }

            var isNew = state.Trie.Add(subscription);
            (granted ??= []).Add((subscription, isNew));
            ack.ReasonCodes.Add((ReasonCode)(byte)requested.MaximumQoS);
        }

        // SUBACK goes first; retained messages for the new subscriptions follow it.
        Send(ack);
        if (granted is not null)
        {
            SendRetained(state, session, granted);
        }

        return true;
    }

    private void SendRetained(MqttBroker.NamespaceState state, MqttSession session, List<(Subscription Subscription, bool IsNew)> granted)
    {
        var now = _broker.Time.GetUtcNow();
        var retained = new List<BrokerMessage>();
        foreach (var (subscription, isNew) in granted)
        {
            // Retained messages are not sent for shared subscriptions (5.0 section 4.8.2).
            if (subscription.ShareGroup is not null || subscription.RetainHandling == RetainHandling.DoNotSend
                || (subscription.RetainHandling == RetainHandling.SendIfNewSubscription && !isNew))
            {
                continue;
            }

            state.Retained.CollectMatching(subscription.Filter, now, retained);
            foreach (var message in retained)
            {
                var qos = (QoS)Math.Min((int)message.QoS, (int)subscription.QoS);
                var ids = subscription.SubscriptionId != 0 ? new List<uint> { subscription.SubscriptionId } : null;
                _broker.Deliver(session, message, qos, retain: true, ids, group: null);
                message.Release();
            }

            retained.Clear();
        }
    }

    private bool HandleUnsubscribe(UnsubscribePacket unsubscribe)
    {
        var session = _session!;
        var trie = _broker.GetNamespace(_identity.Namespace).Trie;
        var ack = new UnsubAckPacket { PacketId = unsubscribe.PacketId };
        foreach (var raw in unsubscribe.Filters)
        {
            Subscription? removed;
            lock (session.Gate)
            {
                session.Subscriptions.Remove(raw, out removed);
            }

            if (removed is null)
            {
                ack.ReasonCodes.Add(TopicValidator.IsValidTopicFilter(raw) ? ReasonCode.NoSubscriptionExisted : ReasonCode.TopicFilterInvalid);
                continue;
            }

            trie.Remove(session, removed.Filter, removed.ShareGroup);
            ack.ReasonCodes.Add(ReasonCode.Success);
        }

        Send(ack);
        return true;
    }

    // ---------------------------------------------------------------- DISCONNECT, keep alive, closing

    private bool HandleDisconnect(DisconnectPacket disconnect)
    {
        if (IsV5 && disconnect.Properties?.SessionExpiryInterval is { } expiry)
        {
            if (_connectSessionExpiry == 0 && expiry != 0)
            {
                // 5.0 section 3.14.2.2.2.
                Close(ReasonCode.ProtocolError, "The session expiry cannot be set on DISCONNECT when CONNECT had none.", publishWill: true);
                return false;
            }

            var session = _session!;
            lock (session.Gate)
            {
                session.ExpiryInterval = Math.Min(expiry, _broker.Options.MaximumSessionExpiryInterval);
            }
        }

        // 5.0 section 3.1.2.5: only a DISCONNECT with 0x00 removes the will; 0x04 and every error code publish it.
        var withWill = IsV5 && disconnect.ReasonCode != ReasonCode.NormalDisconnection;
        Close(ReasonCode.Success, null, publishWill: withWill, sendDisconnect: false);
        DetachFromSession();
        return false;
    }

    /// <summary>Called by housekeeping: closes the connection when its keep alive (times 1.5) or the CONNECT deadline passed.</summary>
    internal void CheckTimeouts(long now)
    {
        if (_state == State.Connected)
        {
            if (_keepAlive > 0 && _broker.Time.GetElapsedTime(Volatile.Read(ref _lastActivity), now).TotalSeconds >= _keepAlive * 1.5)
            {
                LogKeepAliveTimeout(_broker.Logger, ClientId!, _keepAlive);
                Close(ReasonCode.KeepAliveTimeout, "Keep alive timeout.", publishWill: true);
            }
        }
        else if (_state is State.AwaitingConnect or State.Authenticating)
        {
            if (_broker.Time.GetElapsedTime(_openedAt, now).TotalSeconds >= _broker.Options.ConnectTimeoutSeconds)
            {
                Close(ReasonCode.MaximumConnectTime, null, publishWill: false, sendDisconnect: false);
            }
        }
    }

    /// <summary>Another connection took the session over: tell this one 0x8E and close it.</summary>
    internal void Kick() => Close(ReasonCode.SessionTakenOver, "Another connection took the session over.", publishWill: true);

    /// <summary>
    /// Closes the connection: a 5.0 client that completed CONNECT gets DISCONNECT with <paramref name="code"/>
    /// first (unless it is the one who disconnected); then everything queued is flushed and the socket closed.
    /// </summary>
    public void Close(ReasonCode code, string? reason, bool publishWill, bool sendDisconnect = true)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        _suppressWill = !publishWill;
        if (sendDisconnect && IsV5 && _state == State.Connected && code != ReasonCode.Success)
        {
            _outbound.Writer.TryWrite(new OutboundItem(new DisconnectPacket { ReasonCode = code, Properties = ReasonProperties(reason) }));
        }

        _outbound.Writer.TryComplete();
        _closing.Cancel();
    }

    /// <summary>The transport is gone: detach from the session and handle the will.</summary>
    public void OnTransportClosed()
    {
        Interlocked.Exchange(ref _closed, 1);
        _outbound.Writer.TryComplete();
        DetachFromSession();
        _broker.Unregister(_id);
        while (_outbound.Reader.TryRead(out var left))
        {
            left.Message?.Release();
        }
    }

    /// <summary>
    /// Gives the session back to the broker (kept or ended per its expiry) and handles the will. Runs once, as
    /// soon as the connection is known to be over (a DISCONNECT, an error, the socket closing), before what is
    /// still queued has been flushed: a client that reconnects at once must find its session already detached.
    /// </summary>
    internal void DetachFromSession()
    {
        if (Interlocked.Exchange(ref _detached, 1) != 0)
        {
            return;
        }

        var wasConnected = _state == State.Connected;
        _state = State.Closed;
        if (!wasConnected || _session is null)
        {
            return;
        }

        _broker.Metrics.ClientDisconnected();
        BrokerMessage? will = null;
        uint willDelay = 0;
        if (!_suppressWill && _connect?.Will is { } w)
        {
            will = new BrokerMessage(_identity.Namespace, w.Topic, w.Payload, owner: null, w.QoS, w.Retain, w.Properties, _broker.Time.GetUtcNow(), ClientId);
            willDelay = w.Properties?.WillDelayInterval ?? 0;
        }

        _broker.DetachSession(this, _session, will, willDelay);
        LogDisconnected(_broker.Logger, ClientId!, _suppressWill ? "normal" : "abnormal");
    }

    public void Dispose() => _closing.Dispose();

    // ---------------------------------------------------------------- outbound

    private void Send(MqttPacket packet) => Enqueue(new OutboundItem(packet));

    private void Enqueue(in OutboundItem item)
    {
        Interlocked.Increment(ref _outboundCount);
        if (!_outbound.Writer.TryWrite(item))
        {
            Interlocked.Decrement(ref _outboundCount);
            item.Message?.Release();
        }
    }

    /// <summary>Queues one delivery for the socket, taking a payload reference. Drops QoS 0 when the queue is full.</summary>
    internal void EnqueuePublish(BrokerMessage message, QoS qos, bool retain, bool dup, ushort packetId, List<uint>? subscriptionIds)
    {
        if (qos == QoS.AtMostOnce && Volatile.Read(ref _outboundCount) >= _broker.Options.MaximumOutboundQueue)
        {
            _broker.Metrics.MessageDropped(DropReasons.OutboundQueueFull);
            return;
        }

        message.AddReference();
        Enqueue(new OutboundItem(message, qos, retain, dup, packetId, subscriptionIds));
    }

    /// <summary>
    /// Encodes one outbound item into <paramref name="output"/> (the transport's send loop, one thread). Returns
    /// the bytes written, or 0 when the item was dropped (expired, or too large for the client).
    /// </summary>
    internal int WriteOutbound(in OutboundItem item, IBufferWriter<byte> output)
    {
        Interlocked.Decrement(ref _outboundCount);
        if (item.Packet is { } packet)
        {
            if (IsV5 && _clientMaximumPacketSize < int.MaxValue && PacketWriter.GetSize(packet, Version) > _clientMaximumPacketSize)
            {
                DropOptionalProperties(packet);
            }

            return PacketWriter.Write(output, packet, Version == ProtocolVersion.Unknown ? ProtocolVersion.V311 : Version);
        }

        var message = item.Message!;
        try
        {
            var now = _broker.Time.GetUtcNow();
            if (message.IsExpired(now))
            {
                _broker.Metrics.MessageDropped(DropReasons.Expired);
                CompleteDropped(item);
                return 0;
            }

            var publish = _scratchPublish;
            publish.Topic = message.Topic;
            publish.Payload = message.Payload;
            publish.QoS = item.QoS;
            publish.Retain = item.Retain;
            publish.Dup = item.Dup;
            publish.PacketId = item.PacketId;
            publish.Properties = null;
            if (IsV5)
            {
                publish.Properties = PrepareProperties(message, item, now, publish);
            }

            var size = PacketWriter.GetSize(publish, Version);
            if (size > _clientMaximumPacketSize)
            {
                // 5.0 section 3.1.2.11.4: discard it and behave as if it had been sent and acknowledged.
                if (publish.Properties?.TopicAlias is { } assigned && publish.Topic.Length > 0)
                {
                    _outboundAliases!.Remove(publish.Topic);
                    _ = assigned;
                }

                _broker.Metrics.MessageDropped(DropReasons.TooLargeForClient);
                CompleteDropped(item);
                return 0;
            }

            return PacketWriter.Write(output, publish, Version);
        }
        finally
        {
            message.Release();
        }
    }

    /// <summary>
    /// 5.0 sections 3.2.2.3.9, 3.4.2.2.2, 3.14.2.2.3 and the like: the Reason String and User Properties are left
    /// out rather than exceed the client's Maximum Packet Size.
    /// </summary>
    private static void DropOptionalProperties(MqttPacket packet)
    {
        var properties = packet switch
        {
            PublishAckPacket ack => ack.Properties,
            DisconnectPacket disconnect => disconnect.Properties,
            ConnAckPacket connAck => connAck.Properties,
            SubAckPacket subAck => subAck.Properties,
            UnsubAckPacket unsubAck => unsubAck.Properties,
            AuthPacket auth => auth.Properties,
            _ => null,
        };
        if (properties is not null)
        {
            properties.ReasonString = null;
            properties.UserProperties = null;
        }
    }

    private MqttProperties? PrepareProperties(BrokerMessage message, in OutboundItem item, DateTimeOffset now, PublishPacket publish)
    {
        var source = message.Properties;
        var expiry = message.RemainingExpiry(now);
        ushort? alias = null;
        if (_clientTopicAliasMaximum > 0)
        {
            _outboundAliases ??= new Dictionary<string, ushort>(StringComparer.Ordinal);
            if (_outboundAliases.TryGetValue(message.Topic, out var existing))
            {
                alias = existing;
                publish.Topic = "";
            }
            else if (_outboundAliases.Count < _clientTopicAliasMaximum)
            {
                alias = (ushort)(_outboundAliases.Count + 1);
                _outboundAliases[message.Topic] = alias.Value;
            }
        }

        if (source is null && expiry is null && alias is null && item.SubscriptionIds is null)
        {
            return null;
        }

        var p = _scratchProperties;
        p.PayloadFormatIndicator = source?.PayloadFormatIndicator;
        p.MessageExpiryInterval = expiry;
        p.ContentType = source?.ContentType;
        p.ResponseTopic = source?.ResponseTopic;
        p.CorrelationData = source?.CorrelationData;
        p.UserProperties = source?.UserProperties;
        p.SubscriptionIdentifiers = item.SubscriptionIds;
        p.TopicAlias = alias;
        return p;
    }

    /// <summary>A QoS 1/2 delivery that will never be sent: take it out of flight as if acknowledged.</summary>
    private void CompleteDropped(in OutboundItem item)
    {
        if (item.QoS == QoS.AtMostOnce || _session is not { } session)
        {
            return;
        }

        lock (session.Gate)
        {
            var index = session.FindInflight(item.PacketId);
            if (index >= 0 && ReferenceEquals(session.Inflight[index].Message, item.Message))
            {
                session.Inflight[index].Message.Release();
                session.Inflight.RemoveAt(index);
                if (session.Channel == this)
                {
                    _broker.Pump(session, this);
                }
            }
        }
    }

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
