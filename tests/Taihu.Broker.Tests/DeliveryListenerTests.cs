using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// The hooks a server uses to know that what it published reached a device (the platform's RPC calls): a
/// delivery listener carried by the message, told on the subscriber's PUBACK/PUBCOMP (QoS 1/2) or when the
/// PUBLISH is written (QoS 0); and OnSubscribed, told once a subscription is in place.
/// </summary>
public class DeliveryListenerTests
{
    [Fact]
    public async Task QoS1_delivery_is_reported_on_the_subscribers_puback_and_not_before()
    {
        await using var host = await BrokerHost.StartAsync();
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        await using var subscriber = await ConnectRawAsync(host, "device", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("commands/#", QoS.AtLeastOnce);

        var listener = new RecordingListener();
        var deliveries = publisher.Publish("", new PublishPacket { Topic = "commands/1", Payload = Encoding.UTF8.GetBytes("reboot"), QoS = QoS.AtLeastOnce }, listener);
        Assert.Equal(1, deliveries);
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("reboot", payload);
        Assert.Equal(QoS.AtLeastOnce, packet.QoS);

        // Received but not acknowledged: not delivered yet. The PINGRESP shows the broker has handled all before it.
        await subscriber.PingAsync();
        Assert.False(listener.Reported.TryPeek(out _));

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubAck, packet.PacketId, ReasonCode.Success));
        Assert.Equal(QoS.AtLeastOnce, await listener.NextAsync());
    }

    [Fact]
    public async Task QoS2_delivery_is_reported_on_pubcomp()
    {
        await using var host = await BrokerHost.StartAsync();
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        await using var subscriber = await ConnectRawAsync(host, "device", ProtocolVersion.V311);
        await subscriber.SubscribeAsync("commands/#", QoS.ExactlyOnce);

        var listener = new RecordingListener();
        publisher.Publish("", new PublishPacket { Topic = "commands/2", Payload = Encoding.UTF8.GetBytes("x"), QoS = QoS.ExactlyOnce }, listener);
        var (packet, _) = await subscriber.ExpectPublishAsync();
        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubRec, packet.PacketId, ReasonCode.Success));
        await subscriber.ExpectAckAsync(PacketType.PubRel, packet.PacketId);
        await subscriber.PingAsync();
        Assert.False(listener.Reported.TryPeek(out _));

        await subscriber.SendAsync(new PublishAckPacket(PacketType.PubComp, packet.PacketId, ReasonCode.Success));
        Assert.Equal(QoS.ExactlyOnce, await listener.NextAsync());
    }

    [Fact]
    public async Task QoS0_delivery_is_reported_when_written_and_nobody_subscribed_is_zero_deliveries()
    {
        await using var host = await BrokerHost.StartAsync();
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        var listener = new RecordingListener();
        Assert.Equal(0, publisher.Publish("", new PublishPacket { Topic = "commands/3", Payload = Encoding.UTF8.GetBytes("x"), QoS = QoS.AtLeastOnce }, listener));

        await using var subscriber = await ConnectRawAsync(host, "device", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("commands/#", QoS.AtMostOnce);
        Assert.Equal(1, publisher.Publish("", new PublishPacket { Topic = "commands/3", Payload = Encoding.UTF8.GetBytes("y"), QoS = QoS.AtLeastOnce }, listener));
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("y", payload);
        Assert.Equal(QoS.AtMostOnce, packet.QoS);
        Assert.Equal(QoS.AtMostOnce, await listener.NextAsync());
        Assert.False(listener.Reported.TryPeek(out _));
    }

    [Fact]
    public async Task OnSubscribed_is_told_each_granted_filter_after_it_is_in_place()
    {
        var observer = new SubscriptionObserver();
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IClientLifecycleObserver>(observer));
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        await using var subscriber = await ConnectRawAsync(host, "device", ProtocolVersion.V500);
        observer.OnGranted = () => publisher.Publish("", new PublishPacket { Topic = "commands/4", Payload = Encoding.UTF8.GetBytes("waiting"), QoS = QoS.AtLeastOnce }, null);

        await subscriber.SubscribeAsync("commands/+", QoS.AtLeastOnce);
        var (filter, qos) = await observer.Granted.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("commands/+", filter);
        Assert.Equal(QoS.AtLeastOnce, qos);

        // What the observer published at once reaches the new subscription, after its SUBACK.
        var (_, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("waiting", payload);
    }

    private sealed class RecordingListener : IDeliveryListener
    {
        private readonly Channel<QoS> _reported = Channel.CreateUnbounded<QoS>();

        public ChannelReader<QoS> Reported => _reported.Reader;

        public void OnDelivered(QoS qos) => _reported.Writer.TryWrite(qos);

        public async Task<QoS> NextAsync() => await _reported.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }

    private sealed class SubscriptionObserver : IClientLifecycleObserver
    {
        public Channel<(string Filter, QoS QoS)> Granted { get; } = Channel.CreateUnbounded<(string, QoS)>();

        public Action? OnGranted { get; set; }

        public void OnConnected(ClientIdentity identity, string clientId)
        {
        }

        public void OnDisconnected(ClientIdentity identity, string clientId)
        {
        }

        public void OnSubscribed(ClientIdentity identity, string clientId, string filter, QoS grantedQoS)
        {
            OnGranted?.Invoke();
            Granted.Writer.TryWrite((filter, grantedQoS));
        }
    }
}
