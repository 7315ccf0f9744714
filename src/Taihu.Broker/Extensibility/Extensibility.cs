using System.Net;
using System.Security.Cryptography.X509Certificates;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Extensibility;

/// <summary>
/// Who a connected client is, as the authenticator decided. <see cref="Namespace"/> scopes everything the client
/// can reach: topics, retained messages, $share groups, $SYS and client-id takeover. Two clients in different
/// namespaces can never see each other. The default namespace is the empty string.
/// </summary>
public sealed record ClientIdentity(string Namespace, string? UserName = null)
{
    public static readonly ClientIdentity Anonymous = new("");

    /// <summary>
    /// Who owns the sessions this client makes, within its namespace: a session is found again only by the same
    /// owner with the same client id, so two identities that present one client id never see or take over each
    /// other's session (a device's is its device id). Null: the namespace alone, as in a plain broker, where any
    /// client with the id resumes the session and takes over a live connection.
    /// </summary>
    public string? SessionOwner { get; init; }

    /// <summary>Whatever the authenticator wants to keep with the connection (a device id, say).</summary>
    public object? State { get; init; }

    /// <summary>
    /// Topic prefixes this client sees differently from the broker (a device's <c>v1/devices/me/</c>), or null.
    /// Authorizers, observers and subscribers see the broker's topics; this client sees its own.
    /// </summary>
    public TopicMap? Topics { get; init; }

    /// <summary>
    /// PUBLISH packets per second this client may send, overriding <see cref="BrokerOptions.MaximumPublishRatePerConnection"/>;
    /// 0 is no limit, null takes the broker's. Lets a platform set limits per tenant or per kind of device.
    /// </summary>
    public int? MaximumPublishRate { get; init; }

    /// <summary>
    /// PUBLISH payload bytes per second this client may send, overriding
    /// <see cref="BrokerOptions.MaximumPublishBytesRatePerConnection"/>; 0 is no limit, null takes the broker's.
    /// </summary>
    public long? MaximumPublishBytesRate { get; init; }
}

/// <summary>What a CONNECT presents for authentication.</summary>
public sealed class ConnectContext
{
    public required string ClientId { get; init; }
    public string? UserName { get; init; }
    public ReadOnlyMemory<byte>? Password { get; init; }
    public required ProtocolVersion ProtocolVersion { get; init; }
    public EndPoint? RemoteEndPoint { get; init; }
    public X509Certificate2? ClientCertificate { get; init; }
    public string? AuthenticationMethod { get; init; }
    public ReadOnlyMemory<byte>? AuthenticationData { get; init; }
    public required ConnectPacket Packet { get; init; }
}

/// <summary>The authenticator's answer: a success code with an identity, or a refusal code.</summary>
public readonly record struct AuthenticationResult(ReasonCode ReasonCode, ClientIdentity? Identity, string? ReasonString = null)
{
    public static AuthenticationResult Success(ClientIdentity identity) => new(ReasonCode.Success, identity);

    public static AuthenticationResult Fail(ReasonCode code, string? reason = null) => new(code, null, reason);
}

/// <summary>Decides whether a CONNECT may proceed and who the client is.</summary>
public interface IMqttAuthenticator
{
    ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken);
}

/// <summary>One step of an enhanced (AUTH) exchange: continue with data for the client, or finish.</summary>
public readonly record struct AuthenticationStep(ReasonCode ReasonCode, ReadOnlyMemory<byte>? ServerData, ClientIdentity? Identity)
{
    public static AuthenticationStep Continue(ReadOnlyMemory<byte>? data) => new(ReasonCode.ContinueAuthentication, data, null);

    public static AuthenticationStep Success(ClientIdentity identity, ReadOnlyMemory<byte>? data = null) => new(ReasonCode.Success, data, identity);

    public static AuthenticationStep Fail(ReasonCode code) => new(code, null, null);
}

/// <summary>
/// Enhanced authentication (MQTT 5.0 section 4.12): called with the Authentication Method and Data of CONNECT
/// and then of each AUTH the client sends, until it returns success or a failure.
/// </summary>
public interface IMqttEnhancedAuthenticator
{
    /// <summary>True when this authenticator speaks <paramref name="method"/>.</summary>
    bool Supports(string method);

    ValueTask<AuthenticationStep> AuthenticateAsync(ConnectContext context, int step, ReadOnlyMemory<byte>? clientData, CancellationToken cancellationToken);
}

/// <summary>Decides what an authenticated client may publish and subscribe to.</summary>
public interface IMqttAuthorizer
{
    /// <summary>Success, or the reason code the PUBACK/PUBREC carries (0x87 Not authorized, usually).</summary>
    ValueTask<ReasonCode> AuthorizePublishAsync(ClientIdentity identity, string clientId, string topic, CancellationToken cancellationToken);

    /// <summary>Success, or the reason code the SUBACK carries for that filter.</summary>
    ValueTask<ReasonCode> AuthorizeSubscribeAsync(ClientIdentity identity, string clientId, string filter, CancellationToken cancellationToken);
}

/// <summary>
/// An accepted publish, as an observer sees it. Read the packet before the observer first awaits: for QoS 1 the
/// connection reads on while the observer's task is pending and reuses the packet object for its next PUBLISH.
/// The payload's memory stays valid until the task completes. Copy what must be kept longer.
/// </summary>
public readonly record struct ObservedPublish(ClientIdentity Identity, string ClientId, PublishPacket Packet);

/// <summary>
/// Sees every accepted PUBLISH before it is routed. The reason code it returns is what the PUBACK or PUBREC
/// carries, and the acknowledgement waits for it: this is how the platform acknowledges only what it has
/// committed. A failure code stops the message from being routed. QoS 1 publishes are pipelined: while one waits
/// for its observer the connection reads on, and acknowledgements and routing follow in the order the publishes
/// came; QoS 0 and 2 wait in line.
/// </summary>
public interface IPublishObserver
{
    ValueTask<ReasonCode> OnPublishAsync(ObservedPublish publish, CancellationToken cancellationToken);

    /// <summary>
    /// Whether an accepted publish is routed to subscribers (and retained). False for messages that are requests
    /// to the server rather than messages to other clients: a device that publishes its attributes on the topic
    /// it also subscribes to for updates must not hear its own publish back.
    /// </summary>
    bool Routes(ClientIdentity identity, string topic) => true;
}

/// <summary>
/// Told when an authenticated client connects and when its connection ends (the platform keeps each device's
/// connectivity with this). Called on the connection's own thread: return quickly and do not block.
/// </summary>
public interface IClientLifecycleObserver
{
    void OnConnected(ClientIdentity identity, string clientId);

    void OnDisconnected(ClientIdentity identity, string clientId);

    /// <summary>
    /// A subscription was granted and is in place (its SUBACK is queued ahead of anything routed to it from now
    /// on): a server that has messages waiting for this filter can publish them now. Called on the connection's
    /// own thread: return quickly and do not block.
    /// </summary>
    void OnSubscribed(ClientIdentity identity, string clientId, string filter, QoS grantedQoS)
    {
    }
}

/// <summary>
/// Told when a server-published message reached a subscriber: for a QoS 1 or 2 delivery when the subscriber's
/// PUBACK or PUBCOMP completes it, for QoS 0 when it is written to the connection. Called once per delivery (a
/// message with several subscribers may be reported several times), under the broker's locks: return at once and
/// do not block or call back into the broker.
/// </summary>
public interface IDeliveryListener
{
    void OnDelivered(QoS qos);
}

/// <summary>Publishes from the server into the broker (pushes to devices).</summary>
public interface IMqttServerPublisher
{
    /// <summary>Routes <paramref name="packet"/> to the subscribers in <paramref name="ns"/> and stores it if retained.</summary>
    void Publish(string ns, PublishPacket packet);

    /// <summary>
    /// Routes <paramref name="packet"/> like <see cref="Publish(string, PublishPacket)"/> and tells
    /// <paramref name="listener"/> of each delivery that reaches a subscriber. Returns the number of sessions it was
    /// handed to (connected or not); 0 when nobody subscribes.
    /// </summary>
    int Publish(string ns, PublishPacket packet, IDeliveryListener? listener);

    /// <summary>
    /// Delivers <paramref name="packet"/> to this process's matching subscribers only: on a cluster node, never
    /// forwarded to other nodes, and a subscriber there is no delivery (a command meant for a device connected
    /// here). Not retained. Returns the number of sessions it was handed to; 0 when nobody here subscribes.
    /// </summary>
    int PublishHere(string ns, PublishPacket packet, IDeliveryListener? listener);
}

/// <summary>A connected client as operators see it: who, which protocol, from where, what it subscribes to, what waits for it.</summary>
public sealed record ConnectedClient(string ClientId, string? UserName, Taihu.Mqtt.ProtocolVersion Version, string? RemoteAddress,
    IReadOnlyList<string> Subscriptions, int Queued, int Inflight);

/// <summary>Closes connections from the server side (a device whose credentials changed, a deleted tenant or user).</summary>
public interface IMqttClientDisconnector
{
    /// <summary>
    /// Closes every connected client whose identity <paramref name="match"/> accepts, telling 5.0 clients
    /// <paramref name="code"/> and <paramref name="reason"/>. Returns how many were closed.
    /// </summary>
    int Disconnect(Func<ClientIdentity, bool> match, ReasonCode code, string? reason);
}

/// <summary>The default until a platform plugs in: everyone is allowed, in one namespace.</summary>
public sealed class AllowAllAuthenticator : IMqttAuthenticator, IMqttAuthorizer
{
    public static readonly AllowAllAuthenticator Instance = new();

    public ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken) =>
        ValueTask.FromResult(AuthenticationResult.Success(context.UserName is null ? ClientIdentity.Anonymous : new ClientIdentity("", context.UserName)));

    public ValueTask<ReasonCode> AuthorizePublishAsync(ClientIdentity identity, string clientId, string topic, CancellationToken cancellationToken) => ValueTask.FromResult(ReasonCode.Success);

    public ValueTask<ReasonCode> AuthorizeSubscribeAsync(ClientIdentity identity, string clientId, string filter, CancellationToken cancellationToken) => ValueTask.FromResult(ReasonCode.Success);
}
