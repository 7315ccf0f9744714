using System.Text.Json;
using System.Text.Json.Nodes;
using Taihu.Platform.Alarms;
using Taihu.Platform.Devices;

namespace Taihu.Server.Api;

/// <summary>
/// The alarm subscriptions of a live socket: ALARM_DATA (a page of alarms, then each change), ALARM_COUNT and
/// ALARM_STATUS (sent again when they change).
/// </summary>
/// <remarks>
/// Design: the alarm feed calls a subscription on the thread of the alarm's owner, after the change committed; the
/// subscription only filters and queues, as the telemetry subscriptions do. What needs a read (the first page, a
/// page after an alarm left the filter or was deleted, a count, a status) is queued as a refresh, and the send
/// loop reads it when its turn comes: so the first frame is always the current data, every change committed after
/// the subscription is in it or follows it, and a read delays only this socket. Refreshes queued while one is
/// waiting are folded into it.
/// </remarks>
internal sealed partial class LiveSocket
{
    private static readonly JsonSerializerOptions AlarmJson = new(JsonSerializerDefaults.Web)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly Dictionary<int, AlarmSubscription> _alarmSubscriptions = [];

    private int SubscriptionCount => _subscriptions.Count + _alarmSubscriptions.Count;

    private async Task RunAlarmAsync(LiveAlarmCommand command, CancellationToken cancellationToken)
    {
        RemoveSubscription(command.CmdId);
        if (command.Unsubscribe)
        {
            return;
        }

        if (SubscriptionCount >= _options.MaxSubscriptionsPerSocket)
        {
            ReplyAlarm(command.CmdId, command.UpdateType, LiveErrorCode.BadRequest,
                $"This socket holds {SubscriptionCount} subscriptions, the most allowed (Live:MaxSubscriptionsPerSocket); unsubscribe one first.");
            return;
        }

        if (_caller!.TenantId is not { } tenantId)
        {
            ReplyAlarm(command.CmdId, command.UpdateType, LiveErrorCode.Unauthorized, "The system administrator sees no tenant's alarms; log in as a user of the tenant.");
            return;
        }

        if (command.EntityId is { } deviceId)
        {
            Device? device;
            try
            {
                device = await _services.Devices.GetDeviceAsync(tenantId, deviceId, cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogCommandFailed(_services.Logger, e, command.CmdId);
                ReplyAlarm(command.CmdId, command.UpdateType, LiveErrorCode.Internal, "The server failed to read the device; the error is in its log.");
                return;
            }

            if (device is null)
            {
                // Another tenant's device is answered exactly as one that does not exist.
                ReplyAlarm(command.CmdId, command.UpdateType, LiveErrorCode.Unauthorized, $"Device {deviceId} was not found, or this user may not read it.");
                return;
            }
        }

        var query = command.TimeWindow > 0
            ? command.Query with { StartTime = Math.Max(0, _services.Time.GetUtcNow().ToUnixTimeMilliseconds() - command.TimeWindow) }
            : command.Query;
        var subscription = new AlarmSubscription(this, command, tenantId, query);
        _alarmSubscriptions[command.CmdId] = subscription;
        // Registered before the first read is queued: a change committed from now on is in that read or follows it.
        _services.AlarmFeed.Add(subscription);
        _services.Subscriptions.Add(1);
        subscription.RequestRefresh();
    }

    /// <summary>A cmdId names one subscription, of whichever kind: a new command under it replaces the old one.</summary>
    private void RemoveSubscription(int cmdId)
    {
        if (_subscriptions.Remove(cmdId, out var previous))
        {
            Remove(previous);
        }

        if (_alarmSubscriptions.Remove(cmdId, out var alarms))
        {
            Remove(alarms);
        }
    }

    private void Remove(AlarmSubscription subscription)
    {
        subscription.Removed = true;
        _services.AlarmFeed.Remove(subscription);
        _services.Subscriptions.Add(-1);
    }

    private void ReplyAlarm(int cmdId, string updateType, int errorCode, string message) =>
        Enqueue(new Outbound(null, cmdId, errorCode, message, null, UpdateType: updateType));

    /// <summary>Writes an alarm frame; runs on the send loop. False when there is nothing to send (a count that did not change).</summary>
    private async Task<bool> WriteAlarmFrameAsync(Utf8JsonWriter writer, Outbound item)
    {
        var frame = new JsonObject
        {
            ["cmdId"] = item.CmdId,
            ["cmdUpdateType"] = item.UpdateType,
            ["errorCode"] = item.ErrorCode,
            ["errorMsg"] = item.ErrorMsg,
        };
        if (item.Alarms is not { } subscription || item.ErrorCode != LiveErrorCode.None)
        {
            frame.WriteTo(writer);
            return true;
        }

        if (item.Changed is { } changed)
        {
            frame["data"] = null;
            frame["update"] = new JsonArray(AlarmData(changed));
            AddEntityCounts(frame, subscription);
            frame.WriteTo(writer);
            return true;
        }

        subscription.RefreshTaken();
        try
        {
            switch (subscription.Command.Kind)
            {
                case LiveAlarmKind.Data:
                    var page = await _services.Alarms.QueryAsync(subscription.TenantId, subscription.Query, _sendAborted.Token);
                    var data = new JsonArray();
                    foreach (var info in page.Data)
                    {
                        data.Add(AlarmData(info));
                    }

                    frame["data"] = new JsonObject
                    {
                        ["data"] = data,
                        ["totalPages"] = page.TotalPages,
                        ["totalElements"] = page.TotalElements,
                        ["hasNext"] = page.HasNext,
                    };
                    frame["update"] = null;
                    AddEntityCounts(frame, subscription);
                    break;
                case LiveAlarmKind.Count:
                    var count = await _services.Alarms.CountAsync(subscription.TenantId, subscription.Query, _sendAborted.Token);
                    if (count == subscription.LastCount)
                    {
                        return false;
                    }

                    subscription.LastCount = count;
                    frame["count"] = count;
                    break;
                default:
                    var active = await _services.Alarms.CountAsync(subscription.TenantId, subscription.Query, _sendAborted.Token) > 0 ? 1 : 0;
                    if (active == subscription.LastCount)
                    {
                        return false;
                    }

                    subscription.LastCount = active;
                    frame["active"] = active == 1;
                    break;
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogCommandFailed(_services.Logger, e, item.CmdId);
            frame["errorCode"] = LiveErrorCode.Internal;
            frame["errorMsg"] = "The server failed to read the alarms; the error is in its log.";
        }

        frame.WriteTo(writer);
        return true;
    }

    /// <summary>ThingsBoard's allowedEntities and totalEntities: known for a single device (1); not counted for all devices.</summary>
    private static void AddEntityCounts(JsonObject frame, AlarmSubscription subscription)
    {
        if (subscription.Command.EntityId is not null)
        {
            frame["allowedEntities"] = 1;
            frame["totalEntities"] = 1;
        }
    }

    /// <summary>ThingsBoard's AlarmData: the AlarmInfo, its entityId, and the latest values asked for (none here).</summary>
    private static JsonObject AlarmData(AlarmInfo info)
    {
        var node = JsonSerializer.SerializeToNode(info.ToDto(), AlarmJson)!.AsObject();
        node["entityId"] = new JsonObject { ["entityType"] = "DEVICE", ["id"] = info.Alarm.OriginatorId.ToString() };
        node["latest"] = new JsonObject();
        return node;
    }

    /// <summary>One alarm subscription of this socket; the feed calls it on the thread of the alarm's owner.</summary>
    private sealed class AlarmSubscription(LiveSocket socket, LiveAlarmCommand command, Guid tenantId, AlarmQuery query) : IAlarmSubscriber
    {
        private int _refreshQueued;

        public LiveAlarmCommand Command => command;

        public AlarmQuery Query => query;

        public Guid TenantId => tenantId;

        public volatile bool Removed;

        /// <summary>The count (or 1/0 for active) last sent; touched only by the send loop.</summary>
        public long LastCount { get; set; } = -1;

        public void OnAlarm(AlarmEvent change)
        {
            var alarm = change.Info.Alarm;
            if (Removed || (command.EntityId is { } deviceId && deviceId != alarm.OriginatorId))
            {
                return;
            }

            if (command.Kind == LiveAlarmKind.Data && change.Kind != AlarmChangeKind.Deleted && query.Matches(alarm) && query.MatchesText(change.Info)
                && (query.StartTime is not { } start || alarm.CreatedTime >= start))
            {
                socket.Enqueue(new Outbound(null, command.CmdId, LiveErrorCode.None, null, null, this, change.Info, command.UpdateType));
                return;
            }

            if (command.Kind == LiveAlarmKind.Data && change.Kind == AlarmChangeKind.Created)
            {
                // A new alarm that does not match was never on the page.
                return;
            }

            // Left the filter, deleted, or a count or status that may have moved: read again.
            RequestRefresh();
        }

        public void RequestRefresh()
        {
            if (Interlocked.Exchange(ref _refreshQueued, 1) == 0)
            {
                socket.Enqueue(new Outbound(null, command.CmdId, LiveErrorCode.None, null, null, this, null, command.UpdateType));
            }
        }

        /// <summary>The send loop is about to read: a change committed from now on asks for another read.</summary>
        public void RefreshTaken() => Volatile.Write(ref _refreshQueued, 0);
    }
}
