using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>Request/response and user properties (5.0) travel from publisher to subscriber untouched.</summary>
public class PropertiesPassThroughTests
{
    private static readonly UserProperty[] s_userProperties =
    [
        new("b", "2"),
        new("a", "1"),
        new("a", "1"),
        new("a", "3"),
        new("ünï", "cödé"),
        new("empty", ""),
    ];

    private static MqttProperties FullProperties() => new()
    {
        ContentType = "application/json; charset=utf-8",
        ResponseTopic = "reply/to/me",
        CorrelationData = new byte[] { 0, 1, 2, 0xFF },
        UserProperties = [.. s_userProperties],
    };

    [Theory]
    [InlineData(QoS.AtMostOnce)]
    [InlineData(QoS.AtLeastOnce)]
    [InlineData(QoS.ExactlyOnce)]
    public async Task V5_subscriber_receives_every_property_unchanged(QoS qos)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("props/t", QoS.ExactlyOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);

        await publisher.SendAsync(Publish("props/t", "{}", qos, packetId: qos == QoS.AtMostOnce ? (ushort)0 : (ushort)1, properties: FullProperties()));

        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("{}", payload);
        var p = packet.Properties!;
        Assert.Equal("application/json; charset=utf-8", p.ContentType);
        Assert.Equal("reply/to/me", p.ResponseTopic);
        Assert.Equal(new byte[] { 0, 1, 2, 0xFF }, p.CorrelationData!.Value.ToArray());
        Assert.Equal(s_userProperties, p.UserProperties);
    }

    [Fact]
    public async Task Retained_message_keeps_its_properties()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var publisher = await ConnectRawAsync(host, "pub", ProtocolVersion.V500);
        await publisher.SendAsync(Publish("props/retained", "{}", QoS.AtLeastOnce, packetId: 1, retain: true, properties: FullProperties()));
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);

        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("props/retained", QoS.AtMostOnce);
        var (packet, _) = await subscriber.ExpectPublishAsync();
        Assert.True(packet.Retain);
        Assert.Equal("reply/to/me", packet.Properties!.ResponseTopic);
        Assert.Equal(s_userProperties, packet.Properties.UserProperties);
    }

    [Fact]
    public async Task MQTTnet_request_response_round_trip_keeps_properties()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await TestClient.ConnectAsync(host, "sub");
        await subscriber.Client.SubscribeAsync("props/mqttnet");
        await using var publisher = await TestClient.ConnectAsync(host, "pub");

        var message = new MqttApplicationMessageBuilder()
            .WithTopic("props/mqttnet")
            .WithPayload("ping")
            .WithContentType("text/plain")
            .WithResponseTopic("props/reply")
            .WithCorrelationData([9, 8, 7])
            .WithUserProperty("k", Encoding.UTF8.GetBytes("v1"))
            .WithUserProperty("k", Encoding.UTF8.GetBytes("v2"))
            .WithUserProperty("j", Encoding.UTF8.GetBytes("v3"))
            .Build();
        await publisher.Client.PublishAsync(message);

        var received = (await subscriber.NextAsync()).ApplicationMessage;
        Assert.Equal("text/plain", received.ContentType);
        Assert.Equal("props/reply", received.ResponseTopic);
        Assert.Equal(new byte[] { 9, 8, 7 }, received.CorrelationData);
        Assert.Equal(["k=v1", "k=v2", "j=v3"], received.UserProperties.Select(u => $"{u.Name}={Encoding.UTF8.GetString(u.ValueBuffer.Span)}"));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task V311_subscriber_gets_the_payload_without_properties(MqttProtocolVersion publisherVersion)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var subscriber = await ConnectRawAsync(host, "sub", ProtocolVersion.V311);
        await subscriber.SubscribeAsync("props/t", QoS.AtLeastOnce);
        await using var publisher = await ConnectRawAsync(host, "pub", publisherVersion.ToOurs());

        var publish = Publish("props/t", "payload", QoS.AtLeastOnce, packetId: 1, properties: publisherVersion == MqttProtocolVersion.V500 ? FullProperties() : null);
        await publisher.SendAsync(publish);
        await publisher.ExpectAckAsync(PacketType.PubAck, 1);

        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("payload", payload);
        Assert.Null(packet.Properties);
        Assert.Equal(Encoding.UTF8.GetBytes("payload"), packet.Payload.ToArray());
    }
}
