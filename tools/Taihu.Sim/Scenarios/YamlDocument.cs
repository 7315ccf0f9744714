using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Taihu.Sim.Scenarios;

/// <summary>
/// A YAML document read into JSON nodes, with the line each node starts on (by JSON pointer), so that a problem
/// found later (by the schema or by a check of meaning) can name the line a person must fix.
/// </summary>
/// <remarks>
/// Plain scalars are typed as YAML 1.2's core schema types them (null, booleans, integers, floats); quoted ones
/// stay strings. Anchors and aliases are refused: scenario files are short enough to write out, and a reference
/// would make line numbers ambiguous. A key given twice is an error, as YAML says and many parsers forget.
/// </remarks>
public sealed partial class YamlDocument
{
    private readonly Dictionary<string, int> _lines;

    private YamlDocument(JsonNode? root, Dictionary<string, int> lines)
    {
        Root = root;
        _lines = lines;
    }

    public JsonNode? Root { get; }

    /// <summary>The line (1-based) of the node at <paramref name="pointer"/> (such as <c>/fleets/0/interval</c>), or of its nearest parent that has one.</summary>
    public int LineOf(string pointer)
    {
        var path = pointer;
        while (true)
        {
            if (_lines.TryGetValue(path, out var line))
            {
                return line;
            }

            var cut = path.LastIndexOf('/');
            if (cut < 0)
            {
                return 1;
            }

            path = path[..cut];
        }
    }

    /// <summary>Reads <paramref name="text"/>; a syntax error is a <see cref="ScenarioException"/> naming the line.</summary>
    public static YamlDocument Parse(string text, string source)
    {
        var lines = new Dictionary<string, int>(StringComparer.Ordinal);
        var parser = new Parser(new StringReader(text));
        try
        {
            parser.Consume<StreamStart>();
            if (parser.TryConsume<StreamEnd>(out _))
            {
                return new YamlDocument(null, lines);
            }

            parser.Consume<DocumentStart>();
            var root = ReadNode(parser, "", lines, source);
            parser.Consume<DocumentEnd>();
            if (!parser.Accept<StreamEnd>(out _))
            {
                throw new ScenarioException(source, LineOfCurrent(parser), "a scenario file holds one YAML document; remove the second '---'.");
            }

            return new YamlDocument(root, lines);
        }
        catch (YamlException e)
        {
            throw new ScenarioException(source, (int)e.Start.Line, FirstSentence(e.Message));
        }
    }

    private static int LineOfCurrent(IParser parser) => (int)(parser.Current?.Start.Line ?? 1);

    private static string FirstSentence(string message)
    {
        // YamlDotNet's messages start with "(Line: 3, Col: 5, Idx: ..) - (...): "; the reason follows.
        var cut = message.LastIndexOf("): ", StringComparison.Ordinal);
        return cut >= 0 ? message[(cut + 3)..] : message;
    }

    private static JsonNode? ReadNode(IParser parser, string pointer, Dictionary<string, int> lines, string source)
    {
        var current = parser.Current ?? throw new ScenarioException(source, 1, "the file ends where a value was expected.");
        lines[pointer] = (int)current.Start.Line;
        switch (current)
        {
            case AnchorAlias alias:
                throw new ScenarioException(source, (int)alias.Start.Line, $"aliases (*{alias.Value}) are not supported in scenario files; write the value out.");
            case Scalar scalar:
                parser.MoveNext();
                RefuseAnchor(scalar, source);
                return ScalarValue(scalar);
            case SequenceStart sequence:
                RefuseAnchor(sequence, source);
                parser.MoveNext();
                var array = new JsonArray();
                while (!parser.TryConsume<SequenceEnd>(out _))
                {
                    array.Add(ReadNode(parser, pointer + "/" + array.Count.ToString(CultureInfo.InvariantCulture), lines, source));
                }

                return array;
            case MappingStart mapping:
                RefuseAnchor(mapping, source);
                parser.MoveNext();
                var obj = new JsonObject();
                while (!parser.TryConsume<MappingEnd>(out _))
                {
                    if (parser.Current is not Scalar key)
                    {
                        throw new ScenarioException(source, LineOfCurrent(parser), "a key must be a plain word or a quoted string.");
                    }

                    parser.MoveNext();
                    if (obj.ContainsKey(key.Value))
                    {
                        throw new ScenarioException(source, (int)key.Start.Line, $"the key '{key.Value}' is given twice in the same mapping.");
                    }

                    var child = pointer + "/" + Escape(key.Value);
                    obj[key.Value] = ReadNode(parser, child, lines, source);
                    lines[child] = (int)key.Start.Line;
                }

                return obj;
            default:
                throw new ScenarioException(source, (int)current.Start.Line, $"unexpected {current.GetType().Name} in the scenario.");
        }
    }

    private static void RefuseAnchor(NodeEvent node, string source)
    {
        if (!node.Anchor.IsEmpty)
        {
            throw new ScenarioException(source, (int)node.Start.Line, $"anchors (&{node.Anchor.Value}) are not supported in scenario files; write the value out.");
        }
    }

    private static string Escape(string key) => key.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    private static JsonNode? ScalarValue(Scalar scalar)
    {
        var text = scalar.Value;
        if (scalar.Style is not ScalarStyle.Plain)
        {
            return JsonValue.Create(text);
        }

        if (text.Length == 0 || text is "~" or "null" or "Null" or "NULL")
        {
            return null;
        }

        if (text is "true" or "True" or "TRUE")
        {
            return JsonValue.Create(true);
        }

        if (text is "false" or "False" or "FALSE")
        {
            return JsonValue.Create(false);
        }

        if (IntegerPattern().IsMatch(text) && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            return JsonValue.Create(integer);
        }

        if (FloatPattern().IsMatch(text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
        {
            return JsonValue.Create(number);
        }

        return JsonValue.Create(text);
    }

    [GeneratedRegex(@"^[-+]?[0-9]+$")]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex FloatPattern();
}

/// <summary>A problem in a scenario file, with the file and line a person must fix.</summary>
public sealed class ScenarioException : Exception
{
    public ScenarioException(string source, int line, string problem)
        : base($"{source}, line {line}: {problem}")
    {
        Source = source;
        Line = line;
        Problem = problem;
    }

    public ScenarioException()
    {
        Source = "";
        Problem = "";
    }

    public ScenarioException(string message)
        : base(message)
    {
        Source = "";
        Problem = message;
    }

    public ScenarioException(string message, Exception innerException)
        : base(message, innerException)
    {
        Source = "";
        Problem = message;
    }

    public new string Source { get; }

    public int Line { get; }

    public string Problem { get; }
}
