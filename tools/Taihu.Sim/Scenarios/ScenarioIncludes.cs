using System.Text.Json.Nodes;

namespace Taihu.Sim.Scenarios;

/// <summary>One included scenario file: what it brings, its fleets already multiplied by the include's scale.</summary>
internal sealed record IncludedScenario(Scenario Scenario, IReadOnlyList<Expectation> Expectations, string Pointer);

/// <summary>
/// <c>include: [{ file, scale, expect }]</c>: a scenario made of others (the whole city of its zones' files). Each
/// included file brings its profiles, fleets (their counts times <c>scale</c>), RPC calls, faults and, unless
/// <c>expect: false</c>, its expectations; the including file's duration, seed and start time apply, and its own
/// profiles, fleets and expectations come on top. A name defined twice is an error that names the include's line;
/// an included file may not include others (one level keeps a city's parts easy to find).
/// </summary>
internal static class ScenarioIncludes
{
    public static List<IncludedScenario> Load(JsonArray? includes, string directory, Func<string, int> lineOf, Func<string, string, ScenarioException> problem)
    {
        var result = new List<IncludedScenario>();
        for (var i = 0; i < (includes?.Count ?? 0); i++)
        {
            var entry = includes![i]!.AsObject();
            var pointer = $"/include/{i}";
            var file = entry["file"]!.GetValue<string>();
            var path = Path.Combine(directory, file);
            if (!File.Exists(path))
            {
                throw problem(pointer + "/file", $"the file '{file}' is not there (looked for {Path.GetFullPath(path)}).");
            }

            if (YamlDocument.Parse(File.ReadAllText(path), file).Root is JsonObject { } other && other.ContainsKey("include"))
            {
                throw problem(pointer + "/file", $"'{file}' includes other files itself; include those here instead.");
            }

            var scenario = ScenarioLoader.Load(path);
            var scale = entry["scale"] is { } s ? (s.AsValue().TryGetValue<long>(out var whole) ? whole : s.GetValue<double>()) : 1.0;
            var line = lineOf(pointer);
            var fleets = scenario.Fleets.Select(f => f with { Count = Math.Max(1, (int)Math.Round(f.Count * scale, MidpointRounding.AwayFromZero)) }).ToList();
            var expectations = entry["expect"]?.GetValue<bool>() == false ? [] : scenario.Expectations.Select(e => e with { Line = line }).ToList();
            result.Add(new IncludedScenario(scenario with { Fleets = fleets }, expectations, pointer));
        }

        return result;
    }

    public static void Merge(IncludedScenario part, List<ProfileDefinition> profiles, HashSet<string> profileNames, List<FleetDefinition> fleets, HashSet<string> fleetNames,
        Func<string, string, ScenarioException> problem)
    {
        foreach (var profile in part.Scenario.Profiles)
        {
            if (!profileNames.Add(profile.Name))
            {
                throw problem(part.Pointer, $"the profile '{profile.Name}' of '{part.Scenario.Name}' is defined twice.");
            }

            profiles.Add(profile);
        }

        foreach (var fleet in part.Scenario.Fleets)
        {
            if (!fleetNames.Add(fleet.Name))
            {
                throw problem(part.Pointer, $"the fleet '{fleet.Name}' of '{part.Scenario.Name}' is defined twice.");
            }

            fleets.Add(fleet);
        }
    }
}
