using Taihu.Mqtt.Topics;

namespace Taihu.Platform.BrokerUsers;

/// <summary>What a rule allows on the topics its filter matches.</summary>
[Flags]
public enum TopicRights
{
    /// <summary>Mosquitto's <c>deny</c>: refused whatever another rule says.</summary>
    Deny = 0,
    Read = 1,
    Write = 2,
    ReadWrite = Read | Write,
}

/// <summary>One access rule: rights on a topic filter, which may hold <c>%u</c> and <c>%c</c> when it is a pattern.</summary>
public readonly record struct TopicRule(TopicRights Rights, string Filter);

/// <summary>
/// One connection's rights, compiled once at CONNECT (patterns already given the user name and client id), and
/// asked on every PUBLISH: a few <see cref="TopicMatcher.Matches"/> over spans, no allocation.
/// </summary>
/// <remarks>
/// A publish is allowed when no deny rule matches its topic and some write rule does. A subscription is allowed
/// when some read rule covers its filter (every topic the filter matches, the rule matches too) and no deny rule
/// overlaps it (no topic matches both). Mosquitto instead accepts a wider subscription and checks read rights on
/// each message it delivers; checking the filter once at SUBSCRIBE keeps delivery free of checks, at the price of
/// refusing <c>city/#</c> to a user who may read only <c>city/+/air</c> (subscribe to <c>city/+/air</c> instead).
/// </remarks>
public sealed class TopicAccess
{
    /// <summary>Everything allowed: users of a password file when no ACL file is given, as in Mosquitto.</summary>
    public static readonly TopicAccess All = new([], ["#"], ["#"]);

    /// <summary>Nothing allowed.</summary>
    public static readonly TopicAccess None = new([], [], []);

    private readonly string[] _deny;
    private readonly string[] _read;
    private readonly string[] _write;

    private TopicAccess(string[] deny, string[] read, string[] write)
    {
        _deny = deny;
        _read = read;
        _write = write;
    }

    /// <summary>Compiles rules whose filters are final (no <c>%u</c>/<c>%c</c> left).</summary>
    public static TopicAccess From(IEnumerable<TopicRule> rules)
    {
        var deny = new List<string>();
        var read = new List<string>();
        var write = new List<string>();
        foreach (var rule in rules)
        {
            if (rule.Rights == TopicRights.Deny)
            {
                deny.Add(rule.Filter);
            }

            if ((rule.Rights & TopicRights.Read) != 0)
            {
                read.Add(rule.Filter);
            }

            if ((rule.Rights & TopicRights.Write) != 0)
            {
                write.Add(rule.Filter);
            }
        }

        return new TopicAccess([.. deny], [.. read], [.. write]);
    }

    public bool MayPublish(string topic)
    {
        foreach (var deny in _deny)
        {
            if (TopicMatcher.Matches(deny, topic))
            {
                return false;
            }
        }

        foreach (var write in _write)
        {
            if (TopicMatcher.Matches(write, topic))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary><paramref name="filter"/> without any <c>$share/{group}/</c> prefix.</summary>
    public bool MaySubscribe(string filter)
    {
        foreach (var deny in _deny)
        {
            if (Overlaps(deny, filter))
            {
                return false;
            }
        }

        foreach (var read in _read)
        {
            if (Covers(read, filter))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether every topic that <paramref name="filter"/> matches is matched by <paramref name="rule"/>.</summary>
    public static bool Covers(ReadOnlySpan<char> rule, ReadOnlySpan<char> filter)
    {
        // A rule that starts with a wildcard does not match '$' topics (MQTT 4.7.2), so it covers no filter for them.
        if (filter.Length > 0 && filter[0] == '$' && rule.Length > 0 && rule[0] is '+' or '#')
        {
            return false;
        }

        while (true)
        {
            var ruleSlash = rule.IndexOf('/');
            var ruleLevel = ruleSlash < 0 ? rule : rule[..ruleSlash];
            if (ruleLevel is "#")
            {
                return true;
            }

            var filterSlash = filter.IndexOf('/');
            var filterLevel = filterSlash < 0 ? filter : filter[..filterSlash];
            if (filterLevel is "#")
            {
                return false; // only '#' in the rule covers '#' (and it returned above)
            }

            if (!(ruleLevel is "+") && (filterLevel is "+" || !ruleLevel.SequenceEqual(filterLevel)))
            {
                return false;
            }

            if (filterSlash < 0 || ruleSlash < 0)
            {
                if (filterSlash < 0 && ruleSlash < 0)
                {
                    return true;
                }

                // "a/#" covers "a"; nothing else covers a filter with fewer or more levels.
                return filterSlash < 0 && rule[(ruleSlash + 1)..] is "#";
            }

            rule = rule[(ruleSlash + 1)..];
            filter = filter[(filterSlash + 1)..];
        }
    }

    /// <summary>Whether some topic is matched by both filters.</summary>
    public static bool Overlaps(ReadOnlySpan<char> a, ReadOnlySpan<char> b)
    {
        if (a.Length > 0 && b.Length > 0 && (a[0] == '$') != (b[0] == '$'))
        {
            // A '$' topic is matched only by a filter that names its first level: if one filter does and the other
            // starts with a wildcard or another literal, no topic matches both.
            return false;
        }

        while (true)
        {
            var aSlash = a.IndexOf('/');
            var aLevel = aSlash < 0 ? a : a[..aSlash];
            var bSlash = b.IndexOf('/');
            var bLevel = bSlash < 0 ? b : b[..bSlash];
            if (aLevel is "#" || bLevel is "#")
            {
                return true;
            }

            if (!(aLevel is "+") && !(bLevel is "+") && !aLevel.SequenceEqual(bLevel))
            {
                return false;
            }

            if (aSlash < 0 || bSlash < 0)
            {
                if (aSlash < 0 && bSlash < 0)
                {
                    return true;
                }

                // "a" and "a/#" share the topic "a".
                return aSlash < 0 ? b[(bSlash + 1)..] is "#" : a[(aSlash + 1)..] is "#";
            }

            a = a[(aSlash + 1)..];
            b = b[(bSlash + 1)..];
        }
    }
}
