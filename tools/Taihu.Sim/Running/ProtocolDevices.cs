using System.Net;
using System.Net.Sockets;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>Makes the simulated device for a fleet on HJ 212, JT/T 808 or CoAP.</summary>
internal static class ProtocolDevices
{
    public static ISimDevice Create(ProvisionedDevice device, SimTarget target, string runId, ScenarioScaling scaling, Random random)
    {
        var credentials = ProtocolCredentials.For(device.Fleet.Protocol, runId, device.FleetIndex, device.Number);
        return device.Fleet.Protocol switch
        {
            DeviceProtocol.Hj212 => new Hj212SimDevice(target.MqttHost, target.Hj212Port, credentials!.Value.Id, credentials.Value.Value, device.Fleet, scaling, random),
            DeviceProtocol.Jt808 => new Jt808SimDevice(target.MqttHost, target.Jt808Port, credentials!.Value.Id, credentials.Value.Value, device.Fleet, scaling, random),
            DeviceProtocol.Coap => new CoapSimDevice(Endpoint(target.MqttHost, target.CoapPort), device.Token, device.Fleet, scaling, random),
            _ => throw new ArgumentOutOfRangeException(nameof(device), device.Fleet.Protocol, "Not a protocol of its own device class."),
        };
    }

    private static IPEndPoint Endpoint(string host, int port) =>
        new(IPAddress.TryParse(host, out var address) ? address : Array.Find(Dns.GetHostAddresses(host), a => a.AddressFamily == AddressFamily.InterNetwork)!, port);
}
