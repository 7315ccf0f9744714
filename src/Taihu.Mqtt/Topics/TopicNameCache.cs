using System.Text;

namespace Taihu.Mqtt.Topics;

/// <summary>
/// Turns the UTF-8 topic of a decoded PUBLISH into a string without allocating when the same topic was seen
/// before: devices publish to the same few topics over and over, so a small per-connection cache removes the
/// one allocation that decoding would otherwise make beyond the payload. Bounded: when full it is cleared.
/// A topic is kept from its second sighting among the last few new ones: a topic used once (an RPC reply's
/// <c>.../rpc/response/{id}</c>, a new one per call) is never kept, since a string kept by a connection that lives
/// for days is carried by the collector into its oldest generation, and such topics would fill the cache with
/// them. Not thread-safe; one per connection.
/// </summary>
public sealed class TopicNameCache
{
    private const int StackLimit = 256;
    private readonly int _capacity;
    // Created on the first topic, so a connection that never publishes carries only this object.
    private Dictionary<string, string>? _topics;
    private Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    // Hashes of the last few topics not in the cache (no strings: nothing outlives the message that named it).
    private int _seen0;
    private int _seen1;
    private int _seen2;
    private int _seen3;
    private int _next;

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

        var hash = string.GetHashCode(span, StringComparison.Ordinal);
        if (hash != _seen0 && hash != _seen1 && hash != _seen2 && hash != _seen3)
        {
            // First sighting: remembered by its hash only.
            switch (_next++ & 3)
            {
                case 0: _seen0 = hash; break;
                case 1: _seen1 = hash; break;
                case 2: _seen2 = hash; break;
                default: _seen3 = hash; break;
            }

            return span.ToString();
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
