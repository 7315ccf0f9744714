using System.Collections.Concurrent;

namespace Taihu.Platform.Alarms;

/// <summary>A change of an alarm, after it committed: what happened and the alarm as it now is (as it was, when deleted).</summary>
public sealed record AlarmEvent(AlarmChangeKind Kind, AlarmInfo Info);

/// <summary>A live listener to one tenant's alarm changes (a live socket's ALARM_DATA subscription).</summary>
public interface IAlarmSubscriber
{
    Guid TenantId { get; }

    /// <summary>Called on the thread of the alarm's owner, after the change committed; must only filter and queue.</summary>
    void OnAlarm(AlarmEvent change);
}

/// <summary>
/// Hands committed alarm changes to the live subscribers of their tenant. Subscribers are kept per tenant in
/// copy-on-write arrays: publishing takes no lock, and a tenant nobody watches costs one dictionary look-up (the
/// owner then does not even read the alarm's info for it).
/// </summary>
public sealed class AlarmFeed
{
    private readonly ConcurrentDictionary<Guid, IAlarmSubscriber[]> _byTenant = new();
    private readonly Lock _gate = new();

    public bool HasSubscribers(Guid tenantId) => _byTenant.ContainsKey(tenantId);

    /// <summary>
    /// Set on a cluster node: told of each alarm created or changed on this node (kind, tenant, alarm), whether
    /// anybody here watches or not, so that the other nodes' subscribers hear of it (they read the alarm there).
    /// </summary>
    public Action<AlarmChangeKind, Guid, Guid>? TellOthers { get; set; }

    public void Add(IAlarmSubscriber subscriber)
    {
        lock (_gate)
        {
            _byTenant[subscriber.TenantId] = _byTenant.TryGetValue(subscriber.TenantId, out var list) ? [.. list, subscriber] : [subscriber];
        }
    }

    public void Remove(IAlarmSubscriber subscriber)
    {
        lock (_gate)
        {
            if (!_byTenant.TryGetValue(subscriber.TenantId, out var list))
            {
                return;
            }

            var index = Array.IndexOf(list, subscriber);
            if (index < 0)
            {
                return;
            }

            if (list.Length == 1)
            {
                _byTenant.TryRemove(subscriber.TenantId, out _);
                return;
            }

            var copy = new IAlarmSubscriber[list.Length - 1];
            Array.Copy(list, 0, copy, 0, index);
            Array.Copy(list, index + 1, copy, index, list.Length - index - 1);
            _byTenant[subscriber.TenantId] = copy;
        }
    }

    public void Publish(AlarmEvent change)
    {
        if (_byTenant.TryGetValue(change.Info.Alarm.TenantId, out var list))
        {
            foreach (var subscriber in list)
            {
                subscriber.OnAlarm(change);
            }
        }
    }
}
