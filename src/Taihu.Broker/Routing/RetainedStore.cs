using Taihu.Mqtt.Topics;

namespace Taihu.Broker.Routing;

/// <summary>
/// The retained messages of one namespace: the last retained message per topic. An empty payload deletes;
/// expired messages are not delivered and are swept by housekeeping. Holds a payload reference per message.
/// </summary>
public sealed class RetainedStore
{
    private readonly Dictionary<string, BrokerMessage> _messages = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _messages.Count;
            }
        }
    }

    /// <summary>Stores, replaces or (empty payload) deletes. False when the store is full and the topic is new.</summary>
    public bool Set(BrokerMessage message, int maximum)
    {
        lock (_gate)
        {
            if (message.Payload.IsEmpty)
            {
                if (_messages.Remove(message.Topic, out var removed))
                {
                    removed.Release();
                }

                return true;
            }

            if (_messages.TryGetValue(message.Topic, out var previous))
            {
                message.AddReference();
                _messages[message.Topic] = message;
                previous.Release();
                return true;
            }

            if (_messages.Count >= maximum)
            {
                return false;
            }

            message.AddReference();
            _messages.Add(message.Topic, message);
            return true;
        }
    }

    /// <summary>Adds the live retained messages matching <paramref name="filter"/> to <paramref name="into"/>, each with a reference the caller must release.</summary>
    public void CollectMatching(string filter, DateTimeOffset now, List<BrokerMessage> into)
    {
        lock (_gate)
        {
            if (!TopicValidator.HasWildcards(filter))
            {
                if (_messages.TryGetValue(filter, out var exact) && !exact.IsExpired(now))
                {
                    exact.AddReference();
                    into.Add(exact);
                }

                return;
            }

            foreach (var message in _messages.Values)
            {
                if (!message.IsExpired(now) && TopicMatcher.Matches(filter, message.Topic))
                {
                    message.AddReference();
                    into.Add(message);
                }
            }
        }
    }

    /// <summary>Removes expired messages; returns how many.</summary>
    public int RemoveExpired(DateTimeOffset now)
    {
        lock (_gate)
        {
            List<string>? expired = null;
            foreach (var (topic, message) in _messages)
            {
                if (message.IsExpired(now))
                {
                    (expired ??= []).Add(topic);
                }
            }

            if (expired is null)
            {
                return 0;
            }

            foreach (var topic in expired)
            {
                if (_messages.Remove(topic, out var message))
                {
                    message.Release();
                }
            }

            return expired.Count;
        }
    }
}
