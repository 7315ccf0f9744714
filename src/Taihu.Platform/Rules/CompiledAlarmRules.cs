using Taihu.Platform.Alarms;

namespace Taihu.Platform.Rules;

/// <summary>
/// A profile's alarms made ready for evaluation: every key a rule reads (filters, and device attributes that
/// dynamic values name) gets a slot number, so a device's state is an array indexed by slot and a point finds its
/// slot with one dictionary lookup by key, without allocating. Built once per profile version and shared by all
/// its devices; immutable.
/// </summary>
public sealed class CompiledAlarmRules
{
    private readonly Dictionary<string, int> _timeSeriesSlots = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _attributeSlots = new(StringComparer.Ordinal);
    private readonly List<(RuleKeyType Type, string Key)> _slots = [];

    public CompiledAlarmRules(IReadOnlyList<ProfileAlarm> alarms)
    {
        ArgumentNullException.ThrowIfNull(alarms);
        Source = alarms;
        var compiled = new CompiledAlarm[alarms.Count];
        for (var i = 0; i < alarms.Count; i++)
        {
            var alarm = alarms[i];
            var create = new List<CompiledRule>(alarm.CreateRules.Count);
            // Highest severity first: the first create rule that holds decides the severity (ThingsBoard's order).
            for (var severity = AlarmSeverity.Critical; severity <= AlarmSeverity.Indeterminate; severity++)
            {
                if (alarm.CreateRules.TryGetValue(severity, out var rule))
                {
                    create.Add(Compile(rule, severity));
                }
            }

            compiled[i] = new CompiledAlarm(alarm, [.. create], alarm.ClearRule is { } clear ? Compile(clear, null) : null);
        }

        Alarms = compiled;
        SlotCount = _slots.Count;
    }

    public static CompiledAlarmRules Empty { get; } = new([]);

    public IReadOnlyList<ProfileAlarm> Source { get; }

    internal CompiledAlarm[] Alarms { get; }

    internal int SlotCount { get; }

    internal (RuleKeyType Type, string Key) Slot(int index) => _slots[index];

    internal int TimeSeriesSlot(string key) => _timeSeriesSlots.TryGetValue(key, out var slot) ? slot : -1;

    internal int AttributeSlot(string key) => _attributeSlots.TryGetValue(key, out var slot) ? slot : -1;

    internal int FindSlot(RuleKeyType type, string key) => type switch
    {
        RuleKeyType.TimeSeries => TimeSeriesSlot(key),
        RuleKeyType.Attribute => AttributeSlot(key),
        _ => -1,
    };

    private CompiledRule Compile(AlarmRule rule, AlarmSeverity? severity)
    {
        var filterSlots = new int[rule.Filters.Count];
        var slots = new List<int>();
        var readsTimeSeries = false;
        for (var i = 0; i < rule.Filters.Count; i++)
        {
            var filter = rule.Filters[i];
            filterSlots[i] = filter.KeyType switch
            {
                RuleKeyType.TimeSeries => Intern(_timeSeriesSlots, RuleKeyType.TimeSeries, filter.Key),
                RuleKeyType.Attribute => Intern(_attributeSlots, RuleKeyType.Attribute, filter.Key),
                _ => -1,
            };
            readsTimeSeries |= filter.KeyType == RuleKeyType.TimeSeries;
            AddDistinct(slots, filterSlots[i]);
            AddDynamic(slots, filter.Predicate);
        }

        var amountSlot = -1;
        if (rule.Spec.AmountDynamic is { SourceType: DynamicSourceType.CurrentDevice, SourceAttribute: { } attribute })
        {
            amountSlot = Intern(_attributeSlots, RuleKeyType.Attribute, attribute);
            AddDistinct(slots, amountSlot);
        }

        return new CompiledRule(rule, severity, filterSlots, [.. slots], readsTimeSeries, amountSlot);
    }

    private void AddDynamic(List<int> slots, KeyPredicate predicate)
    {
        if (predicate.Predicates is { } children)
        {
            for (var i = 0; i < children.Count; i++)
            {
                AddDynamic(slots, children[i]);
            }
        }
        else if (predicate.Value?.Dynamic is { SourceType: DynamicSourceType.CurrentDevice, SourceAttribute: { } attribute })
        {
            AddDistinct(slots, Intern(_attributeSlots, RuleKeyType.Attribute, attribute));
        }
    }

    private int Intern(Dictionary<string, int> map, RuleKeyType type, string key)
    {
        if (!map.TryGetValue(key, out var slot))
        {
            slot = _slots.Count;
            _slots.Add((type, key));
            map[key] = slot;
        }

        return slot;
    }

    private static void AddDistinct(List<int> slots, int slot)
    {
        if (slot >= 0 && !slots.Contains(slot))
        {
            slots.Add(slot);
        }
    }
}

/// <summary>One alarm of the profile: create rules highest severity first, and the clear rule.</summary>
internal sealed record CompiledAlarm(ProfileAlarm Source, CompiledRule[] CreateRules, CompiledRule? ClearRule);

/// <summary>
/// A rule with its slots: <see cref="FilterSlots"/> per filter (-1 for a constant or an entity field),
/// <see cref="Slots"/> every slot it reads (to tell whether an update concerns it), <see cref="AmountSlot"/> the
/// device attribute a DURATION or REPEATING amount may come from.
/// </summary>
internal sealed record CompiledRule(AlarmRule Rule, AlarmSeverity? Severity, int[] FilterSlots, int[] Slots, bool ReadsTimeSeries, int AmountSlot);
