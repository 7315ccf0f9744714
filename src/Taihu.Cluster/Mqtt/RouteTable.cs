namespace Taihu.Cluster.Mqtt;

/// <summary>
/// The other nodes' routes: for each namespace, which nodes have subscribers for which filters (as EMQX's route
/// table: filter to nodes). A publish is matched here once to learn which nodes need a copy; the nodes themselves
/// match it again against their own subscribers. Kept as a trie of topic levels, like the broker's own subscription
/// trie, so a match walks one path per wildcard branch. Readers share a lock; changes (subscriptions coming and
/// going on other nodes, a node's death) take it alone.
/// <para>
/// A shared subscription (<c>$share/{group}/{filter}</c>) is a route of its own: the nodes where the group has
/// members on that filter. A match names, for each such group, one of those nodes in turn: the node that gets
/// the message for that group (see <see cref="SharedPick{TNode}"/>).
/// </para>
/// </summary>
/// <typeparam name="TNode">What names a node (a silo address; strings in tests).</typeparam>
internal sealed class RouteTable<TNode> : IDisposable
    where TNode : notnull
{
    private readonly Dictionary<string, Level> _namespaces = new(StringComparer.Ordinal);
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private int _count;

    /// <summary>Routes held ((node, namespace, filter) triples).</summary>
    public int Count => Volatile.Read(ref _count);

    public void Dispose() => _lock.Dispose();

    /// <summary>Records that <paramref name="node"/> has subscribers for <paramref name="filter"/> in <paramref name="ns"/>. False if it was known.</summary>
    public bool Add(TNode node, string ns, string filter) => Add(node, ns, filter, group: null);

    /// <summary>
    /// Records that <paramref name="node"/> has subscribers for <paramref name="filter"/> in <paramref name="ns"/>
    /// (members of the shared <paramref name="group"/>, when not null). False if it was known.
    /// </summary>
    public bool Add(TNode node, string ns, string filter, string? group)
    {
        _lock.EnterWriteLock();
        try
        {
            if (!_namespaces.TryGetValue(ns, out var level))
            {
                level = new Level();
                _namespaces.Add(ns, level);
            }

            foreach (var name in filter.Split('/'))
            {
                level = level.GetOrAdd(name);
            }

            List<TNode> nodes;
            if (group is null)
            {
                nodes = level.Nodes ??= new List<TNode>(1); // most filters are held by one node
            }
            else
            {
                level.Groups ??= new Dictionary<string, SharedNodes>(StringComparer.Ordinal);
                if (!level.Groups.TryGetValue(group, out var shared))
                {
                    shared = new SharedNodes(group, filter);
                    level.Groups.Add(group, shared);
                }

                nodes = shared.Nodes;
            }

            if (nodes.Contains(node))
            {
                return false;
            }

            nodes.Add(node);
            _count++;
            return true;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>Forgets that route. False if it was not known.</summary>
    public bool Remove(TNode node, string ns, string filter) => Remove(node, ns, filter, group: null);

    /// <summary>Forgets that route (of the shared <paramref name="group"/>, when not null). False if it was not known.</summary>
    public bool Remove(TNode node, string ns, string filter, string? group)
    {
        _lock.EnterWriteLock();
        try
        {
            if (!_namespaces.TryGetValue(ns, out var root) || !RemoveAt(root, filter.Split('/'), 0, node, group))
            {
                return false;
            }

            if (root.IsEmpty)
            {
                _namespaces.Remove(ns);
            }

            _count--;
            return true;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>Forgets every route of <paramref name="node"/> (it died, or sends all its routes again). Returns how many.</summary>
    public int RemoveNode(TNode node)
    {
        _lock.EnterWriteLock();
        try
        {
            var removed = 0;
            List<string>? emptied = null;
            foreach (var (ns, root) in _namespaces)
            {
                removed += RemoveEverywhere(root, node);
                if (root.IsEmpty)
                {
                    (emptied ??= []).Add(ns);
                }
            }

            foreach (var ns in emptied ?? [])
            {
                _namespaces.Remove(ns);
            }

            _count -= removed;
            return removed;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>
    /// Adds to <paramref name="nodes"/> (once each) the nodes with a filter matching <paramref name="topic"/> in
    /// <paramref name="ns"/>. Topics starting with '$' are not matched by filters starting with a wildcard.
    /// </summary>
    public void Match(string ns, string topic, List<TNode> nodes) => Match(ns, topic, nodes, shared: null);

    /// <summary>
    /// <see cref="Match(string, string, List{TNode})"/>, and adds to <paramref name="shared"/> (when not null), for
    /// each shared group with a filter matching the topic, the node whose turn it is among those with members.
    /// </summary>
    public void Match(string ns, string topic, List<TNode> nodes, List<SharedPick<TNode>>? shared)
    {
        _lock.EnterReadLock();
        try
        {
            if (_namespaces.TryGetValue(ns, out var root))
            {
                var dollar = topic.Length > 0 && topic[0] == '$';
                MatchLevel(root, topic.AsSpan(), atRoot: true, dollar, nodes, shared);
            }
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private static void MatchLevel(Level level, ReadOnlySpan<char> rest, bool atRoot, bool dollar, List<TNode> nodes, List<SharedPick<TNode>>? shared)
    {
        var wildcards = !(atRoot && dollar);
        if (wildcards && level.Hash is { } hash)
        {
            Collect(hash, nodes, shared);
        }

        var slash = rest.IndexOf('/');
        var name = slash < 0 ? rest : rest[..slash];
        if (level.Find(name) is { } literal)
        {
            Next(literal, rest, slash, dollar, nodes, shared);
        }

        if (wildcards && level.Plus is { } plus)
        {
            Next(plus, rest, slash, dollar, nodes, shared);
        }
    }

    private static void Next(Level child, ReadOnlySpan<char> rest, int slash, bool dollar, List<TNode> nodes, List<SharedPick<TNode>>? shared)
    {
        if (slash >= 0)
        {
            MatchLevel(child, rest[(slash + 1)..], atRoot: false, dollar, nodes, shared);
            return;
        }

        // The topic ends here: this level's own filters, and "x/#", which matches its parent "x" too.
        Collect(child, nodes, shared);
        if (child.Hash is { } hash)
        {
            Collect(hash, nodes, shared);
        }
    }

    private static void Collect(Level level, List<TNode> nodes, List<SharedPick<TNode>>? shared)
    {
        AddAll(level.Nodes, nodes);
        if (shared is null || level.Groups is not { } groups)
        {
            return;
        }

        foreach (var (_, group) in groups)
        {
            if (group.Nodes.Count > 0)
            {
                // Readers share the lock: the turn moves on atomically.
                var turn = (uint)Interlocked.Increment(ref group.Next) % (uint)group.Nodes.Count;
                shared.Add(new SharedPick<TNode>(group.Group, group.Filter, group.Nodes[(int)turn]));
            }
        }
    }

    private static void AddAll(List<TNode>? from, List<TNode> into)
    {
        if (from is null)
        {
            return;
        }

        foreach (var node in from)
        {
            if (!into.Contains(node))
            {
                into.Add(node);
            }
        }
    }

    private static bool RemoveAt(Level level, string[] names, int index, TNode node, string? group)
    {
        var name = names[index];
        if (level.Find(name) is not { } child)
        {
            return false;
        }

        var removed = index == names.Length - 1 ? RemoveHere(child, node, group) : RemoveAt(child, names, index + 1, node, group);
        if (removed && child.IsEmpty)
        {
            level.RemoveChild(name);
        }

        return removed;
    }

    private static bool RemoveHere(Level level, TNode node, string? group)
    {
        if (group is null)
        {
            return level.Nodes?.Remove(node) == true;
        }

        if (level.Groups is not { } groups || !groups.TryGetValue(group, out var shared) || !shared.Nodes.Remove(node))
        {
            return false;
        }

        if (shared.Nodes.Count == 0)
        {
            groups.Remove(group);
        }

        return true;
    }

    private static int RemoveEverywhere(Level level, TNode node)
    {
        var removed = level.Nodes?.Remove(node) == true ? 1 : 0;
        if (level.Groups is { } groups)
        {
            List<string>? emptiedGroups = null;
            foreach (var (name, shared) in groups)
            {
                if (shared.Nodes.Remove(node))
                {
                    removed++;
                    if (shared.Nodes.Count == 0)
                    {
                        (emptiedGroups ??= []).Add(name);
                    }
                }
            }

            foreach (var name in emptiedGroups ?? [])
            {
                groups.Remove(name);
            }
        }

        List<string>? emptied = null;
        foreach (var (name, child) in level.Children())
        {
            removed += RemoveEverywhere(child, node);
            if (child.IsEmpty)
            {
                (emptied ??= []).Add(name);
            }
        }

        foreach (var name in emptied ?? [])
        {
            level.RemoveChild(name);
        }

        return removed;
    }

    /// <summary>One topic level: its literal children, its '+' and '#' children, and the nodes whose filter ends here.</summary>
    /// <remarks>
    /// Most levels of a city's table have one or two literal children (a device's level holds "rpc" and
    /// "attributes"), so up to <see cref="SmallChildren"/> are kept in a small array searched in order, and only a
    /// level with more gets a dictionary: a dictionary per level was half of the 558 bytes a device's route took.
    /// </remarks>
    private sealed class Level
    {
        private const int SmallChildren = 4;
        private KeyValuePair<string, Level>[]? _small;
        private int _smallCount;
        private Dictionary<string, Level>? _large;

        public Level? Plus { get; private set; }
        public Level? Hash { get; private set; }
        public List<TNode>? Nodes { get; set; }

        /// <summary>Shared groups on this level's filter: the nodes where each has members.</summary>
        public Dictionary<string, SharedNodes>? Groups { get; set; }

        public bool IsEmpty => _smallCount == 0 && (_large is null || _large.Count == 0) && Plus is null && Hash is null && (Nodes is null || Nodes.Count == 0)
            && (Groups is null || Groups.Count == 0);

        public Level? Find(ReadOnlySpan<char> name) => name switch
        {
            "+" => Plus,
            "#" => Hash,
            _ => FindLiteral(name),
        };

        public Level GetOrAdd(string name)
        {
            switch (name)
            {
                case "+":
                    return Plus ??= new Level();
                case "#":
                    return Hash ??= new Level();
                default:
                    if (FindLiteral(name) is { } existing)
                    {
                        return existing;
                    }

                    var child = new Level();
                    AddLiteral(name, child);
                    return child;
            }
        }

        public void RemoveChild(string name)
        {
            switch (name)
            {
                case "+":
                    Plus = null;
                    break;
                case "#":
                    Hash = null;
                    break;
                default:
                    RemoveLiteral(name);
                    break;
            }
        }

        public IEnumerable<(string Name, Level Child)> Children()
        {
            if (Plus is not null)
            {
                yield return ("+", Plus);
            }

            if (Hash is not null)
            {
                yield return ("#", Hash);
            }

            for (var i = 0; i < _smallCount; i++)
            {
                yield return (_small![i].Key, _small[i].Value);
            }

            if (_large is not null)
            {
                foreach (var (name, child) in _large)
                {
                    yield return (name, child);
                }
            }
        }

        private Level? FindLiteral(ReadOnlySpan<char> name)
        {
            if (_large is not null)
            {
                return _large.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out var child) ? child : null;
            }

            for (var i = 0; i < _smallCount; i++)
            {
                if (name.SequenceEqual(_small![i].Key))
                {
                    return _small[i].Value;
                }
            }

            return null;
        }

        private void AddLiteral(string name, Level child)
        {
            if (_large is not null)
            {
                _large.Add(name, child);
                return;
            }

            if (_smallCount == SmallChildren)
            {
                _large = new Dictionary<string, Level>(SmallChildren * 2, StringComparer.Ordinal);
                for (var i = 0; i < _smallCount; i++)
                {
                    _large.Add(_small![i].Key, _small[i].Value);
                }

                _large.Add(name, child);
                _small = null;
                _smallCount = 0;
                return;
            }

            if (_small is null || _smallCount == _small.Length)
            {
                Array.Resize(ref _small, _small is null ? 1 : Math.Min(SmallChildren, _small.Length * 2));
            }

            _small[_smallCount++] = new KeyValuePair<string, Level>(name, child);
        }

        private void RemoveLiteral(string name)
        {
            if (_large is not null)
            {
                _large.Remove(name);
                return;
            }

            for (var i = 0; i < _smallCount; i++)
            {
                if (string.Equals(_small![i].Key, name, StringComparison.Ordinal))
                {
                    // Order does not matter: the last takes the freed place.
                    _small[i] = _small[--_smallCount];
                    _small[_smallCount] = default;
                    if (_smallCount == 0)
                    {
                        _small = null;
                    }

                    return;
                }
            }
        }
    }

    /// <summary>The nodes where one shared group has members on one filter, and whose turn is next.</summary>
    private sealed class SharedNodes(string group, string filter)
    {
        public string Group { get; } = group;
        public string Filter { get; } = filter;
        public List<TNode> Nodes { get; } = [];
        public int Next;
    }
}

/// <summary>A shared group matching a topic, and the node that gets the message for it (see <see cref="RouteTable{TNode}"/>).</summary>
internal readonly record struct SharedPick<TNode>(string Group, string Filter, TNode Node);
