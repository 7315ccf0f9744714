using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests.Support;

/// <summary>Shortcuts for raw-socket tests: connect with a version, send hex, expect a packet of a type.</summary>
public static class RawSession
{
    public static async Task<RawClient> ConnectAsync(BrokerHost host, ProtocolVersion version, string clientId, Action<ConnectPacket>? configure = null)
    {
        var connect = new ConnectPacket { ProtocolVersion = version, ClientId = clientId, CleanStart = true };
        configure?.Invoke(connect);
        var (client, ack) = await RawClient.ConnectAsync(host, connect);
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        return client;
    }

    public static Task SendHexAsync(this RawClient client, string hex) => client.SendAsync(Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal)));
}
