namespace Taihu.Platform.Events;

/// <summary>
/// Told after every commit that appended to the event log, so that the consumers read it at once instead of at
/// their next poll. A separate object so that writers need not know who reads. It also keeps the last rows
/// committed by this process as they were written (<see cref="TryGetRecent"/>), so that a consumer keeping up takes
/// them from memory instead of reading and decoding them again; the log in the database stays the truth (rows of
/// other processes, and anything older, are read from it).
/// </summary>
public sealed class EventSignal
{
    private const int RecentRows = 256;
    private readonly Recent[] _recent = new Recent[RecentRows];
    private readonly Lock _gate = new();

    public event Action? Committed;

    /// <summary>A device profile changed or was deleted (its alarm rules may have).</summary>
    public event Action<Guid>? ProfileChanged;

    /// <summary>A device changed (renamed, moved to another profile) or was deleted.</summary>
    public event Action<long>? DeviceChanged;

    public void Notify() => Committed?.Invoke();

    /// <summary>A row committed by this process, as written; the row must not change afterwards. Then notifies.</summary>
    public void Notify(long position, long createdTime, DecodedRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        lock (_gate)
        {
            _recent[position % RecentRows] = new Recent(position, createdTime, row);
        }

        Notify();
    }

    /// <summary>The row at <paramref name="position"/> if it is among the recent ones.</summary>
    public bool TryGetRecent(long position, out long createdTime, out DecodedRow? row)
    {
        lock (_gate)
        {
            var entry = _recent[position % RecentRows];
            if (entry.Row is not null && entry.Position == position)
            {
                createdTime = entry.CreatedTime;
                row = entry.Row;
                return true;
            }
        }

        createdTime = 0;
        row = null;
        return false;
    }

    public void NotifyProfileChanged(Guid profileId) => ProfileChanged?.Invoke(profileId);

    public void NotifyDeviceChanged(long deviceSeq) => DeviceChanged?.Invoke(deviceSeq);

    private readonly record struct Recent(long Position, long CreatedTime, DecodedRow? Row);
}
