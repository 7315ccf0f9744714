using System.Text;

namespace Taihu.Mqtt.Topics;

/// <summary>
/// Turns the UTF-8 topic of a decoded PUBLISH into a string without allocating when the same topic was seen
/// before: devices publish to the same few topics over and over, so a small per-connection cache removes the
/// one allocation that decoding would otherwise make beyond the payload. Bounded: when full it is cleared.
/// Not thread-safe; one per connection.
/// </summary>
public sealed class TopicNameCache
{
    private const int StackLimit = 256;
    private readonly int _capacity;
    // Created on the first topic, so a connection that never publishes carries only this object.
    private Dictionary<string, string>? _topics;
    private Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    public TopicNameCache(int capacity = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _capacity = capacity;
    }

    public int Count => _topics?.Count ?? 0;

    /// <summary>Returns the string for validated UTF-8 <paramref name="utf8"/>.</summary>
    public string GetOrAdd(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length > StackLimit)
        {
            return Encoding.UTF8.GetString(utf8);
        }

        Span<char> chars = stackalloc char[StackLimit];
        var count = Encoding.UTF8.GetChars(utf8, chars);
        var span = chars[..count];
        if (_topics is null)
        {
            _topics = new Dictionary<string, string>(StringComparer.Ordinal);
            _lookup = _topics.GetAlternateLookup<ReadOnlySpan<char>>();
        }
        else if (_lookup.TryGetValue(span, out var existing))
        {
            return existing;
        }

        if (_topics.Count >= _capacity)
        {
            _topics.Clear();
        }

        var topic = span.ToString();
        _topics[topic] = topic;
        return topic;
    }
}
