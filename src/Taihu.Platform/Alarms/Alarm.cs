namespace Taihu.Platform.Alarms;

/// <summary>ThingsBoard's alarm severities, most severe first: the numeric order is what "highest" means.</summary>
public enum AlarmSeverity
{
    Critical = 0,
    Major = 1,
    Minor = 2,
    Warning = 3,
    Indeterminate = 4,
}

/// <summary>
/// An alarm on a device: ThingsBoard's <c>Alarm</c>. Its status is two flags (<see cref="Acknowledged"/>,
/// <see cref="Cleared"/>), from which ThingsBoard's older <c>status</c> (ACTIVE_UNACK, ...) is derived. At most one
/// alarm per originator and type is not cleared; a repeated raise updates it.
/// </summary>
/// <param name="StartTs">When the condition began (the first raise).</param>
/// <param name="EndTs">The latest time the condition was seen (each repeated raise moves it on).</param>
/// <param name="DetailsJson">ThingsBoard's <c>details</c>, a JSON value as text (an empty object when none).</param>
/// <param name="PropagateRelationTypes">Kept and returned as given; propagation itself is not done (no relations yet).</param>
public sealed record Alarm(
    Guid Id, Guid TenantId, Guid OriginatorId, string Type, AlarmSeverity Severity, bool Acknowledged, bool Cleared,
    long StartTs, long EndTs, long AckTs, long ClearTs, long AssignTs, Guid? AssigneeId, string DetailsJson,
    bool Propagate, bool PropagateToOwner, bool PropagateToTenant, string[] PropagateRelationTypes, long CreatedTime)
{
    /// <summary>
    /// The row's version: every update must name the version it read and moves it on, so that a change made from a
    /// stale read (another process sharing the database changed the alarm meanwhile) is refused, not applied.
    /// Not part of equality: two alarms that say the same are equal whatever their versions.
    /// </summary>
    public long Version { get; init; }

    // string[] compares by reference; an alarm read back from the store must equal the one written.
    public bool Equals(Alarm? other) =>
        other is not null && Id == other.Id && TenantId == other.TenantId && OriginatorId == other.OriginatorId && Type == other.Type
        && Severity == other.Severity && Acknowledged == other.Acknowledged && Cleared == other.Cleared && StartTs == other.StartTs
        && EndTs == other.EndTs && AckTs == other.AckTs && ClearTs == other.ClearTs && AssignTs == other.AssignTs && AssigneeId == other.AssigneeId
        && DetailsJson == other.DetailsJson && Propagate == other.Propagate && PropagateToOwner == other.PropagateToOwner
        && PropagateToTenant == other.PropagateToTenant && PropagateRelationTypes.AsSpan().SequenceEqual(other.PropagateRelationTypes)
        && CreatedTime == other.CreatedTime;

    public override int GetHashCode() => HashCode.Combine(Id, Severity, Acknowledged, Cleared, EndTs, AssigneeId, DetailsJson);

    /// <summary>ThingsBoard's combined status name.</summary>
    public string StatusName => (Cleared, Acknowledged) switch
    {
        (false, false) => "ACTIVE_UNACK",
        (false, true) => "ACTIVE_ACK",
        (true, false) => "CLEARED_UNACK",
        _ => "CLEARED_ACK",
    };
}

/// <summary>Who an alarm is assigned to, as ThingsBoard's <c>AlarmAssignee</c>.</summary>
public sealed record AlarmAssignee(Guid Id, string? FirstName, string? LastName, string Email);

/// <summary>An alarm with what the lists show beside it: ThingsBoard's <c>AlarmInfo</c>.</summary>
public sealed record AlarmInfo(Alarm Alarm, string OriginatorName, string? OriginatorLabel, AlarmAssignee? Assignee);

/// <summary>What a raise or a clear did.</summary>
public enum AlarmChangeKind
{
    /// <summary>A new alarm (no active one of that type on that device).</summary>
    Created,

    /// <summary>The active alarm changed (severity, details, endTs; or it was acknowledged, cleared, assigned).</summary>
    Updated,

    /// <summary>Nothing changed: the same raise again, or a clear with no active alarm.</summary>
    Unchanged,

    /// <summary>The alarm is gone.</summary>
    Deleted,
}

/// <summary>The outcome of a change: what happened and the alarm as it is now (null when a clear found none).</summary>
public readonly record struct AlarmChange(AlarmChangeKind Kind, Alarm? Alarm);

/// <summary>Names of the enums as ThingsBoard spells them.</summary>
public static class AlarmNames
{
    public const string SeverityExpected = "CRITICAL, MAJOR, MINOR, WARNING or INDETERMINATE";

    public static string Name(this AlarmSeverity severity) => severity switch
    {
        AlarmSeverity.Critical => "CRITICAL",
        AlarmSeverity.Major => "MAJOR",
        AlarmSeverity.Minor => "MINOR",
        AlarmSeverity.Warning => "WARNING",
        _ => "INDETERMINATE",
    };

    public static bool TryParseSeverity(string? text, out AlarmSeverity severity)
    {
        switch (text)
        {
            case "CRITICAL": severity = AlarmSeverity.Critical; return true;
            case "MAJOR": severity = AlarmSeverity.Major; return true;
            case "MINOR": severity = AlarmSeverity.Minor; return true;
            case "WARNING": severity = AlarmSeverity.Warning; return true;
            case "INDETERMINATE": severity = AlarmSeverity.Indeterminate; return true;
            default: severity = default; return false;
        }
    }
}

/// <summary>
/// Which statuses a query wants, as two optional conditions: ThingsBoard's searchStatus (ANY, ACTIVE, CLEARED, ACK,
/// UNACK), its status (ACTIVE_UNACK, ...) and v2's statusList (a list of searchStatus names; ACTIVE with CLEARED, or
/// ACK with UNACK, asks for both, so no condition on that flag).
/// </summary>
public readonly record struct AlarmStatusFilter(bool? Cleared, bool? Acknowledged)
{
    public const string SearchStatusExpected = "ANY, ACTIVE, CLEARED, ACK or UNACK";

    public const string StatusExpected = "ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK or CLEARED_ACK";

    public static AlarmStatusFilter Any => default;

    public bool Matches(Alarm alarm) =>
        (Cleared is not { } cleared || cleared == alarm.Cleared) && (Acknowledged is not { } acknowledged || acknowledged == alarm.Acknowledged);

    public static bool TryParseSearchStatus(string? text, out AlarmStatusFilter filter)
    {
        filter = text switch
        {
            "ANY" => Any,
            "ACTIVE" => new AlarmStatusFilter(false, null),
            "CLEARED" => new AlarmStatusFilter(true, null),
            "ACK" => new AlarmStatusFilter(null, true),
            "UNACK" => new AlarmStatusFilter(null, false),
            _ => new AlarmStatusFilter(true, true),
        };
        return text is "ANY" or "ACTIVE" or "CLEARED" or "ACK" or "UNACK";
    }

    public static bool TryParseStatus(string? text, out AlarmStatusFilter filter)
    {
        filter = text switch
        {
            "ACTIVE_UNACK" => new AlarmStatusFilter(false, false),
            "ACTIVE_ACK" => new AlarmStatusFilter(false, true),
            "CLEARED_UNACK" => new AlarmStatusFilter(true, false),
            "CLEARED_ACK" => new AlarmStatusFilter(true, true),
            _ => Any,
        };
        return text is "ACTIVE_UNACK" or "ACTIVE_ACK" or "CLEARED_UNACK" or "CLEARED_ACK";
    }

    /// <summary>v2's statusList: each name narrows one flag; both values of a flag named means no condition on it.</summary>
    public static bool TryParseList(IEnumerable<string> names, out AlarmStatusFilter filter, out string? bad)
    {
        bool active = false, cleared = false, ack = false, unack = false;
        foreach (var name in names)
        {
            switch (name)
            {
                case "ANY": active = cleared = ack = unack = true; break;
                case "ACTIVE": active = true; break;
                case "CLEARED": cleared = true; break;
                case "ACK": ack = true; break;
                case "UNACK": unack = true; break;
                default:
                    filter = Any;
                    bad = name;
                    return false;
            }
        }

        filter = new AlarmStatusFilter(active == cleared ? null : cleared, ack == unack ? null : ack);
        bad = null;
        return true;
    }
}

/// <summary>
/// A query over a tenant's alarms: one originator or all, the statuses, severities and types wanted (null: any),
/// the assignee, and a range of createdTime. Paging, textSearch (type, severity or originator name) and sorting
/// (createdTime by default, newest first; startTs, endTs, ackTs, clearTs, assignTs, type, severity) come from
/// <see cref="Page"/>.
/// </summary>
public sealed record AlarmQuery(
    PageRequest Page, Guid? OriginatorId = null, AlarmStatusFilter Status = default, IReadOnlyCollection<AlarmSeverity>? Severities = null,
    IReadOnlyCollection<string>? Types = null, Guid? AssigneeId = null, long? StartTime = null, long? EndTime = null)
{
    /// <summary>Most types one query may name.</summary>
    public const int MaxTypes = 100;

    /// <summary>True when <paramref name="alarm"/> passes every filter but the text search and the time range.</summary>
    public bool Matches(Alarm alarm)
    {
        if ((OriginatorId is { } originator && originator != alarm.OriginatorId) || !Status.Matches(alarm)
            || (AssigneeId is { } assignee && assignee != alarm.AssigneeId))
        {
            return false;
        }

        if (Severities is { Count: > 0 } severities && !severities.Contains(alarm.Severity))
        {
            return false;
        }

        return Types is not { Count: > 0 } types || types.Contains(alarm.Type);
    }

    /// <summary>True when the query has no text search, or its text is in the type, the severity's name or the originator's name (ignoring case).</summary>
    public bool MatchesText(AlarmInfo info) =>
        string.IsNullOrEmpty(Page.TextSearch)
        || info.Alarm.Type.Contains(Page.TextSearch, StringComparison.OrdinalIgnoreCase)
        || info.Alarm.Severity.Name().Contains(Page.TextSearch, StringComparison.OrdinalIgnoreCase)
        || info.OriginatorName.Contains(Page.TextSearch, StringComparison.OrdinalIgnoreCase);
}
