using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// Client identifiers of MQTT 3.1 (protocol name "MQIsdp", level 3), which requires 1 to 23 characters: an empty
/// identifier is refused with return code 2 (Identifier rejected), even with Clean Session 1 that 3.1.1 accepts.
/// The empty-identifier rules of 3.1.1 and 5.0 are in <see cref="ConnectTests"/>.
/// </summary>
public class ClientIdTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Empty_client_id_in_3_1_is_refused_with_return_code_2(bool cleanSession)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        raw.Version = ProtocolVersion.V310;
        await raw.SendAsync(RawPackets.Connect("", ProtocolVersion.V310, cleanStart: cleanSession));

        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await raw.ReceiveUntilClosedAsync()));
        Assert.Equal(ConnectReturnCode.IdentifierRejected, ack.ReasonCode.ToConnectReturnCode());
        Assert.False(ack.SessionPresent);
        Assert.Equal(0, host.Broker.SessionCount);
    }

    [Fact]
    public async Task Empty_client_id_in_a_hand_written_MQIsdp_connect_is_refused()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        raw.Version = ProtocolVersion.V310;
        // CONNECT, "MQIsdp", level 3, Clean Session 1, keep alive 0, client id "".
        await raw.SendHexAsync("10 0E 0006 4D5149736470 03 02 0000 0000");

        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await raw.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.ClientIdentifierNotValid, ack.ReasonCode);
        Assert.Equal(0, host.Broker.SessionCount);
    }
}
