using Taihu.Broker.Extensibility;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Routing;

/// <summary>One subscription of one session to one filter.</summary>
public sealed class Subscription
{
    public required MqttSession Session { get; init; }
    /// <summary>The filter as matched (for a shared subscription, without the $share/{group}/ prefix).</summary>
    public required string Filter { get; init; }
    /// <summary>The filter as the client wrote it (the session's key).</summary>
    public required string RawFilter { get; init; }
    public string? ShareGroup { get; init; }
    public QoS QoS { get; set; }
    public bool NoLocal { get; set; }
    public bool RetainAsPublished { get; set; }
    public RetainHandling RetainHandling { get; set; }
    public uint SubscriptionId { get; set; }
}

/// <summary>A $share group: the members of one group on one filter, taking messages in turn.</summary>
public sealed class SharedGroup
{
    public SharedGroup(string name, string filter)
    {
        Name = name;
        Filter = filter;
    }

    public string Name { get; }
    public string Filter { get; }
    public List<Subscription> Members { get; } = [];
    internal int Next;
}

/// <summary>
/// The subscriptions of one namespace, as a trie of topic levels.
/// <para>
/// Each node has its literal children in a dictionary, and its '+' and '#' children in fields of their own, so
/// that matching a topic walks one path per wildcard branch and never tests a filter that cannot match. Topic
/// levels are looked up as spans of the topic (the dictionary's alternate lookup), so a publish allocates nothing
/// here. Readers (publishes) share a lock; writers (subscribe, unsubscribe) take it alone: subscriptions change
/// far less often than messages flow.
/// </para>
/// </summary>
/// <param name="ns">The namespace whose subscriptions these are (for <paramref name="clusterLink"/>).</param>
/// <param name="clusterLink">On a cluster node, told when a filter gets its first subscriber and loses its last.</param>
public sealed class SubscriptionTrie(string ns = "", IMqttClusterLink? clusterLink = null) : IDisposable
{
    private readonly TrieNode _root = new();
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private int _count;

    // Set by RemoveAt when a removal left its filter (or its shared group) without subscribers on this node (under
    // the write lock).
    private bool _filterEmptied;

    public void Dispose() => _lock.Dispose();

    /// <summary>Subscriptions held, shared ones included.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Adds <paramref name="subscription"/>, replacing the same session's earlier subscription to the same filter. Returns true if it is new.</summary>
    public bool Add(Subscription subscription)
    {
        _lock.EnterWriteLock();
        try
        {
            var node = _root;
            foreach (var level in new LevelEnumerator(subscription.Filter))
            {
                node = node.GetOrAddChild(level);
            }

            if (subscription.ShareGroup is { } groupName)
            {
                node.Shared ??= new Dictionary<string, SharedGroup>(StringComparer.Ordinal);
                if (!node.Shared.TryGetValue(groupName, out var group))
                {
                    group = new SharedGroup(groupName, subscription.Filter);
                    node.Shared.Add(groupName, group);
                }

                var isNewMember = Replace(group.Members, subscription);
                if (isNewMember && group.Members.Count == 1)
                {
                    clusterLink?.OnSharedRouteAdded(ns, groupName, subscription.Filter);
                }

                return isNewMember;
            }

            node.Subscriptions ??= [];
            var first = node.Subscriptions.Count == 0;
            var isNew = Replace(node.Subscriptions, subscription);
            if (first && isNew)
            {
                clusterLink?.OnRouteAdded(ns, subscription.Filter);
            }

            return isNew;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    private bool Replace(List<Subscription> list, Subscription subscription)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (ReferenceEquals(list[i].Session, subscription.Session))
            {
                list[i] = subscription;
                return false;
            }
        }

        list.Add(subscription);
        Interlocked.Increment(ref _count);
        return true;
    }

    /// <summary>Removes the session's subscription to <paramref name="filter"/> (in <paramref name="shareGroup"/>, if shared).</summary>
    public bool Remove(MqttSession session, string filter, string? shareGroup)
    {
        _lock.EnterWriteLock();
        try
        {
            _filterEmptied = false;
            var removed = RemoveAt(_root, filter.AsSpan(), session, shareGroup);
            if (_filterEmptied)
            {
                if (shareGroup is null)
                {
                    clusterLink?.OnRouteRemoved(ns, filter);
                }
                else
                {
                    clusterLink?.OnSharedRouteRemoved(ns, shareGroup, filter);
                }
            }

            return removed;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    private bool RemoveAt(TrieNode node, ReadOnlySpan<char> rest, MqttSession session, string? shareGroup)
    {
        var slash = rest.IndexOf('/');
        var level = slash < 0 ? rest : rest[..slash];
        var child = node.FindChild(level);
        if (child is null)
        {
            return false;
        }

        bool removed;
        if (slash >= 0)
        {
            removed = RemoveAt(child, rest[(slash + 1)..], session, shareGroup);
        }
        else if (shareGroup is not null)
        {
            removed = false;
            if (child.Shared is { } shared && shared.TryGetValue(shareGroup, out var group))
            {
                removed = RemoveSession(group.Members, session);
                if (group.Members.Count == 0)
                {
                    shared.Remove(shareGroup);
                    _filterEmptied = removed;
                }
            }
        }
        else
        {
            removed = child.Subscriptions is { } subs && RemoveSession(subs, session);
            _filterEmptied = removed && child.Subscriptions!.Count == 0;
        }

        if (removed && child.IsEmpty)
        {
            node.RemoveChild(level);
        }

        return removed;
    }

    private bool RemoveSession(List<Subscription> list, MqttSession session)
    {
        for (var i = 0; i < list.Count; i++)
        {
            if (ReferenceEquals(list[i].Session, session))
            {
                list.RemoveAt(i);
                Interlocked.Decrement(ref _count);
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Collects the subscriptions matching <paramref name="topic"/> into <paramref name="matches"/> and the shared
    /// groups into <paramref name="groups"/>. Topics starting with '$' are not matched by filters starting with a wildcard.
    /// </summary>
    public void Match(string topic, List<Subscription> matches, List<SharedGroup> groups)
    {
        _lock.EnterReadLock();
        try
        {
            MatchLevel(_root, topic.AsSpan(), isRoot: true, startsWithDollar: topic.Length > 0 && topic[0] == '$', matches, groups);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>
    /// Picks the member of <paramref name="group"/> whose turn it is, preferring connected members, never
    /// <paramref name="exclude"/>. Null when the group has no other member.
    /// </summary>
    public Subscription? PickSharedMember(SharedGroup group, MqttSession? exclude)
    {
        _lock.EnterReadLock();
        try
        {
            var members = group.Members;
            var count = members.Count;
            if (count == 0)
            {
                return null;
            }

            var start = (int)((uint)Interlocked.Increment(ref group.Next) % (uint)count);
            Subscription? fallback = null;
            for (var i = 0; i < count; i++)
            {
                var candidate = members[(start + i) % count];
                if (ReferenceEquals(candidate.Session, exclude))
                {
                    continue;
                }

                if (candidate.Session.IsConnected)
                {
                    return candidate;
                }

                fallback ??= candidate;
            }

            return fallback;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private static void MatchLevel(TrieNode node, ReadOnlySpan<char> rest, bool isRoot, bool startsWithDollar, List<Subscription> matches, List<SharedGroup> groups)
    {
        var slash = rest.IndexOf('/');
        var level = slash < 0 ? rest : rest[..slash];
        var wildcardsAllowed = !(isRoot && startsWithDollar);

        // '#' here matches this level and everything below it.
        if (wildcardsAllowed && node.Hash is { } hash)
        {
            Collect(hash, matches, groups);
        }

        var literal = node.FindChild(level);
        var plus = wildcardsAllowed ? node.Plus : null;
        if (slash < 0)
        {
            if (literal is not null)
            {
                Collect(literal, matches, groups);
                // "a/#" also matches "a".
                if (literal.Hash is { } literalHash)
                {
                    Collect(literalHash, matches, groups);
                }
            }

            if (plus is not null)
            {
                Collect(plus, matches, groups);
                if (plus.Hash is { } plusHash)
                {
                    Collect(plusHash, matches, groups);
                }
            }

            return;
        }

        var next = rest[(slash + 1)..];
        if (literal is not null)
        {
            MatchLevel(literal, next, isRoot: false, startsWithDollar, matches, groups);
        }

        if (plus is not null)
        {
            MatchLevel(plus, next, isRoot: false, startsWithDollar, matches, groups);
        }
    }

    private static void Collect(TrieNode node, List<Subscription> matches, List<SharedGroup> groups)
    {
        if (node.Subscriptions is { } subs)
        {
            foreach (var sub in subs)
            {
                matches.Add(sub);
            }
        }

        if (node.Shared is { } shared)
        {
            foreach (var group in shared.Values)
            {
                groups.Add(group);
            }
        }
    }

    private sealed class TrieNode
    {
        private Dictionary<string, TrieNode>? _children;
        private Dictionary<string, TrieNode>.AlternateLookup<ReadOnlySpan<char>> _lookup;

        public TrieNode? Plus;
        public TrieNode? Hash;
        public List<Subscription>? Subscriptions;
        public Dictionary<string, SharedGroup>? Shared;

        public bool IsEmpty => (_children is null || _children.Count == 0) && Plus is null && Hash is null
            && (Subscriptions is null || Subscriptions.Count == 0) && (Shared is null || Shared.Count == 0);

        public TrieNode? FindChild(ReadOnlySpan<char> level)
        {
            if (level is "+")
            {
                return Plus;
            }

            if (level is "#")
            {
                return Hash;
            }

            return _children is not null && _lookup.TryGetValue(level, out var child) ? child : null;
        }

        public TrieNode? FindLiteral(ReadOnlySpan<char> level) =>
            _children is not null && _lookup.TryGetValue(level, out var child) ? child : null;

        public TrieNode GetOrAddChild(ReadOnlySpan<char> level)
        {
            if (level is "+")
            {
                return Plus ??= new TrieNode();
            }

            if (level is "#")
            {
                return Hash ??= new TrieNode();
            }

            if (_children is null)
            {
                _children = new Dictionary<string, TrieNode>(StringComparer.Ordinal);
                _lookup = _children.GetAlternateLookup<ReadOnlySpan<char>>();
            }

            if (!_lookup.TryGetValue(level, out var child))
            {
                child = new TrieNode();
                _children.Add(level.ToString(), child);
            }

            return child;
        }

        public void RemoveChild(ReadOnlySpan<char> level)
        {
            if (level is "+")
            {
                Plus = null;
            }
            else if (level is "#")
            {
                Hash = null;
            }
            else
            {
                _lookup.Remove(level);
            }
        }
    }

    private ref struct LevelEnumerator
    {
        private ReadOnlySpan<char> _rest;
        private bool _done;

        public LevelEnumerator(string value)
        {
            _rest = value;
            _done = false;
            Current = default;
        }

        public ReadOnlySpan<char> Current { get; private set; }

        public readonly LevelEnumerator GetEnumerator() => this;

        public bool MoveNext()
        {
            if (_done)
            {
                return false;
            }

            var slash = _rest.IndexOf('/');
            if (slash < 0)
            {
                Current = _rest;
                _done = true;
            }
            else
            {
                Current = _rest[..slash];
                _rest = _rest[(slash + 1)..];
            }

            return true;
        }
    }
}
