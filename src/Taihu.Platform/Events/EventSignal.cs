namespace Taihu.Platform.Events;

/// <summary>
/// Told after every commit that appended to the event log, so that the consumers read it at once instead of at
/// their next poll. A separate object so that writers need not know who reads. It also keeps the last rows
/// committed by this process as they were written to the log (<see cref="TryGetRecent"/>), so that a consumer
/// keeping up takes them from memory instead of reading them again; the log in the database stays the truth (rows
/// of other processes, and anything older, are read from it).
/// </summary>
/// <remarks>
/// The rows are kept encoded, as the log holds them (about 12 bytes a point), and each consumer decodes them into
/// its own reused row. A decoded copy kept here instead (56 bytes a point: a batch of 2,000 points is a 112 KB
/// array, on the large object heap) was allocated for every batch and freed only by full collections: at 100,000
/// points a second the server's memory swung by about 100 MiB between them.
/// </remarks>
public sealed class EventSignal
{
    private const int RecentRows = 256;
    private readonly EventLogRow[] _recent = new EventLogRow[RecentRows];
    private readonly Lock _gate = new();

    public event Action? Committed;

    /// <summary>A device profile changed or was deleted (its alarm rules may have).</summary>
    public event Action<Guid>? ProfileChanged;

    /// <summary>A device changed (renamed, moved to another profile) or was deleted.</summary>
    public event Action<long>? DeviceChanged;

    public void Notify() => Committed?.Invoke();

    /// <summary>A row committed by this process, as appended to the log (its body is not changed afterwards). Then notifies.</summary>
    public void Notify(EventLogRow row)
    {
        ArgumentNullException.ThrowIfNull(row.Body);
        lock (_gate)
        {
            _recent[row.Position % RecentRows] = row;
        }

        Notify();
    }

    /// <summary>The row at <paramref name="position"/> if it is among the recent ones.</summary>
    public bool TryGetRecent(long position, out EventLogRow row)
    {
        lock (_gate)
        {
            row = _recent[position % RecentRows];
        }

        if (row.Body is not null && row.Position == position)
        {
            return true;
        }

        row = default;
        return false;
    }

    public void NotifyProfileChanged(Guid profileId) => ProfileChanged?.Invoke(profileId);

    public void NotifyDeviceChanged(long deviceSeq) => DeviceChanged?.Invoke(deviceSeq);
}
