using Taihu.Broker.Extensibility;

namespace Taihu.Platform.Devices;

/// <summary>
/// What the platform keeps with a device's MQTT connection (its <see cref="ClientIdentity.State"/>). The broker
/// routes the device's <c>v1/devices/me/...</c> as <c>$devices/{id}/...</c> and its <c>v1/gateway/...</c> as
/// <c>$devices/{id}/gateway/...</c> in its tenant's namespace: topics that begin with '$' are not matched by
/// <c>#</c> or <c>+</c>, so no other device of the tenant sees them by a wildcard.
/// </summary>
public sealed class DeviceSession(Device device)
{
    public Device Device { get; } = device;

    /// <summary>The broker's prefix for this device's own topics: <c>$devices/{id}/</c>.</summary>
    public string Prefix { get; } = TopicPrefix(device.Id);

    // The device's own topics as suffixes of Prefix. The publish path compares with these (IsOwn, IsUnder) instead
    // of building the full topics: a device's every publish is sorted by them, and that cost about ten strings a message.
    public const string Telemetry = "telemetry";
    public const string Attributes = "attributes";
    public const string AttributesRequest = "attributes/request/";
    public const string Gateway = "gateway/";

    /// <summary>RPC both ways: server-side commands go out and client-side requests come in under <c>rpc/request/</c>, replies under <c>rpc/response/</c>.</summary>
    public const string Rpc = "rpc/";
    public const string RpcRequest = "rpc/request/";
    public const string RpcResponse = "rpc/response/";

    public string TelemetryTopic => Prefix + Telemetry;

    public string AttributesTopic => Prefix + Attributes;

    public string AttributesRequestPrefix => Prefix + AttributesRequest;

    public string GatewayPrefix => Prefix + Gateway;

    public string RpcPrefix => Prefix + Rpc;

    public string RpcRequestPrefix => Prefix + RpcRequest;

    public string RpcResponsePrefix => Prefix + RpcResponse;

    /// <summary>Whether <paramref name="topic"/> is this device's own topic <c>{Prefix}{suffix}</c>.</summary>
    public bool IsOwn(string topic, string suffix) =>
        topic.Length == Prefix.Length + suffix.Length && topic.StartsWith(Prefix, StringComparison.Ordinal)
            && topic.AsSpan(Prefix.Length).SequenceEqual(suffix);

    /// <summary>Whether <paramref name="topic"/> is under this device's <c>{Prefix}{suffixPrefix}</c>.</summary>
    public bool IsUnder(string topic, string suffixPrefix) =>
        topic.Length >= Prefix.Length + suffixPrefix.Length && topic.StartsWith(Prefix, StringComparison.Ordinal)
            && topic.AsSpan(Prefix.Length).StartsWith(suffixPrefix);

    /// <summary>What follows <c>{Prefix}{suffixPrefix}</c> in a topic that <see cref="IsUnder"/> it.</summary>
    public string After(string topic, string suffixPrefix) => topic[(Prefix.Length + suffixPrefix.Length)..];

    // Made for a gateway when it first names a device (two concurrent dictionaries are about 1 KB: every connected
    // device carried them).
    private System.Collections.Concurrent.ConcurrentDictionary<string, Device>? _children;
    private System.Collections.Concurrent.ConcurrentDictionary<string, bool>? _connectedChildren;

    /// <summary>For a gateway: the devices behind it seen on this connection, by name.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, Device> Children =>
        _children ?? LazyInitializer.EnsureInitialized(ref _children, static () => new(StringComparer.Ordinal));

    /// <summary>For a gateway: names of the devices it reported connected and not yet disconnected.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, bool> ConnectedChildren =>
        _connectedChildren ?? LazyInitializer.EnsureInitialized(ref _connectedChildren, static () => new(StringComparer.Ordinal));

    /// <summary>Whether a gateway reported any device connected on this connection (without making the set).</summary>
    public bool HasConnectedChildren => _connectedChildren is { IsEmpty: false };

    /// <summary>The broker namespace of a tenant.</summary>
    public static string Namespace(Guid tenantId) =>
        Namespaces.TryGetValue(tenantId, out var name) ? name : Namespaces.GetOrAdd(tenantId, static id => id.ToString("N"));

    // Every message the platform sends a device names its tenant's namespace: one string per tenant, not per message.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, string> Namespaces = new();

    /// <summary>The owner of a device's MQTT sessions (<see cref="ClientIdentity.SessionOwner"/>).</summary>
    public static string SessionOwner(Guid deviceId) => "device/" + deviceId.ToString("N");

    public static string TopicPrefix(Guid deviceId) => "$devices/" + deviceId.ToString("N") + "/";

    /// <summary><c>$devices/{id}/{suffix}{number}</c> in one string (a command's topic, a thousand a second).</summary>
    public static string OwnTopic(Guid deviceId, string suffix, int number) =>
        string.Create(10 + 32 + suffix.Length + CountDigits(number), (deviceId, suffix, number), static (span, state) =>
        {
            "$devices/".CopyTo(span);
            state.deviceId.TryFormat(span[9..], out _, "N");
            span[41] = '/';
            state.suffix.CopyTo(span[42..]);
            state.number.TryFormat(span[(42 + state.suffix.Length)..], out _, default, System.Globalization.CultureInfo.InvariantCulture);
        });

    private static int CountDigits(int number)
    {
        if (number < 0)
        {
            return number.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
        }

        var digits = 1;
        while (number >= 10)
        {
            number /= 10;
            digits++;
        }

        return digits;
    }

    /// <summary>The identity a device connects with.</summary>
    public static ClientIdentity IdentityFor(Device device, string? userName, PublishRateLimits? rateLimits = null)
    {
        var session = new DeviceSession(device);
        return new ClientIdentity(Namespace(device.TenantId), userName)
        {
            State = session,
            // Sessions are kept per device: another device that presents the same client id gets its own.
            SessionOwner = SessionOwner(device.Id),
            Topics = new TopicMap(("v1/devices/me/", session.Prefix), ("v1/gateway/", session.GatewayPrefix)),
            // The profile's publish limits replace the broker's; what the profile leaves out stays the broker's.
            MaximumPublishRate = rateLimits?.MessagesPerSecond,
            MaximumPublishBytesRate = rateLimits?.BytesPerSecond,
        };
    }
}

/// <summary>A connection that logged in as <c>provision</c>: it may only ask for credentials and hear the answer.</summary>
public sealed class ProvisioningSession(System.Net.IPAddress address)
{
    /// <summary>The source address the connection came from (its provisioning failures count against it).</summary>
    public System.Net.IPAddress Address { get; } = address;

    public const string RequestTopic = "/provision/request";
    public const string ResponseTopic = "/provision/response";

    /// <summary>Each provisioning connection gets a namespace of its own, so answers reach only the one who asked.</summary>
    public static ClientIdentity NewIdentity(System.Net.IPAddress address) =>
        new("provision/" + Guid.NewGuid().ToString("N"), "provision") { State = new ProvisioningSession(address) };
}
