namespace Taihu.Broker.Extensibility;

/// <summary>
/// Rewrites topic prefixes between what one client sees and what the broker routes, the way ThingsBoard maps a
/// device's <c>v1/devices/me/...</c> onto that device. A client publishes and subscribes with its own prefix
/// (<c>v1/devices/me/</c>); the broker stores and routes the broker prefix (<c>$devices/42/</c>); deliveries to
/// the client carry its own prefix again. Filters that start with the client prefix, wildcards included, map the
/// same way; a <c>$share/{group}/</c> filter maps its inner filter.
/// </summary>
/// <remarks>
/// A device publishes the same few topics over and over, so each direction remembers an answer: the codec hands
/// back the same string instance for a repeated topic, and the map then hands back the same mapped string without
/// allocating. A topic is remembered from its second sighting in a row (by hash), not its first: an RPC request or
/// response has a new topic per call, and remembering each would keep four strings per connection alive until the
/// next call, long enough to be promoted. Inbound topics are mapped on the connection's read loop and outbound
/// ones on its sender; each direction has its own memory, so the two never race. Use one map per connection.
/// </remarks>
public sealed class TopicMap
{
    private readonly (string Client, string Broker)[] _prefixes;
    private string? _lastIn;
    private string? _lastInMapped;
    private string? _lastOut;
    private string? _lastOutMapped;
    private int _lastInMissHash;
    private int _lastOutMissHash;

    /// <param name="prefixes">Pairs of client prefix and broker prefix; each prefix ends with '/'.</param>
    public TopicMap(params (string Client, string Broker)[] prefixes)
    {
        foreach (var (client, broker) in prefixes)
        {
            if (!client.EndsWith('/') || !broker.EndsWith('/'))
            {
                throw new ArgumentException("Every topic prefix must end with '/'.", nameof(prefixes));
            }
        }

        _prefixes = prefixes;
    }

    /// <summary>The topic the broker routes for a topic the client published (unchanged when no prefix matches).</summary>
    public string ToBroker(string topic)
    {
        if (ReferenceEquals(topic, _lastIn))
        {
            return _lastInMapped!;
        }

        var mapped = Replace(topic, toBroker: true);
        if (Remember(topic, ref _lastInMissHash))
        {
            _lastIn = topic;
            _lastInMapped = mapped;
        }

        return mapped;
    }

    /// <summary>The topic the client sees for a topic the broker delivers (unchanged when no prefix matches).</summary>
    public string ToClient(string topic)
    {
        if (ReferenceEquals(topic, _lastOut))
        {
            return _lastOutMapped!;
        }

        var mapped = Replace(topic, toBroker: false);
        if (Remember(topic, ref _lastOutMissHash))
        {
            _lastOut = topic;
            _lastOutMapped = mapped;
        }

        return mapped;
    }

    /// <summary>The filter the broker keeps for a filter the client subscribed or unsubscribed.</summary>
    public string FilterToBroker(string filter)
    {
        const string share = "$share/";
        if (filter.StartsWith(share, StringComparison.Ordinal))
        {
            var slash = filter.IndexOf('/', share.Length);
            if (slash > 0)
            {
                var inner = filter[(slash + 1)..];
                var mapped = Replace(inner, toBroker: true);
                return ReferenceEquals(mapped, inner) ? filter : string.Concat(filter.AsSpan(0, slash + 1), mapped);
            }

            return filter;
        }

        return Replace(filter, toBroker: true);
    }

    /// <summary>True when the topic missed the memory just before as well: it is worth remembering.</summary>
    private static bool Remember(string topic, ref int lastMissHash)
    {
        var hash = string.GetHashCode(topic.AsSpan());
        if (hash == lastMissHash)
        {
            return true;
        }

        lastMissHash = hash;
        return false;
    }

    private string Replace(string topic, bool toBroker)
    {
        foreach (var (client, broker) in _prefixes)
        {
            var from = toBroker ? client : broker;
            if (topic.StartsWith(from, StringComparison.Ordinal))
            {
                return string.Concat(toBroker ? broker : client, topic.AsSpan(from.Length));
            }
        }

        return topic;
    }
}
