using Microsoft.AspNetCore.Connections;
using Taihu.Platform.Devices;

namespace Taihu.Server.Protocols;

/// <summary>
/// The open connections of one TCP protocol listener (HJ 212, JT/T 808) by the devices they speak for, so that a
/// device's deletion or new credentials closes them as it closes an MQTT client (<see cref="DeviceRevocations"/>),
/// and so that a JT/T 808 terminal authenticating on a second connection closes the first (<see cref="TakeOver"/>),
/// as an MQTT client id does. Owned by the listener; devices never reference it. Closing is an abort: these
/// protocols have no goodbye, and the connection's own loop then ends its sessions.
/// </summary>
internal sealed class DeviceConnections
{
    private readonly Dictionary<Guid, List<Entry>> _byDevice = [];
    private readonly Lock _gate = new();

    /// <summary>Registers for revocations for the life of the process (the listener's services are singletons).</summary>
    public DeviceConnections(DeviceRevocations revocations)
    {
        ArgumentNullException.ThrowIfNull(revocations);
        revocations.Revoked += OnRevoked;
    }

    /// <summary><paramref name="connection"/> now speaks for <paramref name="device"/> (beside any other connection of it).</summary>
    public void Add(Device device, ConnectionContext connection) => Register(device, connection, takeOver: false);

    /// <summary><paramref name="connection"/> now speaks for <paramref name="device"/>, and every other connection of it is closed.</summary>
    public void TakeOver(Device device, ConnectionContext connection) => Register(device, connection, takeOver: true);

    /// <summary>The connection no longer speaks for the device (it ended, or the station went to another device).</summary>
    public void Remove(Device device, ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(device);
        lock (_gate)
        {
            if (_byDevice.TryGetValue(device.Id, out var list))
            {
                list.RemoveAll(e => e.Connection == connection);
                if (list.Count == 0)
                {
                    _byDevice.Remove(device.Id);
                }
            }
        }
    }

    private void Register(Device device, ConnectionContext connection, bool takeOver)
    {
        ArgumentNullException.ThrowIfNull(device);
        List<ConnectionContext>? older = null;
        lock (_gate)
        {
            if (!_byDevice.TryGetValue(device.Id, out var list))
            {
                _byDevice[device.Id] = list = [];
            }

            if (takeOver)
            {
                foreach (var entry in list)
                {
                    if (entry.Connection != connection)
                    {
                        (older ??= []).Add(entry.Connection);
                    }
                }

                list.RemoveAll(e => e.Connection != connection);
            }

            if (!list.Exists(e => e.Connection == connection))
            {
                list.Add(new Entry(device.TenantId, connection));
            }
        }

        if (older is not null)
        {
            Abort(older, "The device connected again on another connection.");
        }
    }

    private void OnRevoked(DeviceRevocation revocation)
    {
        List<ConnectionContext>? closing = null;
        lock (_gate)
        {
            foreach (var (deviceId, list) in _byDevice)
            {
                foreach (var entry in list)
                {
                    if (revocation.DeviceId == deviceId || (revocation.TenantId is { } tenant && tenant == entry.TenantId))
                    {
                        (closing ??= []).Add(entry.Connection);
                    }
                }
            }
        }

        if (closing is not null)
        {
            Abort(closing, revocation.Reason);
        }
    }

    private void Abort(List<ConnectionContext> connections, string reason)
    {
        foreach (var connection in connections)
        {
            connection.Abort(new ConnectionAbortedException(reason));
        }
    }

    private readonly record struct Entry(Guid TenantId, ConnectionContext Connection);
}
