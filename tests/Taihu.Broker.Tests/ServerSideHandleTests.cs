using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using static Taihu.Broker.Tests.Support.PublishTestKit;

namespace Taihu.Broker.Tests;

/// <summary>
/// An extension point that publishes and disconnects (as the platform's device connector does) takes
/// <see cref="IMqttServerPublisher"/> and <see cref="IMqttClientDisconnector"/> in its constructor, although the
/// broker itself is constructed with that extension point: no construction cycle, no service locator.
/// </summary>
public sealed class ServerSideHandleTests
{
    [Fact]
    public async Task ExtensionPoint_TakingPublisherAndDisconnector_PublishesToSubscribers()
    {
        await using var host = await StartWithControlAsync();
        var control = host.Services.GetRequiredService<ControlObserver>();
        await using var subscriber = await ConnectRawAsync(host, "device", ProtocolVersion.V500);
        await subscriber.SubscribeAsync("devices/device/commands", QoS.AtLeastOnce);

        control.Publisher.Publish("", new PublishPacket { Topic = "devices/device/commands", Payload = Encoding.UTF8.GetBytes("reboot"), QoS = QoS.AtLeastOnce });

        var (packet, payload) = await subscriber.ExpectPublishAsync();
        Assert.Equal("devices/device/commands", packet.Topic);
        Assert.Equal("reboot", payload);
    }

    [Fact]
    public async Task ExtensionPoint_TakingPublisherAndDisconnector_ClosesOnlyTheMatchingConnections()
    {
        await using var host = await StartWithControlAsync();
        var control = host.Services.GetRequiredService<ControlObserver>();
        await using var revoked = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "revoked", c => c.UserName = "revoked-user");
        await using var kept = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "kept", c => c.UserName = "kept-user");

        var closed = control.Connections.Disconnect(identity => identity.UserName == "revoked-user", ReasonCode.NotAuthorized, "Credentials changed.");

        Assert.Equal(1, closed);
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await revoked.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.NotAuthorized, disconnect.ReasonCode);
        Assert.Equal("Credentials changed.", disconnect.Properties?.ReasonString);
        await kept.PingAsync();
    }

    private static Task<BrokerHost> StartWithControlAsync() => BrokerHost.StartAsync(services: services =>
    {
        services.AddSingleton<ControlObserver>();
        services.AddSingleton<IClientLifecycleObserver>(sp => sp.GetRequiredService<ControlObserver>());
    });

    /// <summary>A lifecycle observer that also pushes to and disconnects clients, as the platform's connector does.</summary>
    private sealed class ControlObserver(IMqttServerPublisher publisher, IMqttClientDisconnector connections) : IClientLifecycleObserver
    {
        public IMqttServerPublisher Publisher => publisher;

        public IMqttClientDisconnector Connections => connections;

        public void OnConnected(ClientIdentity identity, string clientId)
        {
        }

        public void OnDisconnected(ClientIdentity identity, string clientId)
        {
        }
    }
}
