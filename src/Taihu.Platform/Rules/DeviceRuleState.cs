using System.Buffers;
using System.Text.Json;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Alarms;

namespace Taihu.Platform.Rules;

/// <summary>
/// What the alarm rules remember about one device: the latest value of every key they read, and per alarm the
/// progress of each rule (ThingsBoard's lastEventTs, duration and eventCount) and the severity of the alarm it has
/// raised, if any. It belongs to whoever owns the device (one owner, one caller at a time; it has no lock), and
/// only <see cref="AlarmRuleEvaluator"/> changes it. <see cref="WriteSnapshot"/> and <see cref="Restore"/> carry
/// it over a restart; the snapshot names alarms by id, rules by severity and values by key, so it survives an edit
/// of the profile (what the new rules no longer have is dropped).
/// </summary>
public sealed class DeviceRuleState
{
    private const int SnapshotVersion = 1;
    private const int ClearIndex = -1;

    public DeviceRuleState(CompiledAlarmRules rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        Rules = rules;
        Values = new KvValue[rules.SlotCount];
        HasValue = new bool[rules.SlotCount];
        Changed = new bool[rules.SlotCount];
        ChangedList = new int[rules.SlotCount];
        Alarms = new AlarmProgress[rules.Alarms.Length];
        for (var i = 0; i < Alarms.Length; i++)
        {
            Alarms[i] = new AlarmProgress(rules.Alarms[i].CreateRules.Length);
        }
    }

    public CompiledAlarmRules Rules { get; }

    internal KvValue[] Values { get; }

    internal bool[] HasValue { get; }

    /// <summary>Scratch of the evaluation in progress: which slots the current update touched, and their list.</summary>
    internal bool[] Changed { get; }

    internal int[] ChangedList { get; }

    internal AlarmProgress[] Alarms { get; }

    /// <summary>The severity of the alarm of this type that the rules hold raised, or null.</summary>
    public AlarmSeverity? ActiveSeverity(string alarmType)
    {
        for (var i = 0; i < Alarms.Length; i++)
        {
            if (Rules.Alarms[i].Source.AlarmType == alarmType)
            {
                return Alarms[i].Active;
            }
        }

        return null;
    }

    /// <summary>
    /// The alarm of this type was cleared elsewhere (an operator, the alarm service): the rules no longer hold it
    /// raised, so the next time a create rule holds a new alarm is raised, as ThingsBoard does for a cleared alarm.
    /// The rules' progress is kept. False when no alarm of the profile has this type.
    /// </summary>
    public bool ForgetRaised(string alarmType)
    {
        for (var i = 0; i < Alarms.Length; i++)
        {
            if (Rules.Alarms[i].Source.AlarmType == alarmType)
            {
                Alarms[i].Active = null;
                Alarms[i].PendingUpdateTs = 0;
                Alarms[i].Clear = default;
                return true;
            }
        }

        return false;
    }

    /// <summary>Loads current values (the device's attributes or latest telemetry, read at start) without evaluating.</summary>
    public void Seed(RuleKeyType type, string key, KvValue value)
    {
        var slot = Rules.FindSlot(type, key);
        if (slot >= 0)
        {
            Values[slot] = value;
            HasValue[slot] = true;
        }
    }

    /// <summary>
    /// Whether the state holds anything the latest values cannot give back: a raised alarm, or a rule's duration or
    /// count under way. A state without is what a device starts from anyway (seeded from its stored attributes and
    /// latest telemetry), so it need not be written.
    /// </summary>
    public bool HasProgress
    {
        get
        {
            foreach (var alarm in Alarms)
            {
                if (alarm.Active is not null || !alarm.Clear.IsEmpty)
                {
                    return true;
                }

                foreach (var rule in alarm.Create)
                {
                    if (!rule.IsEmpty)
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }

    /// <summary>Writes the state as a small JSON document.</summary>
    public void WriteSnapshot(IBufferWriter<byte> output)
    {
        using var writer = new Utf8JsonWriter(output);
        writer.WriteStartObject();
        writer.WriteNumber("version", SnapshotVersion);
        writer.WriteStartArray("values");
        for (var slot = 0; slot < Values.Length; slot++)
        {
            if (!HasValue[slot])
            {
                continue;
            }

            var (type, key) = Rules.Slot(slot);
            writer.WriteStartObject();
            writer.WriteString("type", type == RuleKeyType.TimeSeries ? "TIME_SERIES" : "ATTRIBUTE");
            writer.WriteString("key", key);
            writer.WriteNumber("dataType", (int)Values[slot].Type);
            writer.WritePropertyName("value");
            Values[slot].WriteTo(writer);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteStartArray("alarms");
        for (var i = 0; i < Alarms.Length; i++)
        {
            var alarm = Rules.Alarms[i];
            var progress = Alarms[i];
            writer.WriteStartObject();
            writer.WriteString("id", alarm.Source.Id);
            if (progress.Active is { } active)
            {
                writer.WriteString("severity", active.Name());
            }
            else
            {
                writer.WriteNull("severity");
            }

            writer.WriteNumber("startTs", progress.StartTs);
            writer.WriteStartArray("rules");
            for (var r = 0; r < alarm.CreateRules.Length; r++)
            {
                WriteProgress(writer, alarm.CreateRules[r].Severity!.Value.Name(), progress.Create[r]);
            }

            WriteProgress(writer, "CLEAR", progress.Clear);
            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    /// <summary>Rebuilds a state for <paramref name="rules"/> from a snapshot; throws <see cref="JsonException"/> when it is not one.</summary>
    public static DeviceRuleState Restore(CompiledAlarmRules rules, ReadOnlySpan<byte> snapshot)
    {
        try
        {
            return RestoreCore(rules, snapshot);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new JsonException("Not an alarm rule state snapshot: " + e.Message, e);
        }
    }

    private static DeviceRuleState RestoreCore(CompiledAlarmRules rules, ReadOnlySpan<byte> snapshot)
    {
        var state = new DeviceRuleState(rules);
        var reader = new Utf8JsonReader(snapshot);
        using var document = JsonDocument.ParseValue(ref reader);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("version", out var version) || version.GetInt32() != SnapshotVersion)
        {
            throw new JsonException("Not an alarm rule state snapshot of version 1.");
        }

        foreach (var value in root.GetProperty("values").EnumerateArray())
        {
            var type = value.GetProperty("type").GetString() == "TIME_SERIES" ? RuleKeyType.TimeSeries : RuleKeyType.Attribute;
            var slot = rules.FindSlot(type, value.GetProperty("key").GetString()!);
            if (slot < 0)
            {
                continue;
            }

            var v = value.GetProperty("value");
            state.Values[slot] = (DataType)value.GetProperty("dataType").GetInt32() switch
            {
                DataType.Boolean => KvValue.Of(v.GetBoolean()),
                DataType.Long => KvValue.Of(v.GetInt64()),
                DataType.Double => KvValue.Of(v.GetDouble()),
                DataType.Json => KvValue.OfJson(v.GetRawText()),
                _ => KvValue.Of(v.GetString()!),
            };
            state.HasValue[slot] = true;
        }

        foreach (var saved in root.GetProperty("alarms").EnumerateArray())
        {
            var id = saved.GetProperty("id").GetString();
            var index = Array.FindIndex(rules.Alarms, a => a.Source.Id == id);
            if (index < 0)
            {
                continue;
            }

            var alarm = rules.Alarms[index];
            var progress = state.Alarms[index];
            if (AlarmNames.TryParseSeverity(saved.GetProperty("severity").GetString(), out var severity))
            {
                progress.Active = severity;
                progress.StartTs = saved.GetProperty("startTs").GetInt64();
            }

            foreach (var rule in saved.GetProperty("rules").EnumerateArray())
            {
                var name = rule.GetProperty("severity").GetString();
                var restored = new RuleProgress(rule.GetProperty("lastEventTs").GetInt64(), rule.GetProperty("duration").GetInt64(), rule.GetProperty("eventCount").GetInt64());
                if (name == "CLEAR")
                {
                    progress.Clear = restored;
                    continue;
                }

                for (var r = 0; r < alarm.CreateRules.Length; r++)
                {
                    if (alarm.CreateRules[r].Severity!.Value.Name() == name)
                    {
                        progress.Create[r] = restored;
                    }
                }
            }
        }

        return state;
    }

    private static void WriteProgress(Utf8JsonWriter writer, string severity, RuleProgress progress)
    {
        writer.WriteStartObject();
        writer.WriteString("severity", severity);
        writer.WriteNumber("lastEventTs", progress.LastEventTs);
        writer.WriteNumber("duration", progress.Duration);
        writer.WriteNumber("eventCount", progress.EventCount);
        writer.WriteEndObject();
    }

    internal ref RuleProgress ProgressOf(int alarm, int rule) =>
        ref rule == ClearIndex ? ref Alarms[alarm].Clear : ref Alarms[alarm].Create[rule];
}

/// <summary>Per alarm: the progress of each create rule (in the compiled order), of the clear rule, and the raised severity.</summary>
internal sealed class AlarmProgress(int createRules)
{
    public RuleProgress[] Create { get; } = new RuleProgress[createRules];

    public RuleProgress Clear;

    public AlarmSeverity? Active;

    public long StartTs;

    /// <summary>The data time of an update of the raised alarm (same severity) not yet reported; 0 when none.</summary>
    public long PendingUpdateTs;

    public int PendingUpdateRule;
}

/// <summary>
/// ThingsBoard's persisted rule state: when the condition was last seen true (on the data's timestamps), for how
/// long it has held, and how many times in a row.
/// </summary>
internal record struct RuleProgress(long LastEventTs, long Duration, long EventCount)
{
    public readonly bool IsEmpty => LastEventTs == 0 && Duration == 0 && EventCount == 0;
}
