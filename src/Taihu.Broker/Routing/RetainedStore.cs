using System.Runtime.InteropServices;
using System.Text;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Topics;

namespace Taihu.Broker.Routing;

/// <summary>
/// The retained messages of one namespace: the last retained message per topic. An empty payload deletes;
/// expired messages are not delivered and are swept by housekeeping. Holds a payload reference per message.
/// <para>
/// The store counts its messages and their bytes (topic, payload and properties: see <see cref="SizeOf"/>) and
/// refuses what would take it over either limit, except a replacement that is no larger than what it replaces.
/// </para>
/// <para>
/// When the broker has a state store, every change is also recorded, under the same lock, as the latest change
/// per topic (a message with a reference, or null for a deletion) until the background flush takes them: a
/// topic rewritten a thousand times between flushes is written once, and recording allocates nothing once the
/// buffers have grown (the flush hands back the dictionary it took, cleared, for the next round).
/// </para>
/// </summary>
public sealed class RetainedStore
{
    private readonly Dictionary<string, BrokerMessage> _messages = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly bool _tracksChanges;
    private Dictionary<string, BrokerMessage?>? _changes;
    private Dictionary<string, BrokerMessage?>? _spareChanges;
    private long _bytes;

    public RetainedStore()
    {
    }

    /// <param name="tracksChanges">Whether changes are recorded for a state store (see <see cref="TakeChanges"/>).</param>
    internal RetainedStore(bool tracksChanges)
    {
        _tracksChanges = tracksChanges;
    }

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

    /// <summary>Bytes held, counted as <see cref="SizeOf"/> does.</summary>
    public long Bytes
    {
        get
        {
            lock (_gate)
            {
                return _bytes;
            }
        }
    }

    /// <summary>What a retained message counts against the limits: its topic in UTF-8, its payload and its properties as encoded.</summary>
    public static long SizeOf(string topic, int payloadLength, MqttProperties? properties) =>
        (long)Encoding.UTF8.GetByteCount(topic) + payloadLength + (properties is null ? 0 : PropertyCodec.GetLength(properties));

    private static long SizeOf(BrokerMessage message) => SizeOf(message.Topic, message.Payload.Length, message.Properties);

    /// <summary>Stores, replaces or (empty payload) deletes. False when the store is full and the topic is new.</summary>
    public bool Set(BrokerMessage message, int maximum) => Set(message, maximum, long.MaxValue, long.MaxValue);

    /// <summary>
    /// Stores, replaces or (empty payload) deletes. False, and nothing changes, when the message is larger than
    /// <paramref name="maximumSize"/>, or when it would take the store over <paramref name="maximumCount"/>
    /// messages (a new topic) or <paramref name="maximumBytes"/> bytes.
    /// </summary>
    public bool Set(BrokerMessage message, int maximumCount, long maximumSize, long maximumBytes) => Set(message, maximumCount, maximumSize, maximumBytes, record: true);

    /// <summary>
    /// <see cref="Set(BrokerMessage, int, long, long)"/> for a change another node of the cluster accepted: not
    /// recorded for the state store, which that node writes.
    /// </summary>
    internal bool SetFromNode(BrokerMessage message, int maximumCount, long maximumSize, long maximumBytes) =>
        Set(message, maximumCount, maximumSize, maximumBytes, record: false);

    /// <summary>
    /// A retained message of another node's set, sent to a node that joined after it: taken (not recorded) only when
    /// the topic holds none, or an older one. True when it is here now or was not needed.
    /// </summary>
    internal bool SetFromNodeIfNewer(BrokerMessage message, int maximumCount, long maximumSize, long maximumBytes)
    {
        lock (_gate)
        {
            return (_messages.TryGetValue(message.Topic, out var existing) && existing.ReceivedAt >= message.ReceivedAt)
                || SetLocked(message, maximumCount, maximumSize, maximumBytes, record: false);
        }
    }

    private bool Set(BrokerMessage message, int maximumCount, long maximumSize, long maximumBytes, bool record)
    {
        ArgumentNullException.ThrowIfNull(message);
        lock (_gate)
        {
            return SetLocked(message, maximumCount, maximumSize, maximumBytes, record);
        }
    }

    /// <summary>See <see cref="Set(BrokerMessage, int, long, long)"/>. Caller holds the gate.</summary>
    private bool SetLocked(BrokerMessage message, int maximumCount, long maximumSize, long maximumBytes, bool record)
    {
        if (message.Payload.IsEmpty)
        {
            if (_messages.Remove(message.Topic, out var removed))
            {
                _bytes -= SizeOf(removed);
                removed.Release();
                RecordChangeIf(record, message.Topic, null);
            }

            return true;
        }

        var size = SizeOf(message);
        if (size > maximumSize)
        {
            return false;
        }

        if (_messages.TryGetValue(message.Topic, out var previous))
        {
            var previousSize = SizeOf(previous);
            if (size > previousSize && _bytes - previousSize + size > maximumBytes)
            {
                return false;
            }

            message.AddReference();
            _messages[message.Topic] = message;
            _bytes += size - previousSize;
            previous.Release();
            RecordChangeIf(record, message.Topic, message);
            return true;
        }

        if (_messages.Count >= maximumCount || _bytes + size > maximumBytes)
        {
            return false;
        }

        message.AddReference();
        _messages.Add(message.Topic, message);
        _bytes += size;
        RecordChangeIf(record, message.Topic, message);
        return true;
    }

    /// <summary>
    /// Whether a retained message of <paramref name="size"/> bytes on <paramref name="topic"/> would fit within
    /// <paramref name="maximumBytes"/> now (replacing what the topic holds). A check before the publish is
    /// accepted; <see cref="Set(BrokerMessage, int, long, long)"/> decides for good.
    /// </summary>
    public bool HasRoomFor(string topic, long size, long maximumBytes)
    {
        lock (_gate)
        {
            var previousSize = _messages.TryGetValue(topic, out var previous) ? SizeOf(previous) : 0;
            return size <= previousSize || _bytes - previousSize + size <= maximumBytes;
        }
    }

    /// <summary>Adds a message loaded from the state store (not recorded as a change). False when the store is full or the message too large.</summary>
    internal bool Restore(BrokerMessage message, int maximumCount, long maximumSize, long maximumBytes)
    {
        lock (_gate)
        {
            var size = SizeOf(message);
            var previousSize = _messages.TryGetValue(message.Topic, out var existing) ? SizeOf(existing) : 0;
            if (existing is not null && existing.ReceivedAt > message.ReceivedAt)
            {
                // A cluster node loads the store after joining: another node may have sent it a newer one already.
                return true;
            }

            if (size > maximumSize
                || (_messages.Count >= maximumCount && existing is null)
                || _bytes - previousSize + size > maximumBytes)
            {
                return false;
            }

            message.AddReference();
            if (_messages.Remove(message.Topic, out var previous))
            {
                _bytes -= SizeOf(previous);
                previous.Release();
            }

            _messages.Add(message.Topic, message);
            _bytes += size;
            return true;
        }
    }

    /// <summary>Records that <paramref name="topic"/> has no retained message (one loaded from the store had expired).</summary>
    internal void RecordDeletion(string topic)
    {
        lock (_gate)
        {
            RecordChange(topic, null);
        }
    }

    /// <summary>
    /// Whether changes wait for the state store. Read without the gate (a hint for the housekeeping tick: a change
    /// recorded meanwhile is seen at the next tick).
    /// </summary>
    internal bool HasChanges => Volatile.Read(ref _changes) is { Count: > 0 };

    private void RecordChangeIf(bool record, string topic, BrokerMessage? message)
    {
        if (record)
        {
            RecordChange(topic, message);
        }
    }

    /// <summary>Records that <paramref name="topic"/> now holds <paramref name="message"/> (null: deleted). Caller holds the gate.</summary>
    private void RecordChange(string topic, BrokerMessage? message)
    {
        // $SYS values are the running broker's own; restored after a restart they would mislead (Mosquitto does
        // not save them either), and rewriting them every SysInterval would be a write for nothing.
        if (!_tracksChanges || IsSys(topic))
        {
            return;
        }

        var changes = _changes ??= new Dictionary<string, BrokerMessage?>(StringComparer.Ordinal);
        message?.AddReference();
        ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(changes, topic, out var exists);
        if (exists)
        {
            slot?.Release();
        }

        slot = message;
    }

    internal static bool IsSys(string topic) => topic.Length >= 4 && topic[0] == '$' && topic.StartsWith("$SYS", StringComparison.Ordinal) && (topic.Length == 4 || topic[4] == '/');

    /// <summary>
    /// Takes the changes recorded since the last call, or null when there are none. Each message comes with a
    /// reference the caller gives back through <see cref="CompleteChanges"/>.
    /// </summary>
    internal Dictionary<string, BrokerMessage?>? TakeChanges()
    {
        lock (_gate)
        {
            if (_changes is not { Count: > 0 } changes)
            {
                return null;
            }

            _changes = _spareChanges;
            _spareChanges = null;
            return changes;
        }
    }

    /// <summary>
    /// Gives back what <see cref="TakeChanges"/> returned: written (<paramref name="saved"/>), its references are
    /// released; not written, each change goes back into the buffer unless a newer one for its topic is there.
    /// </summary>
    internal void CompleteChanges(Dictionary<string, BrokerMessage?> taken, bool saved)
    {
        lock (_gate)
        {
            foreach (var (topic, message) in taken)
            {
                if (!saved && (_changes ??= new Dictionary<string, BrokerMessage?>(StringComparer.Ordinal)).TryAdd(topic, message))
                {
                    continue;
                }

                message?.Release();
            }

            taken.Clear();
            _spareChanges ??= taken;
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
                    _bytes -= SizeOf(message);
                    message.Release();
                    RecordChange(topic, null);
                }
            }

            return expired.Count;
        }
    }
}
