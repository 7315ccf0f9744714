using System.Globalization;

namespace Taihu.Sim.Running;

/// <summary>
/// The part of the fleet one simulator process runs when several share a scenario (<c>--slice 2/3</c>): device
/// <c>n</c> of every fleet belongs to slice <c>((n - 1) mod count) + 1</c>, and a gateway's devices go with their
/// gateway. Devices keep the numbers and names a single process would give them, and faults and events still pick
/// the first devices of a fleet by number, so the slices together are exactly the whole run.
/// </summary>
public readonly record struct FleetSlice(int Index, int Count)
{
    public static FleetSlice Whole { get; } = new(1, 1);

    public bool IsWhole => Count == 1;

    /// <summary>Whether the device (or gateway) numbered <paramref name="number"/> (1-based) is this slice's.</summary>
    public bool Contains(int number) => (number - 1) % Count == Index - 1;

    /// <summary>How many of the numbers 1 to <paramref name="n"/> are this slice's.</summary>
    public int CountOf(int n) => n < Index ? 0 : ((n - Index) / Count) + 1;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Index}/{Count}");

    /// <summary>Reads <c>i/n</c> (1 ≤ i ≤ n).</summary>
    public static FleetSlice Parse(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0 && int.TryParse(text.AsSpan(0, slash), NumberStyles.None, CultureInfo.InvariantCulture, out var index)
            && int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count >= 1 && index >= 1 && index <= count)
        {
            return new FleetSlice(index, count);
        }

        throw new ArgumentOutOfRangeException(nameof(text), $"--slice is 'i/n' with 1 <= i <= n, as 2/3 for the second of three simulator processes; '{text}' is not.");
    }
}
