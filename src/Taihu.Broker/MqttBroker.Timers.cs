using System.Text;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;

namespace Taihu.Broker;

/// <summary>The timers: housekeeping (keep alive, will delay, session and message expiry) and $SYS statistics.</summary>
public sealed partial class MqttBroker
{
    private void Housekeep()
    {
        try
        {
            var now = Time.GetUtcNow();
            var timestamp = Time.GetTimestamp();
            if (RefusalLog.TakeSuppressed() is var suppressed and > 0)
            {
                LogRefusalsSuppressed(_logger, suppressed);
            }

            // The dictionaries are walked in place: their Values property takes every lock and copies all entries
            // into a new array each second (8 bytes per entry, a large object from about 10,600 entries), garbage
            // that a server with nothing else to do collects in gen 2.
            foreach (var (_, channel) in _channels)
            {
                channel.CheckTimeouts(timestamp);
            }

            List<MqttSession>? expired = null;
            foreach (var (_, session) in _sessions)
            {
                // A connected session has no will or expiry due; the hint is read without the session's lock only
                // to decide whether to ask, and a session that disconnects meanwhile is looked at next time.
                if (session.IsConnected)
                {
                    continue;
                }

                var dueWill = session.CheckAway(now, out var hasExpired);
                if (hasExpired)
                {
                    (expired ??= []).Add(session);
                }

                if (dueWill is not null)
                {
                    dueWill.Restamp(now);
                    RouteAndRetain(dueWill);
                    dueWill.Release();
                }
            }

            if (expired is not null)
            {
                lock (_sessionGate)
                {
                    foreach (var session in expired)
                    {
                        // Reconnected since: the registry's lock is held now, so no connection can attach meanwhile.
                        if (session.IsConnected)
                        {
                            continue;
                        }

                        if (_sessions.TryRemove(new KeyValuePair<(string, string, string), MqttSession>((session.Namespace, session.Owner, session.ClientId), session)))
                        {
                            EndSession(session);
                        }
                    }
                }
            }

            foreach (var state in _namespaces.Values)
            {
                state.Retained.RemoveExpired(now);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogHousekeepingFailed(_logger, ex);
        }
    }

    private void PublishSys()
    {
        try
        {
            var now = Time.GetUtcNow();
            var uptime = (long)(now - StartedAt).TotalSeconds;
            var subscriptions = 0;
            var retained = 0;
            foreach (var state in _namespaces.Values)
            {
                subscriptions += state.Trie.Count;
                retained += state.Retained.Count;
            }

            PublishSysValue("$SYS/broker/version", $"taihu version {Version}");
            PublishSysValue("$SYS/broker/uptime", $"{uptime} seconds");
            PublishSysValue("$SYS/broker/clients/connected", Metrics.Connected.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/clients/total", _sessions.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/messages/received", Metrics.MessagesReceived.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/messages/sent", Metrics.MessagesSent.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/publish/messages/received", Metrics.PublishReceived.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/publish/messages/sent", Metrics.PublishSent.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/publish/messages/dropped", Metrics.Dropped.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/bytes/received", Metrics.BytesReceived.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/bytes/sent", Metrics.BytesSent.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/subscriptions/count", subscriptions.ToString(System.Globalization.CultureInfo.InvariantCulture));
            PublishSysValue("$SYS/broker/retained messages/count", retained.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogHousekeepingFailed(_logger, ex);
        }
    }

    /// <summary>$SYS topics are published, retained, into the default namespace only: tenants do not see the broker's totals.</summary>
    private void PublishSysValue(string topic, string value)
    {
        var payload = Encoding.UTF8.GetBytes(value);
        var message = BrokerMessage.Create("", topic, payload, owner: null, QoS.AtMostOnce, retain: true, properties: null, Time.GetUtcNow(), originClientId: null);
        RouteAndRetain(message);
        message.Release();
    }
}
