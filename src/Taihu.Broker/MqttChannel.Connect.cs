using System.Net;
using Taihu.Broker.Extensibility;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Logging;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker;

/// <summary>CONNECT, enhanced authentication (AUTH) and the CONNACK that ends them.</summary>
public sealed partial class MqttChannel
{
    private async ValueTask<bool> HandleConnectAsync(ConnectPacket connect, CancellationToken cancellationToken)
    {
        _connectAt = _broker.Time.GetTimestamp();
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
            return await ContinueEnhancedAsync(step, method, cancellationToken);
        }

        var result = await _broker.Authenticator.AuthenticateAsync(context, cancellationToken);
        if (result.ReasonCode != ReasonCode.Success || result.Identity is null)
        {
            return RefuseConnect(result.ReasonCode == ReasonCode.Success ? ReasonCode.NotAuthorized : result.ReasonCode, result.ReasonString);
        }

        return await AuthorizeWillAndCompleteAsync(result.Identity, null, cancellationToken);
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
        return await ContinueEnhancedAsync(step, method!, cancellationToken);
    }

    private async ValueTask<bool> ContinueEnhancedAsync(AuthenticationStep step, string method, CancellationToken cancellationToken)
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

        return await AuthorizeWillAndCompleteAsync(step.Identity, new MqttProperties { AuthenticationMethod = method, AuthenticationData = step.ServerData }, cancellationToken);
    }

    /// <summary>
    /// A will is a publish made in advance: its topic is authorized now exactly as a PUBLISH to it would be
    /// (no $SYS, then the authorizer), and refused with 0x87 (3.1.1: return code 5) rather than accepted and
    /// silently dropped later, so the client knows at once. It is checked again when it is sent.
    /// </summary>
    private async ValueTask<bool> AuthorizeWillAndCompleteAsync(ClientIdentity identity, MqttProperties? ackProperties, CancellationToken cancellationToken)
    {
        if (_connect?.Will is { } will)
        {
            var topic = identity.Topics is { } map ? map.ToBroker(will.Topic) : will.Topic;
            var code = IsSysTopic(topic) ? ReasonCode.NotAuthorized : await _broker.Authorizer.AuthorizePublishAsync(identity, ClientId!, topic, cancellationToken);
            if (code != ReasonCode.Success)
            {
                // Whatever the authorizer's code, CONNACK says 0x87 (3.1.1: 5), the one code both versions share for this.
                return RefuseConnect(ReasonCode.NotAuthorized, "Not authorized to publish the will to its topic.");
            }
        }

        long claim = 0;
        if (_broker.ClusterLink is { } cluster)
        {
            // On a cluster node the session is claimed cluster-wide first: a connection on another node loses it.
            // What it held there (or, from a node gone, its last snapshot) is put here first.
            claim = await _broker.ClaimSessionAsync(cluster, identity.Namespace, identity.SessionOwner ?? "", ClientId!, _connect!.CleanStart, cancellationToken);
        }

        return CompleteConnect(identity, ackProperties, claim);
    }

    /// <summary>$SYS and $SYS/...: the broker's own topics, which no client may publish to, as will or otherwise.</summary>
    internal static bool IsSysTopic(string topic) =>
        topic.Length >= 4 && topic[0] == '$' && topic.StartsWith("$SYS", StringComparison.Ordinal) && (topic.Length == 4 || topic[4] == '/');

    private bool RefuseConnect(ReasonCode code, string? reason)
    {
        var logger = _broker.Logger;
        if (logger.IsEnabled(LogLevel.Information) && _broker.ShouldLogRefusal())
        {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
            LogConnectRefused(logger, LogText.Clean(ClientId ?? _connect?.ClientId ?? ""), code, RemoteEndPoint);
#pragma warning restore CA1873
        }

        Send(new ConnAckPacket { ReasonCode = code, Properties = IsV5 ? ReasonProperties(reason) : null });
        Close(ReasonCode.Success, null, publishWill: false);
        return false;
    }

    /// <summary>Attaches the session and answers CONNACK.</summary>
    /// <param name="clusterClaim">On a cluster node, the number of the claim that gave this node the session; else 0.</param>
    private bool CompleteConnect(ClientIdentity identity, MqttProperties? ackProperties, long clusterClaim)
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

        _rateLimiter = PublishRateLimiter.Create(_broker.Time, identity.MaximumPublishRate ?? options.MaximumPublishRatePerConnection,
            identity.MaximumPublishBytesRate ?? options.MaximumPublishBytesRatePerConnection);
        var cluster = _broker.ClusterLink;
        // A will of this client's last connection here (still connected, or delayed) is this one's to forget: a
        // delayed will is cancelled by the new connection (5.0 section 3.1.3.2.2), and a replaced connection leaves
        // the cluster's copy to the connection that replaced it.
        var cancelsPendingWill = cluster is not null && connect.Will is null
            && _broker.FindSession(identity.Namespace, ClientId!, identity.SessionOwner ?? "") is { } existing && (existing.IsConnected || existing.IsWillPending);
        var session = _broker.AttachSession(this, identity.Namespace, identity.SessionOwner ?? "", ClientId!, connect.CleanStart, expiry, out var sessionPresent, clusterClaim);
        if (cluster is not null)
        {
            RecordWillInCluster(cluster, identity, connect.Will, cancelsPendingWill);
        }

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
        var time = _broker.Time;
        var now = time.GetTimestamp();
        _broker.Metrics.ConnectAccepted(time.GetElapsedTime(_openedAt, now).TotalMilliseconds, time.GetElapsedTime(_connectAt, now).TotalMilliseconds);
        _will = connect.Will;
        _connect = null;
        _pendingContext = null;
        var logger = _broker.Logger;
        if (logger.IsEnabled(LogLevel.Information))
        {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
            LogConnected(logger, LogText.Clean(ClientId), identity.Namespace, (int)Version, sessionPresent, RemoteEndPoint);
#pragma warning restore CA1873
        }
        _broker.LifecycleObserver?.OnConnected(identity, ClientId!);

        // Resume: unacknowledged messages again with DUP, PUBREL for those past PUBREC, then the queue.
        session.Resume(this, sessionPresent);

        return true;
    }

    /// <summary>
    /// On a cluster node, the will is written where the other nodes find it should this node die; a connection
    /// without a will writes nothing (unless it cancels a delayed will, which is then forgotten).
    /// </summary>
    private void RecordWillInCluster(IMqttClusterLink cluster, ClientIdentity identity, WillMessage? will, bool cancelsPendingWill)
    {
        var owner = identity.SessionOwner ?? "";
        if (will is null)
        {
            if (cancelsPendingWill)
            {
                cluster.OnWillDone(identity.Namespace, owner, ClientId!);
            }

            return;
        }

        var topic = identity.Topics is { } map ? map.ToBroker(will.Topic) : will.Topic;
        cluster.OnWillSet(identity.Namespace, owner, ClientId!, topic, will.Payload.Span, will.QoS, will.Retain, will.Properties,
            will.Properties?.WillDelayInterval ?? 0);
    }
}
