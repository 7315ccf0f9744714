using System.Globalization;

namespace Taihu.Bench.Measurement;

/// <summary>
/// The load generator's own garbage collections over a window: how many of each generation, their pause time in
/// all and the longest. The generator measures latency on its own clock, so a pause of its own is counted as the
/// server's latency for every call in flight meanwhile: this says how much of a tail may be the generator's.
/// <see cref="Poll"/> is called often (the pacing loop does, every millisecond or so); a collection that starts
/// and ends between two polls behind another one may be missed for the longest pause, never for the counts.
/// </summary>
public sealed class GcWatch
{
    private readonly int _gen0 = GC.CollectionCount(0);
    private readonly int _gen1 = GC.CollectionCount(1);
    private readonly int _gen2 = GC.CollectionCount(2);
    private readonly TimeSpan _paused = GC.GetTotalPauseDuration();
    private int _seen = GC.CollectionCount(0);
    private long _lastIndex;
    private TimeSpan _longest;

    /// <summary>Looks at the last collection if one happened since the last poll.</summary>
    public void Poll()
    {
        var count = GC.CollectionCount(0);
        if (count == _seen)
        {
            return;
        }

        _seen = count;
        var info = GC.GetGCMemoryInfo(GCKind.Any);
        if (info.Index == _lastIndex)
        {
            return;
        }

        _lastIndex = info.Index;
        var pause = TimeSpan.Zero;
        foreach (var part in info.PauseDurations)
        {
            pause += part;
        }

        if (pause > _longest)
        {
            _longest = pause;
        }
    }

    public string Describe()
    {
        Poll();
        return string.Create(CultureInfo.InvariantCulture,
            $"generator's own collections gen0 {GC.CollectionCount(0) - _gen0}, gen1 {GC.CollectionCount(1) - _gen1}, gen2 {GC.CollectionCount(2) - _gen2}, " +
            $"paused {(GC.GetTotalPauseDuration() - _paused).TotalMilliseconds:F0} ms in all, {_longest.TotalMilliseconds:F1} ms at most, heap {GC.GetGCMemoryInfo().HeapSizeBytes / 1e6:F0} MB");
    }
}
