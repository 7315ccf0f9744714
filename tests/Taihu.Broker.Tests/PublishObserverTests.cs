using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

public class PublishObserverTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Puback_waits_until_the_observer_completes_while_the_connection_reads_on(MqttProtocolVersion version)
    {
        var observer = new GatedObserver();
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var subscriber = await TestClient.ConnectAsync(host, "sub", version);
        await subscriber.Client.SubscribeAsync("obs/t", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("obs/t", "gated", QoS.AtLeastOnce, packetId: 1));
        await publisher.SendAsync(PingReqPacket.Instance);
        var call = await observer.NextCallAsync();
        Assert.Equal("obs/t", call.Topic);
        Assert.Equal("gated", call.Payload);
        Assert.Equal("pub", call.ClientId);

        // The connection reads on while the observer works: the PINGREQ is answered first; no PUBACK yet and
        // nothing routed.
        await publisher.ExpectAsync<PingRespPacket>();
        var next = publisher.ReceiveAsync();
        Assert.False(next.IsCompleted);
        Assert.False(subscriber.HasPending);

        call.Gate.SetResult(ReasonCode.Success);
        var ack = Assert.IsType<PublishAckPacket>(await next);
        Assert.Equal(PacketType.PubAck, ack.Type);
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Equal("gated", (await subscriber.NextAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Pipelined_QoS1_publishes_are_acknowledged_and_routed_in_the_order_they_came(MqttProtocolVersion version)
    {
        var observer = new GatedObserver();
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var subscriber = await TestClient.ConnectAsync(host, "sub", version);
        await subscriber.Client.SubscribeAsync("obs/#", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("obs/a", "first", QoS.AtLeastOnce, packetId: 1));
        await publisher.SendAsync(Publish("obs/b", "second", QoS.AtLeastOnce, packetId: 2));
        await publisher.SendAsync(Publish("obs/c", "third", QoS.AtLeastOnce, packetId: 3));
        var first = await observer.NextCallAsync();
        var second = await observer.NextCallAsync();
        var third = await observer.NextCallAsync();
        Assert.Equal(["first", "second", "third"], new[] { first.Payload, second.Payload, third.Payload });

        // The later ones answer first: their acknowledgements wait for the first.
        third.Gate.SetResult(ReasonCode.Success);
        second.Gate.SetResult(ReasonCode.Success);
        await publisher.SendAsync(PingReqPacket.Instance);
        await publisher.ExpectAsync<PingRespPacket>();
        Assert.False(subscriber.HasPending);

        first.Gate.SetResult(ReasonCode.Success);
        Assert.Equal((ushort)1, Assert.IsType<PublishAckPacket>(await publisher.ReceiveAsync()).PacketId);
        Assert.Equal((ushort)2, Assert.IsType<PublishAckPacket>(await publisher.ReceiveAsync()).PacketId);
        Assert.Equal((ushort)3, Assert.IsType<PublishAckPacket>(await publisher.ReceiveAsync()).PacketId);
        Assert.Equal("first", (await subscriber.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        Assert.Equal("second", (await subscriber.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        Assert.Equal("third", (await subscriber.NextAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task A_refused_publish_behind_a_waiting_one_gets_its_code_in_turn()
    {
        var observer = new GatedObserver();
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("obs/a", "ok", QoS.AtLeastOnce, packetId: 1));
        await publisher.SendAsync(Publish("obs/a", "bad", QoS.AtLeastOnce, packetId: 2));
        var ok = await observer.NextCallAsync();
        var bad = await observer.NextCallAsync();
        bad.Gate.SetResult(ReasonCode.PayloadFormatInvalid);
        ok.Gate.SetResult(ReasonCode.Success);
        var first = Assert.IsType<PublishAckPacket>(await publisher.ReceiveAsync());
        var second = Assert.IsType<PublishAckPacket>(await publisher.ReceiveAsync());
        Assert.Equal(((ushort)1, ReasonCode.NoMatchingSubscribers), (first.PacketId, first.ReasonCode));
        Assert.Equal(((ushort)2, ReasonCode.PayloadFormatInvalid), (second.PacketId, second.ReasonCode));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Pubrec_waits_until_the_observer_completes(MqttProtocolVersion version)
    {
        var observer = new GatedObserver();
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var subscriber = await ConnectRawAsync(host, "sub", version.ToOurs());
        await subscriber.SubscribeAsync("obs/t", QoS.ExactlyOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("obs/t", "gated", QoS.ExactlyOnce, packetId: 5));
        await publisher.SendAsync(PingReqPacket.Instance);
        var call = await observer.NextCallAsync();
        var next = publisher.ReceiveAsync();
        Assert.False(next.IsCompleted);

        call.Gate.SetResult(ReasonCode.Success);
        var rec = Assert.IsType<PublishAckPacket>(await next);
        Assert.Equal(PacketType.PubRec, rec.Type);
        Assert.Equal(ReasonCode.Success, rec.ReasonCode);
        await publisher.ExpectAsync<PingRespPacket>();
        await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 5));
        await publisher.ExpectAckAsync(PacketType.PubComp, 5);
        Assert.Equal("gated", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Theory]
    [InlineData(QoS.AtLeastOnce, PacketType.PubAck, ReasonCode.QuotaExceeded)]
    [InlineData(QoS.AtLeastOnce, PacketType.PubAck, ReasonCode.ImplementationSpecificError)]
    [InlineData(QoS.ExactlyOnce, PacketType.PubRec, ReasonCode.NotAuthorized)]
    public async Task Observer_failure_code_is_carried_by_the_v5_ack_and_stops_routing(QoS qos, PacketType ackType, ReasonCode refusal)
    {
        var observer = new FuncObserver(p => p.Payload == "refuse" ? refusal : ReasonCode.Success);
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("obs/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("obs/t", "refuse", qos, packetId: 1));
        Assert.Equal(refusal, (await publisher.ExpectAckAsync(ackType, 1)).ReasonCode);
        if (qos == QoS.ExactlyOnce)
        {
            // A refused QoS 2 message is not held: the exchange ended with the PUBREC.
            await publisher.SendAsync(new PublishAckPacket(PacketType.PubRel, 1));
            Assert.Equal(ReasonCode.PacketIdentifierNotFound, (await publisher.ExpectAckAsync(PacketType.PubComp, 1)).ReasonCode);
        }

        await publisher.SendAsync(Publish("obs/t", "sentinel"));
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Refused_retained_message_is_not_stored()
    {
        var observer = new FuncObserver(p => p.Payload == "refuse" ? ReasonCode.NotAuthorized : ReasonCode.Success);
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("obs/retained", "kept", QoS.AtLeastOnce, packetId: 1, retain: true));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("obs/retained", "refuse", QoS.AtLeastOnce, packetId: 2, retain: true));
        Assert.Equal(ReasonCode.NotAuthorized, (await publisher.ExpectAckAsync(PacketType.PubAck, 2)).ReasonCode);

        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("obs/retained", QoS.AtMostOnce);
        Assert.Equal("kept", (await subscriber.ExpectPublishAsync()).Payload);
        await subscriber.PingAsync();
    }

    [Fact]
    public async Task Observer_success_code_other_than_zero_is_carried_by_the_puback()
    {
        var observer = new FuncObserver(_ => ReasonCode.NoMatchingSubscribers);
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("obs/t", QoS.AtMostOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("obs/t", "m", QoS.AtLeastOnce, packetId: 1));
        Assert.Equal(ReasonCode.NoMatchingSubscribers, (await publisher.ExpectAckAsync(PacketType.PubAck, 1)).ReasonCode);
        Assert.Equal("m", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, QoS.AtLeastOnce)]
    [InlineData(MqttProtocolVersion.V311, QoS.AtMostOnce)]
    [InlineData(MqttProtocolVersion.V500, QoS.AtMostOnce)]
    public async Task Observer_refusal_that_no_ack_can_carry_closes_the_connection(MqttProtocolVersion version, QoS qos)
    {
        var observer = new FuncObserver(p => p.Payload == "refuse" ? ReasonCode.QuotaExceeded : ReasonCode.Success);
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("obs/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", version.ToOurs());

        await publisher.SendAsync(Publish("obs/t", "refuse", qos, packetId: qos == QoS.AtMostOnce ? (ushort)0 : (ushort)1));
        var packets = await publisher.ReceiveUntilClosedAsync();
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(ReasonCode.QuotaExceeded, Assert.IsType<DisconnectPacket>(Assert.Single(packets)).ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }

        await using var other = await ConnectRawAsync(host, "other", ProtocolVersion.V500);
        await other.SendAsync(Publish("obs/t", "sentinel"));
        Assert.Equal("sentinel", (await subscriber.ExpectPublishAsync()).Payload);
    }

    [Fact]
    public async Task Observer_sees_the_topic_an_alias_stands_for()
    {
        var observer = new FuncObserver(_ => ReasonCode.Success);
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IPublishObserver>(observer));
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("obs/alias", "1", QoS.AtLeastOnce, packetId: 1, properties: new MqttProperties { TopicAlias = 1 }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);
        await publisher.SendAsync(Publish("", "2", QoS.AtLeastOnce, packetId: 2, properties: new MqttProperties { TopicAlias = 1, ContentType = "text/plain" }));
        await publisher.ExpectAckAsync(PacketType.PubAck, 2);

        Assert.Equal([("obs/alias", "1"), ("obs/alias", "2")], observer.Calls.Select(c => (c.Topic, c.Payload)));
        Assert.Equal("text/plain", observer.Calls[1].ContentType);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Server_publisher_reaches_subscribers(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        await using var subscriber = await TestClient.ConnectAsync(host, "device", version);
        await subscriber.Client.SubscribeAsync("devices/device/commands", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce);

        publisher.Publish("", new PublishPacket
        {
            Topic = "devices/device/commands",
            Payload = Encoding.UTF8.GetBytes("reboot"),
            QoS = QoS.AtLeastOnce,
            Properties = new MqttProperties { ContentType = "text/plain" },
        });

        var message = (await subscriber.NextAsync()).ApplicationMessage;
        Assert.Equal("reboot", message.ConvertPayloadToString());
        Assert.Equal(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce, message.QualityOfServiceLevel);
        Assert.Equal(version == MqttProtocolVersion.V500 ? "text/plain" : null, message.ContentType);
    }

    [Fact]
    public async Task Server_publisher_stores_retained_messages_in_the_given_namespace()
    {
        await using var host = await BrokerHost.StartAsync();
        var publisher = host.Services.GetRequiredService<IMqttServerPublisher>();
        publisher.Publish("", new PublishPacket { Topic = "config/device", Payload = Encoding.UTF8.GetBytes("v1"), Retain = true });
        publisher.Publish("tenant-b", new PublishPacket { Topic = "config/device", Payload = Encoding.UTF8.GetBytes("other"), Retain = true });
        Assert.Equal(1, host.Broker.RetainedCount(""));
        Assert.Equal(1, host.Broker.RetainedCount("tenant-b"));

        await using var subscriber = await ConnectRawAsync(host, "device", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("config/#", QoS.AtMostOnce);
        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("v1", payload);
        Assert.True(packet.Retain);
        await subscriber.PingAsync();
    }

    private readonly record struct Call(string ClientId, string Topic, string Payload, QoS QoS, string? ContentType, TaskCompletionSource<ReasonCode> Gate);

    private static Call Record(ObservedPublish publish) => new(
        publish.ClientId,
        publish.Packet.Topic,
        Encoding.UTF8.GetString(publish.Packet.Payload.Span),
        publish.Packet.QoS,
        publish.Packet.Properties?.ContentType,
        new TaskCompletionSource<ReasonCode>(TaskCreationOptions.RunContinuationsAsynchronously));

    /// <summary>Holds every publish until the test completes its gate.</summary>
    private sealed class GatedObserver : IPublishObserver
    {
        private readonly Channel<Call> _calls = Channel.CreateUnbounded<Call>();

        public async ValueTask<ReasonCode> OnPublishAsync(ObservedPublish publish, CancellationToken cancellationToken)
        {
            var call = Record(publish);
            _calls.Writer.TryWrite(call);
            return await call.Gate.Task.WaitAsync(cancellationToken);
        }

        public async Task<Call> NextCallAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            return await _calls.Reader.ReadAsync(timeout.Token);
        }
    }

    /// <summary>Answers at once with what <paramref name="decide"/> says; records the calls.</summary>
    private sealed class FuncObserver(Func<Call, ReasonCode> decide) : IPublishObserver
    {
        private readonly List<Call> _calls = [];

        public List<Call> Calls
        {
            get
            {
                lock (_calls)
                {
                    return [.. _calls];
                }
            }
        }

        public ValueTask<ReasonCode> OnPublishAsync(ObservedPublish publish, CancellationToken cancellationToken)
        {
            var call = Record(publish);
            lock (_calls)
            {
                _calls.Add(call);
            }

            return ValueTask.FromResult(decide(call));
        }
    }
}
