using System.Collections.Concurrent;

namespace Taihu.Platform.Devices;

/// <summary>
/// The devices found by their credentials' lookup keys (token, MQTT basic user or client id, certificate
/// thumbprint), kept for <c>Security:DeviceCacheSeconds</c> so that a reconnect storm, or an HTTP device that sends
/// its token with every request, does not read the database for each. Only devices found are kept: unknown
/// credentials are read every time (and counted against their address by the authentication limiter).
/// </summary>
/// <remarks>
/// Any change to a device, its credentials or its profile empties the whole cache: on this node through the store
/// that made it (after its commit) and the device service (a tenant deleted), on the others through the cluster's
/// device-change and disconnect messages. Changes are rare beside connections, so emptying everything is cheaper
/// than knowing which keys a device had. A lookup that began before an emptying must not put back what it read:
/// each emptying advances a generation, and an entry read under an older generation is not kept (checked again
/// after it is added, so that an emptying between the check and the write still wins). Bounded: when full, it is
/// emptied and refilled.
/// </remarks>
public sealed class DeviceCredentialsCache
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly int _capacity;
    private readonly long _lifetimeTicks;
    private long _generation;

    /// <param name="lifetime">How long a device found stays; zero keeps nothing.</param>
    public DeviceCredentialsCache(TimeProvider time, int capacity, TimeSpan lifetime, Events.EventSignal? signal = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        _time = time;
        _capacity = capacity;
        _lifetimeTicks = (long)(lifetime.TotalSeconds * time.TimestampFrequency);
        if (signal is not null)
        {
            // Another node's change arrives as these (RpcAcrossNodes); this node's own too, harmlessly.
            signal.DeviceChanged += _ => Clear();
            signal.ProfileChanged += _ => Clear();
        }
    }

    public bool Enabled => _lifetimeTicks > 0 && _capacity > 0;

    /// <summary>Taken before the database is read; passed to <see cref="Add"/> with what was read.</summary>
    public long Generation => Volatile.Read(ref _generation);

    public int Count => _entries.Count;

    public bool TryGet(string lookup, out StoredCredentials? found)
    {
        if (_entries.TryGetValue(lookup, out var entry) && _time.GetTimestamp() - entry.Added < _lifetimeTicks)
        {
            found = entry.Found;
            return true;
        }

        found = null;
        return false;
    }

    /// <summary>Keeps <paramref name="found"/>, unless the cache was emptied since <paramref name="generation"/> was taken.</summary>
    public void Add(string lookup, StoredCredentials found, long generation)
    {
        if (!Enabled || Volatile.Read(ref _generation) != generation)
        {
            return;
        }

        if (_entries.Count >= _capacity)
        {
            _entries.Clear();
        }

        var entry = new Entry(found, _time.GetTimestamp());
        _entries[lookup] = entry;
        if (Volatile.Read(ref _generation) != generation)
        {
            // Emptied while this was being written: what was read may be what the change replaced.
            _entries.TryRemove(new KeyValuePair<string, Entry>(lookup, entry));
        }
    }

    /// <summary>Forgets every device (a device, its credentials or its profile changed, or a tenant was deleted).</summary>
    public void Clear()
    {
        Interlocked.Increment(ref _generation);
        _entries.Clear();
    }

    // A class: the removal above must match this very entry, not an equal one.
    private sealed class Entry(StoredCredentials found, long added)
    {
        public StoredCredentials Found { get; } = found;

        public long Added { get; } = added;
    }
}
