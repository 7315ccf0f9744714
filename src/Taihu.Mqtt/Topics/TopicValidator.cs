namespace Taihu.Mqtt.Topics;

/// <summary>Topic name and topic filter rules (MQTT 5.0 section 4.7, 3.1.1 section 4.7).</summary>
public static class TopicValidator
{
    /// <summary>The prefix of a shared subscription filter.</summary>
    public const string SharePrefix = "$share/";

    /// <summary>A topic name: at least one character, no wildcards, no U+0000.</summary>
    public static bool IsValidTopicName(ReadOnlySpan<char> topic) =>
        topic.Length > 0 && topic.IndexOfAny('+', '#', '\0') < 0;

    /// <summary>
    /// A topic filter: at least one character; '+' fills a whole level; '#' fills the last level alone; no U+0000.
    /// </summary>
    public static bool IsValidTopicFilter(ReadOnlySpan<char> filter)
    {
        if (filter.Length == 0 || filter.Contains('\0'))
        {
            return false;
        }

        for (var i = 0; i < filter.Length; i++)
        {
            var c = filter[i];
            if (c is '+' or '#')
            {
                var startsLevel = i == 0 || filter[i - 1] == '/';
                var endsLevel = i == filter.Length - 1 || filter[i + 1] == '/';
                if (!startsLevel || !endsLevel)
                {
                    return false;
                }

                if (c == '#' && i != filter.Length - 1)
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>True when the filter contains '+' or '#'.</summary>
    public static bool HasWildcards(ReadOnlySpan<char> filter) => filter.IndexOfAny('+', '#') >= 0;

    /// <summary>
    /// Splits <c>$share/{group}/{filter}</c>. Returns false when <paramref name="value"/> is not a shared filter;
    /// <paramref name="valid"/> is false when it starts like one but breaks the rules (empty group, wildcard or
    /// slash in the group, missing or invalid filter).
    /// </summary>
    public static bool TryParseShared(string value, out string group, out string filter, out bool valid)
    {
        group = "";
        filter = "";
        valid = false;
        if (!value.StartsWith(SharePrefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = value.AsSpan(SharePrefix.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0)
        {
            return true;
        }

        var groupSpan = rest[..slash];
        var filterSpan = rest[(slash + 1)..];
        if (groupSpan.IndexOfAny('+', '#') >= 0 || !IsValidTopicFilter(filterSpan))
        {
            return true;
        }

        group = groupSpan.ToString();
        filter = filterSpan.ToString();
        valid = true;
        return true;
    }
}

/// <summary>Matching of one topic name against one filter, level by level, without allocating.</summary>
public static class TopicMatcher
{
    /// <summary>
    /// True when <paramref name="topic"/> matches <paramref name="filter"/>. Topics that start with '$' are not
    /// matched by a filter that starts with '+' or '#' (section 4.7.2).
    /// </summary>
    public static bool Matches(ReadOnlySpan<char> filter, ReadOnlySpan<char> topic)
    {
        if (topic.Length > 0 && topic[0] == '$' && filter.Length > 0 && (filter[0] == '+' || filter[0] == '#'))
        {
            return false;
        }

        while (true)
        {
            var filterSlash = filter.IndexOf('/');
            var filterLevel = filterSlash < 0 ? filter : filter[..filterSlash];
            if (filterLevel.Length == 1 && filterLevel[0] == '#')
            {
                return true;
            }

            var topicSlash = topic.IndexOf('/');
            var topicLevel = topicSlash < 0 ? topic : topic[..topicSlash];
            if (!(filterLevel.Length == 1 && filterLevel[0] == '+') && !filterLevel.SequenceEqual(topicLevel))
            {
                return false;
            }

            if (filterSlash < 0 || topicSlash < 0)
            {
                if (filterSlash < 0 && topicSlash < 0)
                {
                    return true;
                }

                // "a/#" matches "a": the filter has one more level and it is '#'.
                return topicSlash < 0 && filter[(filterSlash + 1)..] is "#";
            }

            filter = filter[(filterSlash + 1)..];
            topic = topic[(topicSlash + 1)..];
        }
    }
}
