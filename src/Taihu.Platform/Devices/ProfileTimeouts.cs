using System.Collections.Concurrent;

namespace Taihu.Platform.Devices;

/// <summary>
/// Device profiles' inactivity timeouts for the connectivity tracker: one read per profile, shared by every device
/// that connects meanwhile. A node taking over another node's 5,000 devices read the same profile 5,000 times,
/// beside the connects' own work. A profile changed through any node is forgotten at once
/// (<see cref="Events.EventSignal.ProfileChanged"/>: this node's changes and, on a cluster, the other nodes'), so
/// that a device first tracked after the change gets the new timeout. A failed read is not kept.
/// </summary>
internal sealed class ProfileTimeouts
{
    private readonly IDeviceStore _devices;
    private readonly ConcurrentDictionary<(Guid Tenant, Guid Profile), Task<long>> _timeouts = new();

    public ProfileTimeouts(IDeviceStore devices, Events.EventSignal? signal)
    {
        _devices = devices;
        if (signal is not null)
        {
            signal.ProfileChanged += Forget;
        }
    }

    /// <summary>The profile's inactivity timeout in milliseconds (ThingsBoard's default for a profile not found).</summary>
    public Task<long> GetAsync(Guid tenantId, Guid profileId)
    {
        var key = (tenantId, profileId);
        var lookup = _timeouts.GetOrAdd(key, static (key, self) => self.ReadAsync(key), this);
        if (lookup.IsFaulted)
        {
            // Failed before it was kept (a read that fails later forgets itself): read again.
            _timeouts.TryRemove(KeyValuePair.Create(key, lookup));
            lookup = _timeouts.GetOrAdd(key, static (key, self) => self.ReadAsync(key), this);
        }

        return lookup;
    }

    private async Task<long> ReadAsync((Guid Tenant, Guid Profile) key)
    {
        try
        {
            var profile = await _devices.GetProfileAsync(key.Tenant, key.Profile);
            return profile?.InactivityTimeoutMs ?? DeviceProfile.DefaultInactivityTimeoutMs;
        }
        catch
        {
            _timeouts.TryRemove(key, out _);
            throw;
        }
    }

    private void Forget(Guid profileId)
    {
        foreach (var key in _timeouts.Keys)
        {
            if (key.Profile == profileId)
            {
                _timeouts.TryRemove(key, out _);
            }
        }
    }
}
