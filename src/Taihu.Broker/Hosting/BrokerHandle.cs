using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Hosting;

/// <summary>
/// What DI hands out as <see cref="IMqttServerPublisher"/> and <see cref="IMqttClientDisconnector"/>: a forwarder
/// the broker attaches itself to when it is constructed.
/// </summary>
/// <remarks>
/// The broker is constructed with the platform's authenticator and observers, and those (through the services
/// behind them) publish to devices and disconnect them. Taking the broker itself would be a construction cycle;
/// this handle has no dependencies, so the platform's services take it and the broker is bound to it afterwards.
/// The host resolves the broker before anything is started, so a call that finds no broker is a wiring error.
/// </remarks>
internal sealed class BrokerHandle : IMqttServerPublisher, IMqttClientDisconnector
{
    private MqttBroker? _broker;

    /// <summary>Binds the handle to the one broker of the host.</summary>
    public void Attach(MqttBroker broker)
    {
        ArgumentNullException.ThrowIfNull(broker);
        if (Interlocked.CompareExchange(ref _broker, broker, null) is { } attached && !ReferenceEquals(attached, broker))
        {
            throw new InvalidOperationException("The broker handle is already attached to another broker.");
        }
    }

    public void Publish(string ns, PublishPacket packet) => Broker.Publish(ns, packet);

    public int Publish(string ns, PublishPacket packet, IDeliveryListener? listener) => Broker.Publish(ns, packet, listener);

    public int PublishHere(string ns, PublishPacket packet, IDeliveryListener? listener) => Broker.PublishHere(ns, packet, listener);

    public int Disconnect(Func<ClientIdentity, bool> match, ReasonCode code, string? reason) => Broker.Disconnect(match, code, reason);

    private MqttBroker Broker =>
        Volatile.Read(ref _broker) ?? throw new InvalidOperationException("The broker has not been constructed yet; resolve MqttBroker before publishing or disconnecting.");
}
