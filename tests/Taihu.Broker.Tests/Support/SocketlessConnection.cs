using System.Buffers;
using System.Net;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests.Support;

/// <summary>
/// Drives one <see cref="MqttChannel"/>, the protocol state machine of a connection, without a socket: the test
/// hands it packets (<see cref="HandleAsync"/>) and takes, encoded and decoded again, what it queued to send
/// (<see cref="TakeSent"/>). The channel is the broker's own, attached to a real <see cref="MqttBroker"/>; only
/// the transport is replaced, by this class, which sends nothing by itself.
/// </summary>
internal sealed class SocketlessConnection : IChannelTransport
{
    private readonly PacketReader _decoder = new();

    public SocketlessConnection(MqttBroker broker, int port = 50_000)
    {
        Channel = new MqttChannel(broker, new IPEndPoint(IPAddress.Loopback, port), clientCertificate: null);
        Channel.AttachTransport(this);
    }

    public MqttChannel Channel { get; }

    /// <summary>Times the channel asked its transport to start sending.</summary>
    public int SendsScheduled { get; private set; }

    /// <summary>Whether the channel asked its transport to stop reading (it is closing).</summary>
    public bool StoppedReceiving { get; private set; }

    public void ScheduleSend() => SendsScheduled++;

    public void StopReceiving() => StoppedReceiving = true;

    /// <summary>Hands the channel one packet from the client; false when the connection must close.</summary>
    public ValueTask<bool> HandleAsync(MqttPacket packet) => Channel.HandleAsync(packet, CancellationToken.None);

    /// <summary>Connects and returns the CONNACK.</summary>
    public async Task<ConnAckPacket> ConnectAsync(string clientId, ProtocolVersion version, bool cleanStart = true, MqttProperties? properties = null)
    {
        Assert.True(await HandleAsync(new ConnectPacket { ProtocolVersion = version, ClientId = clientId, CleanStart = cleanStart, Properties = properties }));
        return Assert.IsType<ConnAckPacket>(Assert.Single(TakeSent()));
    }

    /// <summary>Everything the channel queued for the client since the last call, as the client would decode it.</summary>
    public List<MqttPacket> TakeSent()
    {
        var output = new ArrayBufferWriter<byte>();
        while (Channel.TryDequeueOutbound(out var item))
        {
            Channel.WriteOutbound(item, output);
        }

        Channel.TryStopSending();
        _decoder.Version = Channel.Version == ProtocolVersion.Unknown ? ProtocolVersion.V311 : Channel.Version;
        var buffer = new ReadOnlySequence<byte>(output.WrittenMemory);
        var packets = new List<MqttPacket>();
        while (_decoder.TryRead(ref buffer, out var packet))
        {
            packets.Add(packet);
        }

        Assert.True(buffer.IsEmpty, "The channel wrote a partial packet.");
        return packets;
    }
}
