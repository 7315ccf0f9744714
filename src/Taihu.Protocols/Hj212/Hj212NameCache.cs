namespace Taihu.Protocols.Hj212;

/// <summary>
/// The strings a station sends again in every frame (its MN, PW, ST and CN; the CP's keys such as
/// <c>a34004-Avg</c>; short texts such as the data flag <c>N</c>), kept once per connection so that decoding
/// a frame does not allocate them again. Bounded: once <see cref="Capacity"/> names are kept, others are
/// allocated as usual. One owner (the connection's receive loop); not thread-safe.
/// </summary>
public sealed class Hj212NameCache
{
    private readonly Dictionary<string, string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    public Hj212NameCache() => _lookup = _names.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>Names kept at most (a station sends a few dozen pollutants with a few fields each).</summary>
    public int Capacity { get; init; } = 1024;

    /// <summary>Names kept now.</summary>
    public int Count => _names.Count;

    /// <summary>The kept string equal to <paramref name="text"/>, kept now if there is room.</summary>
    public string Get(ReadOnlySpan<char> text)
    {
        if (_lookup.TryGetValue(text, out var name))
        {
            return name;
        }

        name = text.ToString();
        if (_names.Count < Capacity)
        {
            _names[name] = name;
        }

        return name;
    }
}
