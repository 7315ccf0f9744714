using System.Globalization;
using System.Runtime;

namespace Taihu.Bench.Measurement;

/// <summary>
/// A stretch of the generator's run in which its collector does not run (<see cref="GC.TryStartNoGCRegion(long)"/>),
/// so that a collection of its own does not stop every simulated device and the caller's clock at once.
/// </summary>
/// <remarks>
/// Real devices are separate machines and never pause together. 10,000 MQTTnet clients in one process do: each keeps
/// a received message's state alive until its next packet, so the generator's collections promoted megabytes and
/// paused it 60 to 97 ms at a time, and every call in flight counted that as the server's latency. Starting the
/// region makes one blocking collection; the region ends early (and the generator collects as usual) once more than
/// its budget is allocated, which <see cref="End"/> reports.
/// </remarks>
public sealed class NoGcWindow : IDisposable
{
    private readonly long _megabytes;
    private readonly long _allocatedAtStart;

    private NoGcWindow(long megabytes, bool started)
    {
        _megabytes = megabytes;
        Started = started;
        _allocatedAtStart = GC.GetTotalAllocatedBytes();
    }

    /// <summary>Whether the region began (false with a budget of 0, or when the runtime refused it).</summary>
    public bool Started { get; }

    /// <summary>Starts a region of <paramref name="megabytes"/> (nothing with 0).</summary>
    public static NoGcWindow Start(int megabytes)
    {
        if (megabytes <= 0)
        {
            return new NoGcWindow(0, false);
        }

        bool started;
        try
        {
            started = GC.TryStartNoGCRegion((long)megabytes << 20);
        }
        catch (ArgumentOutOfRangeException)
        {
            started = false; // more than this runtime allows in one region
        }

        return new NoGcWindow(megabytes, started);
    }

    /// <summary>Ends the region and says whether it held until now.</summary>
    public string End()
    {
        if (!Started)
        {
            return _megabytes == 0 ? "generator collected as usual" : $"the runtime refused the generator a no-GC region of {_megabytes} MB";
        }

        var allocated = (GC.GetTotalAllocatedBytes() - _allocatedAtStart) / 1e6;
        var held = GCSettings.LatencyMode == GCLatencyMode.NoGCRegion;
        Dispose();
        return held
            ? string.Create(CultureInfo.InvariantCulture, $"generator in a no-GC region of {_megabytes} MB from before the warm-up to the window's end: it held ({allocated:F0} MB allocated)")
            : string.Create(CultureInfo.InvariantCulture, $"generator's no-GC region of {_megabytes} MB ran out ({allocated:F0} MB allocated) and it collected");
    }

    public void Dispose()
    {
        // Once ended (here, or by a collection when the budget ran out) the mode is no longer NoGCRegion.
        if (Started && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion)
        {
            try
            {
                GC.EndNoGCRegion();
            }
            catch (InvalidOperationException)
            {
                // A collection ended it already.
            }
        }
    }
}
