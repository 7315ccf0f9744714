using Taihu.Broker;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.BrokerUsers;

/// <summary>
/// A tenant's MQTT connections (its devices and broker users, all in the tenant's namespace), as EMQX's dashboard
/// lists clients: tenant administrators see them and may disconnect one (audited). Other tenants' clients are not
/// there to see: the broker is asked for this tenant's namespace only.
/// </summary>
public sealed class ConnectedClientService(MqttBroker broker, IAuditLog audit)
{
    public IReadOnlyList<ConnectedClient> List(Caller caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        caller.RequireTenantAdmin();
        var clients = broker.ListClients(DeviceSession.Namespace(caller.RequireTenant()));
        var shown = new List<ConnectedClient>(clients.Count);
        foreach (var client in clients)
        {
            shown.Add(client with { Subscriptions = client.Subscriptions.Select(DeviceTopic).ToArray() });
        }

        return shown;
    }

    /// <summary>
    /// A device's own topics live in the broker as <c>$devices/{id}/...</c> (so that no other client can reach
    /// them); they are shown as the device subscribed to them, <c>v1/devices/me/...</c>.
    /// </summary>
    private static string DeviceTopic(string filter)
    {
        const string prefix = "$devices/";
        if (!filter.StartsWith(prefix, StringComparison.Ordinal))
        {
            return filter;
        }

        var slash = filter.IndexOf('/', prefix.Length);
        return slash < 0 ? filter : "v1/devices/me" + filter[slash..];
    }

    /// <summary>Closes the client's connection (5.0 clients are told "Administrative action"); its will is published.</summary>
    public async Task DisconnectAsync(Caller caller, string clientId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(caller);
        caller.RequireTenantAdmin();
        if (!broker.DisconnectClient(DeviceSession.Namespace(caller.RequireTenant()), clientId, ReasonCode.AdministrativeAction, "Disconnected by an administrator."))
        {
            throw PlatformException.NotFound("The MQTT client");
        }

        await audit.WriteAsync(caller, "DISCONNECTED", "MQTT_CLIENT", clientId, clientId, cancellationToken: cancellationToken);
    }
}
