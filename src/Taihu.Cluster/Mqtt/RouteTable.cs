namespace Taihu.Cluster.Mqtt;

/// <summary>
/// The other nodes' routes: for each namespace, which nodes have subscribers for which filters (as EMQX's route
/// table: filter to nodes). A publish is matched here once to learn which nodes need a copy; the nodes themselves
/// match it again against their own subscribers. Kept as a trie of topic levels, like the broker's own subscription
/// trie, so a match walks one path per wildcard branch. Readers share a lock; changes (subscriptions coming and
/// going on other nodes, a node's death) take it alone.
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
    public bool Add(TNode node, string ns, string filter)
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

            level.Nodes ??= [];
            if (level.Nodes.Contains(node))
            {
                return false;
            }

            level.Nodes.Add(node);
            _count++;
            return true;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>Forgets that route. False if it was not known.</summary>
    public bool Remove(TNode node, string ns, string filter)
    {
        _lock.EnterWriteLock();
        try
        {
            if (!_namespaces.TryGetValue(ns, out var root) || !RemoveAt(root, filter.Split('/'), 0, node))
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
    public void Match(string ns, string topic, List<TNode> nodes)
    {
        _lock.EnterReadLock();
        try
        {
            if (_namespaces.TryGetValue(ns, out var root))
            {
                var dollar = topic.Length > 0 && topic[0] == '$';
                MatchLevel(root, topic.AsSpan(), atRoot: true, dollar, nodes);
            }
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    private static void MatchLevel(Level level, ReadOnlySpan<char> rest, bool atRoot, bool dollar, List<TNode> nodes)
    {
        var wildcards = !(atRoot && dollar);
        if (wildcards && level.Hash is { } hash)
        {
            AddAll(hash.Nodes, nodes);
        }

        var slash = rest.IndexOf('/');
        var name = slash < 0 ? rest : rest[..slash];
        if (level.Find(name) is { } literal)
        {
            Next(literal, rest, slash, dollar, nodes);
        }

        if (wildcards && level.Plus is { } plus)
        {
            Next(plus, rest, slash, dollar, nodes);
        }
    }

    private static void Next(Level child, ReadOnlySpan<char> rest, int slash, bool dollar, List<TNode> nodes)
    {
        if (slash >= 0)
        {
            MatchLevel(child, rest[(slash + 1)..], atRoot: false, dollar, nodes);
            return;
        }

        // The topic ends here: this level's own filters, and "x/#", which matches its parent "x" too.
        AddAll(child.Nodes, nodes);
        AddAll(child.Hash?.Nodes, nodes);
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

    private static bool RemoveAt(Level level, string[] names, int index, TNode node)
    {
        var name = names[index];
        if (level.Find(name) is not { } child)
        {
            return false;
        }

        var removed = index == names.Length - 1 ? child.Nodes?.Remove(node) == true : RemoveAt(child, names, index + 1, node);
        if (removed && child.IsEmpty)
        {
            level.RemoveChild(name);
        }

        return removed;
    }

    private static int RemoveEverywhere(Level level, TNode node)
    {
        var removed = level.Nodes?.Remove(node) == true ? 1 : 0;
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
    private sealed class Level
    {
        private Dictionary<string, Level>? _literals;

        public Level? Plus { get; private set; }
        public Level? Hash { get; private set; }
        public List<TNode>? Nodes { get; set; }

        public bool IsEmpty => (_literals is null || _literals.Count == 0) && Plus is null && Hash is null && (Nodes is null || Nodes.Count == 0);

        public Level? Find(ReadOnlySpan<char> name) => name switch
        {
            "+" => Plus,
            "#" => Hash,
            _ => _literals is not null && _literals.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out var child) ? child : null,
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
                    _literals ??= new Dictionary<string, Level>(StringComparer.Ordinal);
                    if (!_literals.TryGetValue(name, out var child))
                    {
                        child = new Level();
                        _literals.Add(name, child);
                    }

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
                    _literals?.Remove(name);
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

            if (_literals is not null)
            {
                foreach (var (name, child) in _literals)
                {
                    yield return (name, child);
                }
            }
        }
    }
}
