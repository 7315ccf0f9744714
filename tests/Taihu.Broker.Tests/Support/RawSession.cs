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

    public static async Task<T> ExpectAsync<T>(this RawClient client) where T : MqttPacket
    {
        var packet = await client.ReceiveAsync();
        return Assert.IsType<T>(packet);
    }

    public static ProtocolVersion ToRaw(this MQTTnet.Formatter.MqttProtocolVersion version) => version switch
    {
        MQTTnet.Formatter.MqttProtocolVersion.V311 => ProtocolVersion.V311,
        MQTTnet.Formatter.MqttProtocolVersion.V500 => ProtocolVersion.V500,
        _ => throw new ArgumentOutOfRangeException(nameof(version)),
    };
}
