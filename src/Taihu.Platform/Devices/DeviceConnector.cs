using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Logging;
using Taihu.Mqtt;
using Taihu.Platform.BrokerUsers;
using Taihu.Platform.Rpc;
using Taihu.Platform.Security;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// Plugs the platform into the broker: authenticates devices (access token as user name, MQTT basic credentials,
/// or the TLS client certificate), confines each to its own topics and its tenant's namespace, and turns what
/// devices publish on ThingsBoard's topics into stored telemetry and attributes.
/// </summary>
/// <remarks>
/// Refusals follow ThingsBoard and the MQTT specification: unknown or wrong credentials get 0x86 (return code 4
/// in 3.1.1); a known identity that may not connect (provisioning when it is turned off) gets 0x87 (code 5).
/// A bad telemetry payload gets PUBACK/PUBREC 0x99 in 5.0, or the connection closed where no acknowledgement can
/// carry a code, so that a device never believes bad data was kept.
/// </remarks>
public sealed partial class DeviceConnector(
    IDeviceStore devices, DeviceDataService data, DeviceMessaging messaging, ProvisioningService provisioning, GatewayHandler gateways,
    ConnectivityTracker connectivity, DeviceAuthenticationLimiter limiter, BrokerUserDirectory brokerUsers, TenantBrokerUserService tenantBrokerUsers, IOptions<IngestOptions> ingestOptions, IOptions<SecurityOptions> securityOptions,
    RpcService rpc, RpcDeviceLink rpcLink, ClientRpcRequests clientRpc, ILogger<DeviceConnector> logger)
    : IMqttAuthenticator, IMqttAuthorizer, IPublishObserver, IClientLifecycleObserver
{
    private readonly VerifiedCredentialCache _verified = new(securityOptions.Value.CredentialCacheSize);
    private readonly int _maxPayload = ingestOptions.Value.MaxPayloadBytes;
    // Bad payloads come from devices that did log in, but one of them can send thousands a second.
    private readonly LogRateLimiter _badPayloadLog = new(TimeProvider.System, 10);
    // An address past its allowance keeps trying: a line for each attempt would flood the log it protects.
    private readonly LogRateLimiter _throttledLog = new(TimeProvider.System, 10);

    public async ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken)
    {
        if (context.UserName == "provision" && context.Password is null)
        {
            return securityOptions.Value.ProvisioningEnabled
                ? AuthenticationResult.Success(ProvisioningSession.NewIdentity(SourceAddress.Key(context.RemoteEndPoint)))
                : AuthenticationResult.Fail(ReasonCode.NotAuthorized, "Provisioning is turned off.");
        }

        // Every other CONNECT is a guess at some credential: reserved with the source address's allowance first,
        // so that guesses in parallel are counted as guesses in a row (a success costs nothing).
        var address = SourceAddress.Key(context.RemoteEndPoint);
        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        var permit = await limiter.AcquireAsync(address, cancellationToken);
        stage = StageTimings.Since("connect.permit", stage);
        if (!permit.Granted)
        {
            if (logger.IsEnabled(LogLevel.Warning) && _throttledLog.TryAcquire(out var suppressed))
            {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
                LogThrottled(logger, LogText.Clean(context.ClientId), context.RemoteEndPoint, permit.RetryAfterSeconds, suppressed);
#pragma warning restore CA1873
            }

            // 5.0: Connection rate exceeded with the limit in the reason string; 3.1.1 has no such code: Not authorized (5).
            return AuthenticationResult.Fail(context.ProtocolVersion == ProtocolVersion.V500 ? ReasonCode.ConnectionRateExceeded : ReasonCode.NotAuthorized,
                DeviceAuthenticationLimiter.Refusal(permit));
        }

        var outcome = AttemptOutcome.NotChecked;
        try
        {
            var result = await AuthenticateCoreAsync(context, cancellationToken);
            StageTimings.Since("connect.credentials", stage);
            outcome = result.ReasonCode == ReasonCode.Success ? AttemptOutcome.Succeeded : AttemptOutcome.Failed;
            return result;
        }
        finally
        {
            limiter.Release(address, outcome);
        }
    }

    private async ValueTask<AuthenticationResult> AuthenticateCoreAsync(ConnectContext context, CancellationToken cancellationToken)
    {
        StoredCredentials? found = null;
        if (context.ClientCertificate is { } certificate)
        {
            found = await devices.FindByLookupAsync(DeviceService.CertificateLookup(DeviceService.Thumbprint(certificate)), cancellationToken);
        }

        if (found is null && context.Password is { } password)
        {
            found = await CheckBasicAsync(context, password, cancellationToken);
        }

        // An access token as user name; firmware that always sends a password often sends an empty one with it.
        if (found is null && !string.IsNullOrEmpty(context.UserName) && (context.Password is null || context.Password.Value.IsEmpty))
        {
            found = await devices.FindByLookupAsync(DeviceService.TokenLookup(context.UserName), cancellationToken);
            if (found is not null && found.Type != CredentialsType.AccessToken)
            {
                found = null;
            }
        }
        else if (found is null && context.Password is null && string.IsNullOrEmpty(context.UserName) && !string.IsNullOrEmpty(context.ClientId))
        {
            // MQTT basic credentials that name only a client id.
            found = await devices.FindByLookupAsync(DeviceService.BasicClientLookup(context.ClientId), cancellationToken);
            if (found is not null && (found.Type != CredentialsType.MqttBasic || found.SecretHash is not null))
            {
                found = null;
            }
        }

        // A plain broker user (Security:MqttPasswordFile) when no device has these credentials; a wrong password
        // is refused as a device's is, and counts against the address the same way.
        if (found is null && context.Password is { } userPassword && !string.IsNullOrEmpty(context.UserName)
            && brokerUsers.Authenticate(context.UserName, userPassword.Span, context.ClientId) is { } user)
        {
            return AuthenticationResult.Success(user);
        }

        if (found is null && context.Password is { } tenantUserPassword && !string.IsNullOrEmpty(context.UserName)
            && await tenantBrokerUsers.AuthenticateAsync(context.UserName, tenantUserPassword, context.ClientId, cancellationToken) is { } tenantUser)
        {
            return AuthenticationResult.Success(tenantUser);
        }

        if (found is null && securityOptions.Value.AllowAnonymousMqtt && context.UserName is null && context.Password is null && context.ClientCertificate is null)
        {
            return AuthenticationResult.Success(brokerUsers.Anonymous(context.ClientId));
        }

        if (found is null)
        {
            // Debug: the broker logs every refusal (rate-limited) already; this only says which check refused it.
            if (logger.IsEnabled(LogLevel.Debug))
            {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
                LogRefused(logger, LogText.Clean(context.ClientId), context.RemoteEndPoint);
#pragma warning restore CA1873
            }
            return AuthenticationResult.Fail(ReasonCode.BadUserNameOrPassword, "Unknown or wrong device credentials.");
        }

        return AuthenticationResult.Success(DeviceSession.IdentityFor(found.Device, context.UserName, found.RateLimits));
    }

    private async Task<StoredCredentials?> CheckBasicAsync(ConnectContext context, ReadOnlyMemory<byte> password, CancellationToken cancellationToken)
    {
        var lookup = string.IsNullOrEmpty(context.UserName) ? DeviceService.BasicClientLookup(context.ClientId) : DeviceService.BasicUserLookup(context.UserName);
        var found = await devices.FindByLookupAsync(lookup, cancellationToken);
        if (found is null || found.Type != CredentialsType.MqttBasic || found.SecretHash is null)
        {
            return null;
        }

        if (!string.IsNullOrEmpty(found.ClientId) && !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(found.ClientId), Encoding.UTF8.GetBytes(context.ClientId)))
        {
            return null;
        }

        if (_verified.IsVerified(lookup, password.Span, found.SecretHash))
        {
            return found;
        }

        if (!CredentialHasher.VerifyPassword(password.Span, found.SecretHash))
        {
            return null;
        }

        _verified.Add(lookup, password.Span, found.SecretHash);
        return found;
    }

    public ValueTask<ReasonCode> AuthorizePublishAsync(ClientIdentity identity, string clientId, string topic, CancellationToken cancellationToken) =>
        ValueTask.FromResult(identity.State switch
        {
            DeviceSession session => Allowed(session, topic) ? ReasonCode.Success : ReasonCode.NotAuthorized,
            ProvisioningSession => topic == ProvisioningSession.RequestTopic ? ReasonCode.Success : ReasonCode.NotAuthorized,
            BrokerUserSession user => user.Access.MayPublish(topic) ? ReasonCode.Success : ReasonCode.NotAuthorized,
            _ => ReasonCode.Success,
        });

    public ValueTask<ReasonCode> AuthorizeSubscribeAsync(ClientIdentity identity, string clientId, string filter, CancellationToken cancellationToken)
    {
        var inner = filter;
        if (filter.StartsWith("$share/", StringComparison.Ordinal) && filter.IndexOf('/', 7) is var slash and > 0)
        {
            inner = filter[(slash + 1)..];
        }

        return ValueTask.FromResult(identity.State switch
        {
            DeviceSession session => Allowed(session, inner) ? ReasonCode.Success : ReasonCode.NotAuthorized,
            ProvisioningSession => inner == ProvisioningSession.ResponseTopic ? ReasonCode.Success : ReasonCode.NotAuthorized,
            BrokerUserSession user => user.Access.MaySubscribe(inner) ? ReasonCode.Success : ReasonCode.NotAuthorized,
            _ => ReasonCode.Success,
        });
    }

    /// <summary>A device reaches its own <c>$devices/{id}/</c> topics and any topic outside <c>$devices/</c>.</summary>
    private static bool Allowed(DeviceSession session, string topic) =>
        !topic.StartsWith("$devices", StringComparison.Ordinal) || topic.StartsWith(session.Prefix, StringComparison.Ordinal);

    public ValueTask<ReasonCode> OnPublishAsync(ObservedPublish publish, CancellationToken cancellationToken)
    {
        if (publish.Identity.State is DeviceSession session)
        {
            var topic = publish.Packet.Topic;
            if (!topic.StartsWith(session.Prefix, StringComparison.Ordinal))
            {
                // Any other topic is plain MQTT inside the tenant.
                return ValueTask.FromResult(ReasonCode.Success);
            }

            connectivity.Activity(session.Device);
            if (publish.Packet.Payload.Length > _maxPayload)
            {
                return ValueTask.FromResult(ReasonCode.QuotaExceeded);
            }

            if (session.IsOwn(topic, DeviceSession.Telemetry))
            {
                return SubmitTelemetry(session, publish, cancellationToken);
            }

            return OnDeviceTopicAsync(session, publish, topic, cancellationToken);
        }

        if (publish.Identity.State is ProvisioningSession)
        {
            return ProvisionAsync(publish, cancellationToken);
        }

        return ValueTask.FromResult(ReasonCode.Success);
    }

    /// <summary>
    /// Telemetry and plain topics of a device are routed (a tenant's application may subscribe to
    /// <c>$devices/+/telemetry</c>... within its rights); attribute publishes, attribute requests and the gateway
    /// API are requests to the platform and go no further, as in ThingsBoard.
    /// </summary>
    public bool Routes(ClientIdentity identity, string topic)
    {
        if (identity.State is ProvisioningSession)
        {
            return false;
        }

        if (identity.State is not DeviceSession session || !topic.StartsWith(session.Prefix, StringComparison.Ordinal))
        {
            return true;
        }

        // RPC requests and replies of a device are for the platform: a device subscribed to its own
        // rpc/request/+ must not hear its client-side requests come back as commands.
        return session.IsOwn(topic, DeviceSession.Telemetry)
            || !(session.IsOwn(topic, DeviceSession.Attributes)
                || session.IsUnder(topic, DeviceSession.AttributesRequest)
                || session.IsUnder(topic, DeviceSession.Gateway)
                || session.IsUnder(topic, DeviceSession.Rpc));
    }

    private ValueTask<ReasonCode> SubmitTelemetry(DeviceSession session, ObservedPublish publish, CancellationToken cancellationToken)
    {
        ValueTask pending;
        try
        {
            pending = data.SubmitTelemetryAsync(session.Device, publish.Packet.Payload.Span, cancellationToken);
        }
        catch (PayloadException e)
        {
            ReportBadPayload(session, e);
            return ValueTask.FromResult(ReasonCode.PayloadFormatInvalid);
        }

        return pending.IsCompletedSuccessfully ? ValueTask.FromResult(ReasonCode.Success) : AwaitStored(pending);
    }

    // Pooled: a telemetry message that waits for its commit must not allocate a state machine each time.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<ReasonCode> AwaitStored(ValueTask pending)
    {
        try
        {
            await pending;
            return ReasonCode.Success;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The batch did not commit: the device must not be told it was kept.
            return ReasonCode.UnspecifiedError;
        }
    }

    private async ValueTask<ReasonCode> OnDeviceTopicAsync(DeviceSession session, ObservedPublish publish, string topic, CancellationToken cancellationToken)
    {
        try
        {
            if (session.IsOwn(topic, DeviceSession.Attributes))
            {
                await data.SaveClientAttributesAsync(session.Device.Seq, publish.Packet.Payload, cancellationToken);
                return ReasonCode.Success;
            }

            if (session.IsUnder(topic, DeviceSession.AttributesRequest))
            {
                var requestId = session.After(topic, DeviceSession.AttributesRequest);
                var (clientKeys, sharedKeys) = ParseAttributeRequest(publish.Packet.Payload.Span);
                var response = await data.AttributeResponseAsync(session.Device.Seq, clientKeys, sharedKeys, cancellationToken);
                messaging.Publish(session.Device.TenantId, session.Prefix + "attributes/response/" + requestId, response);
                return ReasonCode.Success;
            }

            if (session.IsUnder(topic, DeviceSession.Gateway))
            {
                if (!session.Device.IsGateway)
                {
                    return ReasonCode.NotAuthorized;
                }

                return await gateways.HandleAsync(session, session.After(topic, DeviceSession.Gateway), publish.Packet.Payload, cancellationToken);
            }

            if (session.IsUnder(topic, DeviceSession.RpcResponse))
            {
                await ReplyAsync(session, topic.AsMemory(session.Prefix.Length + DeviceSession.RpcResponse.Length), publish.Packet.Payload);
                return ReasonCode.Success;
            }

            if (session.IsUnder(topic, DeviceSession.RpcRequest))
            {
                // Client-side RPC: recorded (integrations get it) before the PUBACK, then answered on the response
                // topic of the same id, by a webhook or by the server, without holding up this connection.
                var requestId = session.After(topic, DeviceSession.RpcRequest);
                var answer = await clientRpc.RequestAsync(session.Device, requestId, publish.Packet.Payload, cancellationToken);
                var responseTopic = session.RpcResponsePrefix + requestId;
                if (answer.IsCompletedSuccessfully)
                {
                    messaging.Publish(session.Device.TenantId, responseTopic, answer.Result);
                }
                else
                {
                    _ = PublishAnswerAsync(session.Device.TenantId, responseTopic, answer);
                }

                return ReasonCode.Success;
            }

            // Other topics of the device are plain topics of that device.
            return ReasonCode.Success;
        }
        catch (PayloadException e)
        {
            ReportBadPayload(session, e);
            return ReasonCode.PayloadFormatInvalid;
        }
        catch (NotGatewayChildException e)
        {
            if (logger.IsEnabled(LogLevel.Information) && _badPayloadLog.TryAcquire(out var suppressed))
            {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
                LogNotGatewayChild(logger, LogText.Clean(session.Device.Name), LogText.Clean(e.DeviceName), suppressed);
#pragma warning restore CA1873
            }

            return ReasonCode.NotAuthorized;
        }
        catch (PlatformException e) when (e.Status == 503)
        {
            // On a cluster, the owner of the device's RPC could not be reached (its node failing): the reply was not
            // taken, and the device is told so where its protocol can (PUBACK 0x80; a QoS 0 sender is disconnected).
            LogNotTaken(logger, LogText.Clean(session.Device.Name), e.Message);
            return ReasonCode.UnspecifiedError;
        }
    }

    private async Task PublishAnswerAsync(Guid tenantId, string topic, Task<byte[]> answer) => messaging.Publish(tenantId, topic, await answer);

    /// <summary>
    /// A reply to a server-side call. One for a call that is unknown or already over (a late reply after the
    /// timeout, say) changes nothing; MQTT has no way to tell the device, so it is logged (rate-limited).
    /// </summary>
    private async Task ReplyAsync(DeviceSession session, ReadOnlyMemory<char> id, ReadOnlyMemory<byte> payload)
    {
        var result = int.TryParse(id.Span, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var requestId)
            ? await rpc.ReplyAsync(session.Device, requestId, payload.Span)
            : RpcReplyResult.Unknown;
        if (result != RpcReplyResult.Accepted && logger.IsEnabled(LogLevel.Information) && _badPayloadLog.TryAcquire(out var suppressed))
        {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
            LogIgnoredReply(logger, LogText.Clean(session.Device.Name), LogText.Clean(id.ToString()), result, suppressed);
#pragma warning restore CA1873
        }
    }

    private async ValueTask<ReasonCode> ProvisionAsync(ObservedPublish publish, CancellationToken cancellationToken)
    {
        if (publish.Packet.Topic != ProvisioningSession.RequestTopic)
        {
            return ReasonCode.NotAuthorized;
        }

        byte[] response;
        try
        {
            response = await provisioning.ProvisionAsync(publish.Packet.Payload, ((ProvisioningSession)publish.Identity.State!).Address, cancellationToken);
        }
        catch (PlatformException e) when (e.Status == 429)
        {
            response = ProvisioningService.Failure("FAILURE", e.Message);
        }
        catch (PayloadException e)
        {
            response = ProvisioningService.Failure("FAILURE", e.Message);
        }

        messaging.Publish(publish.Identity.Namespace, ProvisioningSession.ResponseTopic, response);
        return ReasonCode.Success;
    }

    /// <summary>Reads <c>{"clientKeys":"a,b","sharedKeys":"c"}</c>; an empty payload asks for everything.</summary>
    public static (string? ClientKeys, string? SharedKeys) ParseAttributeRequest(ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty)
        {
            return (null, null);
        }

        try
        {
            var reader = new Utf8JsonReader(payload);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new PayloadException("An attribute request is a JSON object such as {\"clientKeys\":\"a,b\",\"sharedKeys\":\"c\"}.");
            }

            string? client = null;
            string? shared = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isClient = reader.ValueTextEquals("clientKeys"u8);
                var isShared = reader.ValueTextEquals("sharedKeys"u8);
                reader.Read();
                if (isClient || isShared)
                {
                    if (reader.TokenType != JsonTokenType.String)
                    {
                        throw new PayloadException("clientKeys and sharedKeys are comma-separated strings.");
                    }

                    if (isClient)
                    {
                        client = reader.GetString();
                    }
                    else
                    {
                        shared = reader.GetString();
                    }
                }
                else
                {
                    reader.Skip();
                }
            }

            return (client, shared);
        }
        catch (JsonException e)
        {
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }
    }

    public void OnConnected(ClientIdentity identity, string clientId)
    {
        if (identity.State is DeviceSession session)
        {
            connectivity.Connected(session.Device);
            rpcLink.MqttConnected(session.Device.Id);
            // A resumed session may already be subscribed to RPC: what waits is sent now (or on its SUBSCRIBE).
            rpc.Reachable(session.Device);
        }
    }

    public void OnSubscribed(ClientIdentity identity, string clientId, string filter, QoS grantedQoS)
    {
        if (identity.State is not DeviceSession session)
        {
            return;
        }

        if (CoversRpcRequests(session, filter))
        {
            rpc.Reachable(session.Device);
        }

        if (session.Device.IsGateway && MqttTopicFilterCovers(filter, session.GatewayPrefix + "rpc"))
        {
            foreach (var name in session.ConnectedChildren.Keys)
            {
                if (session.Children.TryGetValue(name, out var child))
                {
                    rpc.Reachable(child);
                }
            }
        }
    }

    private static bool CoversRpcRequests(DeviceSession session, string filter) => MqttTopicFilterCovers(filter, session.RpcRequestPrefix + "1");

    /// <summary>Whether <paramref name="filter"/> matches <paramref name="topic"/> (topics beginning with '$' need a literal first level).</summary>
    private static bool MqttTopicFilterCovers(string filter, string topic)
    {
        if (filter.StartsWith("$share/", StringComparison.Ordinal) && filter.IndexOf('/', 7) is var slash and > 0)
        {
            filter = filter[(slash + 1)..];
        }

        return Taihu.Mqtt.Topics.TopicMatcher.Matches(filter, topic);
    }

    public void OnDisconnected(ClientIdentity identity, string clientId)
    {
        if (identity.State is DeviceSession session)
        {
            connectivity.Disconnected(session.Device);
            // On every lost connection, not only the last: a call sent on this one and not acknowledged must go
            // again on the device's other or next connection (a reconnect often arrives before the old one is gone).
            rpcLink.MqttDisconnected(session.Device.Id);
            rpc.Unreachable(session.Device);
            // Calls sent to devices behind a gateway went over its connection: they are resent (or fail) too.
            if (session.HasConnectedChildren)
            {
                foreach (var name in session.ConnectedChildren.Keys)
                {
                    if (session.Children.TryGetValue(name, out var child))
                    {
                        rpc.Unreachable(child);
                    }
                }
            }

            gateways.GatewayDisconnected(session);
        }
    }

    private void ReportBadPayload(DeviceSession session, PayloadException e)
    {
        if (logger.IsEnabled(LogLevel.Information) && _badPayloadLog.TryAcquire(out var suppressed))
        {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
            LogBadPayload(logger, LogText.Clean(session.Device.Name), LogText.Clean(e.Message), suppressed);
#pragma warning restore CA1873
        }
    }

    [LoggerMessage(EventId = 2201, Level = LogLevel.Debug, Message = "Refused MQTT client {ClientId} from {Remote}: unknown or wrong device credentials")]
    private static partial void LogRefused(ILogger logger, string clientId, System.Net.EndPoint? remote);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Information, Message = "Refused a payload of device {Device}: {Problem} ({Suppressed} more bad payloads not logged before this one)")]
    private static partial void LogBadPayload(ILogger logger, string device, string problem, long suppressed);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Information, Message = "Refused a message of gateway {Gateway} for device {Device}: the gateway neither created it nor is assigned to it ({Suppressed} more refusals not logged before this one)")]
    private static partial void LogNotGatewayChild(ILogger logger, string gateway, string device, long suppressed);

    [LoggerMessage(EventId = 2205, Level = LogLevel.Information, Message = "Ignored an RPC reply of device {Device} for call {RequestId}: {Result} ({Suppressed} more not logged before this one)")]
    private static partial void LogIgnoredReply(ILogger logger, string device, string requestId, RpcReplyResult result, long suppressed);

    [LoggerMessage(EventId = 2206, Level = LogLevel.Warning, Message = "Did not take a message of device {Device}: {Reason}")]
    private static partial void LogNotTaken(ILogger logger, string device, string reason);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Warning, Message = "Refused MQTT client {ClientId} from {Remote} unchecked: too many failed authentications from the address (retry in {Seconds} s; {Suppressed} more not logged before this one)")]
    private static partial void LogThrottled(ILogger logger, string clientId, System.Net.EndPoint? remote, int seconds, long suppressed);
}

/// <summary>
/// Device passwords already verified, so a reconnect storm hashes each password once. An entry holds the SHA-256
/// of (lookup, password) and the stored hash it was checked against: when the credentials change, the stored hash
/// changes and the entry no longer matches. Bounded: when full, it is cleared and refilled.
/// </summary>
internal sealed class VerifiedCredentialCache(int capacity)
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _entries = new(StringComparer.Ordinal);

    public bool IsVerified(string lookup, ReadOnlySpan<byte> password, string storedHash) =>
        _entries.TryGetValue(Key(lookup, password), out var hash) && hash == storedHash;

    public void Add(string lookup, ReadOnlySpan<byte> password, string storedHash)
    {
        if (_entries.Count >= capacity)
        {
            _entries.Clear();
        }

        _entries[Key(lookup, password)] = storedHash;
    }

    private static string Key(string lookup, ReadOnlySpan<byte> password)
    {
        var lookupBytes = Encoding.UTF8.GetBytes(lookup);
        var buffer = new byte[lookupBytes.Length + 1 + password.Length];
        lookupBytes.CopyTo(buffer, 0);
        password.CopyTo(buffer.AsSpan(lookupBytes.Length + 1));
        return Convert.ToBase64String(SHA256.HashData(buffer));
    }
}
