using Taihu.Broker;
using Taihu.Platform;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.WebConsole;

/// <summary>
/// The Home page's figures, read afresh on every request (the page renders them, then polls
/// <c>/console/home/stats</c>). A tenant's users see their tenant: devices, how many are online, active alarms by
/// severity, and the tenant's own total of telemetry points stored. The system administrator sees the server:
/// tenants, broker connections, and the totals of PUBLISH packets in and out and of telemetry points stored. The page
/// computes rates from totals between two polls. Server-wide figures are not shown to tenants: they would tell one
/// tenant how busy the others are.
/// </summary>
public sealed class HomeStats(IDeviceService devices, DeviceDataService data, AlarmService alarms, TenantService tenants, BrokerMetrics broker, TelemetryIngest ingest)
{
    public async Task<Dictionary<string, long>> ReadAsync(Caller caller, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var stats = new Dictionary<string, long>(StringComparer.Ordinal);
        if (caller.Authority == Authority.SysAdmin)
        {
            stats["tenants"] = (await tenants.ListTenantsAsync(caller, new PageRequest(1), cancellationToken)).TotalElements;
            stats["connections"] = broker.Connected;
            stats["publishReceived"] = broker.PublishReceived;
            stats["publishSent"] = broker.PublishSent;
            stats["pointsStored"] = ingest.PointsStored;
            return stats;
        }

        var total = (await devices.ListAsync(caller, new PageRequest(1), null, cancellationToken)).TotalElements;
        var online = await data.CountActiveDevicesAsync(caller, cancellationToken);
        stats["devices"] = total;
        stats["online"] = online;
        stats["offline"] = Math.Max(0, total - online);
        stats["pointsStored"] = ingest.PointsStoredOf(caller.RequireTenant());
        var active = new AlarmStatusFilter(Cleared: false, Acknowledged: null);
        foreach (var severity in Enum.GetValues<AlarmSeverity>())
        {
            stats["alarms" + severity.Name()] = await alarms.CountAsync(caller, new AlarmQuery(new PageRequest(1), null, active, [severity]), cancellationToken);
        }

        return stats;
    }
}
