using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// Request Problem Information (5.0 section 3.1.2.11.7): a client that sets it to 0 gets no Reason String. Each
/// case compares with the same exchange from a client that left the property out (default 1) or sent 1: there
/// the Reason String is present, so its absence is the broker's choice and not a missing feature.
/// </summary>
public class ProblemInformationTests
{
    private static MqttProperties? Properties(byte? requestProblemInformation) =>
        requestProblemInformation is { } value ? new MqttProperties { RequestProblemInformation = value } : null;

    [Theory]
    [InlineData(null, true)]
    [InlineData((byte)1, true)]
    [InlineData((byte)0, false)]
    public async Task Refused_publish_puback_carries_a_reason_string_only_when_problem_information_is_requested(byte? requestProblemInformation, bool expectReason)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await ConnectRawAsync(host, "c1", ProtocolVersion.V500, Properties(requestProblemInformation));

        await client.SendAsync(Publish("$SYS/x", "refused", QoS.AtLeastOnce, packetId: 1));
        var ack = await client.ExpectAckAsync(PacketType.PubAck, 1);
        Assert.Equal(ReasonCode.NotAuthorized, ack.ReasonCode);
        Assert.Equal(expectReason, !string.IsNullOrEmpty(ack.Properties?.ReasonString));
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData((byte)0, false)]
    public async Task Disconnect_for_a_protocol_error_carries_a_reason_string_only_when_problem_information_is_requested(byte? requestProblemInformation, bool expectReason)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await ConnectRawAsync(host, "c1", ProtocolVersion.V500, Properties(requestProblemInformation));

        // Topic Alias 0 is never valid (5.0 section 3.3.2.3.4).
        await client.SendAsync(Publish("t", "x", properties: new MqttProperties { TopicAlias = 0 }));
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.TopicAliasInvalid, disconnect.ReasonCode);
        Assert.Equal(expectReason, !string.IsNullOrEmpty(disconnect.Properties?.ReasonString));
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData((byte)0, false)]
    public async Task Refused_connack_carries_a_reason_string_only_when_problem_information_is_requested(byte? requestProblemInformation, bool expectReason)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await RawClient.OpenAsync(host);
        client.Version = ProtocolVersion.V500;
        var connect = RawPackets.Connect("c1", ProtocolVersion.V500);
        connect.Properties = Properties(requestProblemInformation) ?? new MqttProperties();
        connect.Properties.AuthenticationMethod = "UNKNOWN-METHOD";
        await client.SendAsync(connect);

        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.BadAuthenticationMethod, ack.ReasonCode);
        Assert.Equal(expectReason, !string.IsNullOrEmpty(ack.Properties?.ReasonString));
    }
}
