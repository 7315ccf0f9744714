namespace Taihu.Platform.Events;

/// <summary>
/// Told after every commit that appended to the event log, so that the consumers read it at once instead of at
/// their next poll. A separate object so that writers need not know who reads.
/// </summary>
public sealed class EventSignal
{
    public event Action? Committed;

    /// <summary>A device profile changed or was deleted (its alarm rules may have).</summary>
    public event Action<Guid>? ProfileChanged;

    /// <summary>A device changed (renamed, moved to another profile) or was deleted.</summary>
    public event Action<long>? DeviceChanged;

    public void Notify() => Committed?.Invoke();

    public void NotifyProfileChanged(Guid profileId) => ProfileChanged?.Invoke(profileId);

    public void NotifyDeviceChanged(long deviceSeq) => DeviceChanged?.Invoke(deviceSeq);
}
