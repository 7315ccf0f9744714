using Taihu.Mqtt.Topics;

namespace Taihu.Platform.BrokerUsers;

/// <summary>
/// Mosquitto's <c>acl_file</c>: <c>topic [read|write|readwrite|deny] FILTER</c> lines (without an access word:
/// readwrite) under a <c>user NAME</c> line apply to that user; those before the first <c>user</c> line apply to
/// clients without a user name; <c>pattern [access] FILTER</c> lines apply to every client wherever they stand,
/// with <c>%u</c> replaced by its user name and <c>%c</c> by its client id. Blank lines and lines starting with
/// <c>#</c> are skipped. A client that no rule gives a right has none.
/// </summary>
public sealed class MosquittoAclFile
{
    private const int MaximumLineLength = 65_535;

    private readonly List<TopicRule> _anonymous = [];
    private readonly Dictionary<string, List<TopicRule>> _users = new(StringComparer.Ordinal);
    private readonly List<TopicRule> _patterns = [];

    private MosquittoAclFile()
    {
    }

    public static MosquittoAclFile Load(string path) => Parse(path, MosquittoPasswordFile.ReadAll(path));

    public static MosquittoAclFile Parse(string path, string text)
    {
        var acl = new MosquittoAclFile();
        List<TopicRule> current = acl._anonymous;
        foreach (var (number, line) in MosquittoPasswordFile.ContentLines(text))
        {

            if (line.Length > MaximumLineLength)
            {
                throw new BrokerUserFileException(path, number, $"the line is longer than {MaximumLineLength} characters.");
            }

            if (MosquittoPasswordFile.HasControlCharacters(line.Replace('\t', ' ')))
            {
                throw new BrokerUserFileException(path, number, "the line has control characters.");
            }

            var (keyword, rest) = NextWord(line);
            switch (keyword)
            {
                case "user":
                    if (rest.Length == 0)
                    {
                        throw new BrokerUserFileException(path, number, "'user' needs a user name.");
                    }

                    if (!acl._users.TryGetValue(rest, out var rules))
                    {
                        acl._users[rest] = rules = [];
                    }

                    current = rules;
                    break;
                case "topic":
                    current.Add(ParseRule(path, number, rest, pattern: false));
                    break;
                case "pattern":
                    acl._patterns.Add(ParseRule(path, number, rest, pattern: true));
                    break;
                default:
                    throw new BrokerUserFileException(path, number, "expected 'user NAME', 'topic [read|write|readwrite|deny] FILTER' or 'pattern [read|write|readwrite|deny] FILTER'.");
            }
        }

        return acl;
    }

    private static TopicRule ParseRule(string path, int number, string rest, bool pattern)
    {
        var (word, filter) = NextWord(rest);
        TopicRights? rights = word switch
        {
            "read" => TopicRights.Read,
            "write" => TopicRights.Write,
            "readwrite" => TopicRights.ReadWrite,
            "deny" => TopicRights.Deny,
            _ => null,
        };
        if (rights is null)
        {
            // No access word: the whole rest is the filter, read and write (Mosquitto's default).
            filter = rest;
        }

        if (filter.Length == 0)
        {
            throw new BrokerUserFileException(path, number, "the rule needs a topic filter.");
        }

        // A pattern's %u and %c stand for one level's text: check the shape with a placeholder in their place.
        var shape = pattern ? filter.Replace("%u", "u", StringComparison.Ordinal).Replace("%c", "c", StringComparison.Ordinal) : filter;
        if (!TopicValidator.IsValidTopicFilter(shape))
        {
            throw new BrokerUserFileException(path, number, "the topic filter is not valid ('#' only as the last level, '+' and '#' alone in their level, no empty filter).");
        }

        return new TopicRule(rights ?? TopicRights.ReadWrite, filter);
    }

    private static (string Word, string Remainder) NextWord(string text)
    {
        var space = text.IndexOfAny([' ', '\t']);
        return space < 0 ? (text, "") : (text[..space], text[(space + 1)..].Trim(' ', '\t'));
    }

    /// <summary>Whether the file has rules for this user name (patterns aside).</summary>
    public bool HasUser(string userName) => _users.ContainsKey(userName);

    /// <summary>
    /// The rights of a client: its user's topic rules (or, without a user name, the rules before the first
    /// <c>user</c> line) and every pattern. A pattern is left out when the value it needs is missing or holds
    /// <c>+</c>, <c>#</c> or <c>/</c>, which would widen it beyond the one level it names (Mosquitto also refuses
    /// wildcards there).
    /// </summary>
    public TopicAccess Compile(string? userName, string clientId)
    {
        var rules = new List<TopicRule>();
        if (userName is null)
        {
            rules.AddRange(_anonymous);
        }
        else if (_users.TryGetValue(userName, out var own))
        {
            rules.AddRange(own);
        }

        foreach (var pattern in _patterns)
        {
            var needsUser = pattern.Filter.Contains("%u", StringComparison.Ordinal);
            var needsClient = pattern.Filter.Contains("%c", StringComparison.Ordinal);
            if ((needsUser && !IsSafeLevel(userName)) || (needsClient && !IsSafeLevel(clientId)))
            {
                continue;
            }

            var filter = needsUser || needsClient ? Substitute(pattern.Filter, userName, clientId) : pattern.Filter;
            rules.Add(pattern with { Filter = filter });
        }

        return TopicAccess.From(rules);
    }

    /// <summary>One pass, so that a user name holding "%c" is not substituted again.</summary>
    private static string Substitute(string filter, string? userName, string clientId)
    {
        var result = new System.Text.StringBuilder(filter.Length + 32);
        for (var i = 0; i < filter.Length; i++)
        {
            if (filter[i] == '%' && i + 1 < filter.Length && filter[i + 1] is 'u' or 'c')
            {
                result.Append(filter[i + 1] == 'u' ? userName : clientId);
                i++;
            }
            else
            {
                result.Append(filter[i]);
            }
        }

        return result.ToString();
    }

    private static bool IsSafeLevel(string? value) => !string.IsNullOrEmpty(value) && value.AsSpan().IndexOfAny("+#/") < 0;
}
