using System.Globalization;
using System.Text;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;

namespace Taihu.Broker.Routing;

/// <summary>
/// The <c>$SYS</c> statistics, Mosquitto's topics: published retained every <see cref="BrokerOptions.SysInterval"/>
/// seconds into the default namespace only, so that tenants do not see the broker's totals.
/// </summary>
internal sealed class SysPublisher(MqttBroker broker, MessageRouter router, SessionRegistry sessions)
{
    public void Publish()
    {
        var metrics = broker.Metrics;
        var uptime = (long)(broker.Time.GetUtcNow() - broker.StartedAt).TotalSeconds;
        var subscriptions = 0;
        var retained = 0;
        foreach (var (_, state) in router.Namespaces)
        {
            subscriptions += state.Trie.Count;
            retained += state.Retained.Count;
        }

        Publish("$SYS/broker/version", $"taihu version {broker.Version}");
        Publish("$SYS/broker/uptime", $"{uptime} seconds");
        Publish("$SYS/broker/clients/connected", metrics.Connected);
        Publish("$SYS/broker/clients/total", sessions.Count);
        Publish("$SYS/broker/messages/received", metrics.MessagesReceived);
        Publish("$SYS/broker/messages/sent", metrics.MessagesSent);
        Publish("$SYS/broker/publish/messages/received", metrics.PublishReceived);
        Publish("$SYS/broker/publish/messages/sent", metrics.PublishSent);
        Publish("$SYS/broker/publish/messages/dropped", metrics.Dropped);
        Publish("$SYS/broker/bytes/received", metrics.BytesReceived);
        Publish("$SYS/broker/bytes/sent", metrics.BytesSent);
        Publish("$SYS/broker/subscriptions/count", subscriptions);
        Publish("$SYS/broker/retained messages/count", retained);
    }

    private void Publish(string topic, long value) => Publish(topic, value.ToString(CultureInfo.InvariantCulture));

    private void Publish(string topic, string value)
    {
        var payload = Encoding.UTF8.GetBytes(value);
        var message = BrokerMessage.Create("", topic, payload, owner: null, QoS.AtMostOnce, retain: true, properties: null, broker.Time.GetUtcNow(), originClientId: null);
        router.RouteAndRetain(message);
        message.Release();
    }
}
