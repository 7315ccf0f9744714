using Taihu.Broker.Extensibility;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;

namespace Taihu.Server.Protocols.Coap;

/// <summary>What an observation (RFC 7641) watches.</summary>
internal enum CoapObserved
{
    /// <summary><c>GET .../attributes</c> with Observe 0: shared-attribute updates as <c>{"k":v}</c>.</summary>
    Attributes,

    /// <summary><c>GET .../rpc</c> with Observe 0: server-side RPC commands as <c>{"id":n,"method":..,"params":..}</c>.</summary>
    Rpc,
}

/// <summary>
/// One endpoint observing one resource of one device. An observation of <c>.../rpc</c> is the device's command
/// channel and holds its <see cref="ProtocolDeviceSession"/> (the device is online while it lasts); one of
/// <c>.../attributes</c> holds a subscription to shared-attribute updates. Notifications go out as confirmable
/// messages; an RST, a deregistration, a notification never acknowledged, or the endpoint's silence ends it.
/// </summary>
internal sealed class CoapObservation(CoapListener listener, CoapEndpoint endpoint, CoapObserved kind, Device device, byte[] token)
    : IDeviceCommandChannel, ISharedAttributeSubscriber
{
    private int _sequence = 1;
    private int _ended;

    public CoapEndpoint Endpoint { get; } = endpoint;

    public CoapObserved Kind { get; } = kind;

    public Device Device { get; } = device;

    /// <summary>The token of the registering request; a re-registration with another token replaces it.</summary>
    public byte[] Token { get; set; } = token;

    public IDisposable? Subscription { get; set; }

    public ProtocolDeviceSession? Session { get; set; }

    public bool Ended => Volatile.Read(ref _ended) != 0;

    /// <summary>The next Observe value (24 bits, increasing, RFC 7641 section 4.4).</summary>
    public uint NextSequence() => (uint)Interlocked.Increment(ref _sequence) & 0xFFFFFF;

    public void OnSharedAttributes(byte[] payload) => listener.Notify(this, payload, null);

    public bool TrySend(Device device, int requestId, string method, string paramsJson, IDeliveryListener deliveryListener)
    {
        if (Ended)
        {
            return false;
        }

        listener.Notify(this, RpcRequest.DevicePayload(method, paramsJson, requestId), deliveryListener);
        return true;
    }

    /// <summary>Marks it ended; true for the one caller that does (and then releases its subscription and session).</summary>
    public bool End()
    {
        if (Interlocked.Exchange(ref _ended, 1) != 0)
        {
            return false;
        }

        Subscription?.Dispose();
        Session?.Dispose();
        return true;
    }
}
