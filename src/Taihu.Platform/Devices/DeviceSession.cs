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

    public string TelemetryTopic => Prefix + "telemetry";

    public string AttributesTopic => Prefix + "attributes";

    public string AttributesRequestPrefix => Prefix + "attributes/request/";

    public string GatewayPrefix => Prefix + "gateway/";

    /// <summary>RPC both ways: server-side commands go out and client-side requests come in under <c>rpc/request/</c>, replies under <c>rpc/response/</c>.</summary>
    public string RpcPrefix => Prefix + "rpc/";

    public string RpcRequestPrefix => Prefix + "rpc/request/";

    public string RpcResponsePrefix => Prefix + "rpc/response/";

    /// <summary>For a gateway: the devices behind it seen on this connection, by name.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, Device> Children { get; } = new(StringComparer.Ordinal);

    /// <summary>For a gateway: names of the devices it reported connected and not yet disconnected.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, bool> ConnectedChildren { get; } = new(StringComparer.Ordinal);

    /// <summary>The broker namespace of a tenant.</summary>
    public static string Namespace(Guid tenantId) => tenantId.ToString("N");

    /// <summary>The owner of a device's MQTT sessions (<see cref="ClientIdentity.SessionOwner"/>).</summary>
    public static string SessionOwner(Guid deviceId) => "device/" + deviceId.ToString("N");

    public static string TopicPrefix(Guid deviceId) => "$devices/" + deviceId.ToString("N") + "/";

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
