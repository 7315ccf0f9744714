using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>The connected clients of a namespace, listed and disconnected one by one (the console's MQTT clients page).</summary>
public sealed class ClientListTests
{
    [Fact]
    public async Task ListClients_ShowsEachConnectionOfTheNamespace_WithVersionAddressAndSubscriptions()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var first = await ConnectRawAsync(host, "sensor-b", ProtocolVersion.V311);
        await using var second = await ConnectRawAsync(host, "sensor-a", ProtocolVersion.V500);
        await second.SubscribeAsync("city/+/air", QoS.AtLeastOnce, packetId: 1);
        await second.SubscribeAsync("alerts/#", QoS.AtMostOnce, packetId: 2);

        var clients = host.Broker.ListClients("");

        Assert.Equal(["sensor-a", "sensor-b"], clients.Select(c => c.ClientId));
        Assert.Equal(ProtocolVersion.V500, clients[0].Version);
        Assert.Equal(["alerts/#", "city/+/air"], clients[0].Subscriptions);
        Assert.Equal(ProtocolVersion.V311, clients[1].Version);
        Assert.Empty(clients[1].Subscriptions);
        Assert.All(clients, c => Assert.StartsWith("127.0.0.1:", c.RemoteAddress, StringComparison.Ordinal));
        Assert.Empty(host.Broker.ListClients("another-tenant"));
    }

    [Fact]
    public async Task DisconnectClient_ClosesThatClientOnly_AndSaysWhyTo50Clients()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var closed = await ConnectRawAsync(host, "to-close", ProtocolVersion.V500);
        await using var kept = await ConnectRawAsync(host, "kept", ProtocolVersion.V500);

        Assert.False(host.Broker.DisconnectClient("another-tenant", "to-close", ReasonCode.AdministrativeAction, "no"));
        Assert.True(host.Broker.DisconnectClient("", "to-close", ReasonCode.AdministrativeAction, "Disconnected by an administrator."));

        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await closed.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.AdministrativeAction, disconnect.ReasonCode);
        await kept.PingAsync();
        Assert.False(host.Broker.DisconnectClient("", "missing", ReasonCode.AdministrativeAction, null));
    }
}
