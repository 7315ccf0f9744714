using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// A will topic is authorized at CONNECT as a PUBLISH to it would be (0x87, 3.1.1 return code 5), $SYS
/// included, and again when the will is sent. "Not sent" is shown by a marker will arriving first.
/// </summary>
public class WillAuthorizationTests
{
    /// <summary>Refuses publishing under deny/, and under revocable/ once <see cref="Revoked"/> is set.</summary>
    private sealed class SwitchableAuthorizer : IMqttAuthorizer
    {
        public volatile bool Revoked;

        public ValueTask<ReasonCode> AuthorizePublishAsync(ClientIdentity identity, string clientId, string topic, CancellationToken cancellationToken) =>
            ValueTask.FromResult(topic.StartsWith("deny/", StringComparison.Ordinal) || (Revoked && topic.StartsWith("revocable/", StringComparison.Ordinal))
                ? ReasonCode.NotAuthorized
                : ReasonCode.Success);

        public ValueTask<ReasonCode> AuthorizeSubscribeAsync(ClientIdentity identity, string clientId, string filter, CancellationToken cancellationToken) =>
            ValueTask.FromResult(ReasonCode.Success);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, "deny/w")]
    [InlineData(MqttProtocolVersion.V500, "deny/w")]
    [InlineData(MqttProtocolVersion.V311, "$SYS/broker/version")]
    [InlineData(MqttProtocolVersion.V500, "$SYS/broker/version")]
    [InlineData(MqttProtocolVersion.V500, "$SYS")]
    public async Task Will_on_a_topic_the_client_may_not_publish_to_is_refused_at_connect(MqttProtocolVersion version, string topic)
    {
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttAuthorizer, SwitchableAuthorizer>());
        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("forger", version, will: RawPackets.Will(topic, "forged", retain: true)));
        await using (client)
        {
            Assert.Equal(ReasonCode.NotAuthorized, ack.ReasonCode);
            Assert.Empty(await client.ReceiveUntilClosedAsync());
        }

        Assert.Equal(0, host.Broker.RetainedCount(""));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Will_no_longer_allowed_when_it_is_sent_is_dropped(MqttProtocolVersion version)
    {
        var authorizer = new SwitchableAuthorizer();
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttAuthorizer>(authorizer));
        await using var watcher = await TestClient.ConnectAsync(host, "watcher", version);
        await watcher.Client.SubscribeAsync("revocable/#", MqttQualityOfServiceLevel.AtLeastOnce);
        await watcher.Client.SubscribeAsync("marker", MqttQualityOfServiceLevel.AtLeastOnce);

        var (client, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("w1", version, will: RawPackets.Will("revocable/w1", "gone")));
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        authorizer.Revoked = true;
        await client.DisposeAsync();

        var (marker, markerAck) = await RawClient.ConnectAsync(host, RawPackets.Connect("marker", version, will: RawPackets.Will("marker", "m")));
        Assert.Equal(ReasonCode.Success, markerAck.ReasonCode);
        await marker.DisposeAsync();
        Assert.Equal("marker", (await watcher.NextAsync()).ApplicationMessage.Topic);
    }
}
