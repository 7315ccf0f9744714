using System.Diagnostics;
using System.Text;
using MQTTnet.Formatter;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests.Support;

/// <summary>Packets a <see cref="RawClient"/> sends, built with the fields feature tests care about.</summary>
public static class RawPackets
{
    public static ProtocolVersion ToRaw(this MqttProtocolVersion version) => (ProtocolVersion)(byte)version;

    public static ConnectPacket Connect(string clientId, MqttProtocolVersion version, bool cleanStart = true, ushort keepAlive = 0, uint? sessionExpiry = null, WillMessage? will = null) =>
        Connect(clientId, version.ToRaw(), cleanStart, keepAlive, sessionExpiry, will);

    public static ConnectPacket Connect(string clientId, ProtocolVersion version, bool cleanStart = true, ushort keepAlive = 0, uint? sessionExpiry = null, WillMessage? will = null) => new()
    {
        ProtocolVersion = version,
        ClientId = clientId,
        CleanStart = cleanStart,
        KeepAlive = keepAlive,
        Properties = sessionExpiry is { } expiry && version == ProtocolVersion.V500 ? new MqttProperties { SessionExpiryInterval = expiry } : null,
        Will = will,
    };

    public static WillMessage Will(string topic, string payload, QoS qos = QoS.AtMostOnce, bool retain = false, MqttProperties? properties = null) => new()
    {
        Topic = topic,
        Payload = Encoding.UTF8.GetBytes(payload),
        QoS = qos,
        Retain = retain,
        Properties = properties,
    };

    public static SubscribePacket Subscribe(ushort packetId, string filter, QoS qos)
    {
        var subscribe = new SubscribePacket { PacketId = packetId };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = filter, MaximumQoS = qos });
        return subscribe;
    }

    public static PublishPacket Publish(string topic, string payload, QoS qos = QoS.AtMostOnce, ushort packetId = 0, bool retain = false) => new()
    {
        Topic = topic,
        Payload = Encoding.UTF8.GetBytes(payload),
        QoS = qos,
        PacketId = packetId,
        Retain = retain,
    };

    public static string PayloadText(this PublishPacket publish) => Encoding.UTF8.GetString(publish.Payload.Span);

    /// <summary>Subscribes and waits for the SUBACK; fails unless every filter was granted.</summary>

    /// <summary>The next packet, which must be a <typeparamref name="T"/>.</summary>
}

/// <summary>
/// Waits for broker state that has no outward signal (a session detached after its socket closed). Polls the
/// condition, yielding in between; the 10 s wall-clock bound is a failure guard only, never a delay.
/// </summary>
public static class BrokerState
{
    public static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(10))
            {
                throw new TimeoutException($"Timed out waiting until {what}.");
            }

            await Task.Yield();
        }
    }

    /// <summary>Waits until the session of <paramref name="clientId"/> has no connection (detached, or gone).</summary>
    public static Task WaitUntilDetachedAsync(this BrokerHost host, string clientId, string ns = "") =>
        WaitUntilAsync(() =>
        {
            var session = host.Broker.FindSession(ns, clientId);
            if (session is null)
            {
                return true;
            }

            return session.IsDetached;
        }, $"session '{clientId}' is detached");

    /// <summary>Waits until the session of <paramref name="clientId"/> is gone from the broker.</summary>
    public static Task WaitUntilSessionGoneAsync(this BrokerHost host, string clientId, string ns = "") =>
        WaitUntilAsync(() => host.Broker.FindSession(ns, clientId) is null, $"session '{clientId}' is gone");
}
