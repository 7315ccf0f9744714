using System.Buffers;
using BenchmarkDotNet.Attributes;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Benchmarks.Mqtt;

/// <summary>
/// CONNECT and SUBSCRIBE: once per connection rather than per message, so they may allocate (the packet, its
/// strings and lists); the numbers show how much. The CONNECT carries a client id, user name, password and keep
/// alive (5.0: Session Expiry Interval and Receive Maximum); the SUBSCRIBE three device-style filters.
/// </summary>
[MemoryDiagnoser]
public class ConnectSubscribeCodecBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(1024);
    private PacketReader _reader = null!;
    private ConnectPacket _connect = null!;
    private SubscribePacket _subscribe = null!;
    private ReadOnlySequence<byte> _connectBytes;
    private ReadOnlySequence<byte> _subscribeBytes;

    [Params(ProtocolVersion.V311, ProtocolVersion.V500)]
    public ProtocolVersion Version { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var v5 = Version == ProtocolVersion.V500;
        _connect = new ConnectPacket
        {
            ProtocolVersion = Version,
            CleanStart = true,
            KeepAlive = 60,
            ClientId = "tenant-42-device-1234",
            UserName = "device-1234",
            Password = "s3cr3t-t0ken-0123456789"u8.ToArray(),
            Properties = v5 ? new MqttProperties { SessionExpiryInterval = 3600, ReceiveMaximum = 100 } : null,
        };
        _subscribe = new SubscribePacket { PacketId = 1 };
        _subscribe.Subscriptions.Add(new TopicSubscription { Filter = "tenant/42/device/1234/command", MaximumQoS = QoS.AtLeastOnce });
        _subscribe.Subscriptions.Add(new TopicSubscription { Filter = "tenant/42/device/1234/config/+", MaximumQoS = QoS.AtLeastOnce });
        _subscribe.Subscriptions.Add(new TopicSubscription { Filter = "tenant/42/broadcast/#", MaximumQoS = QoS.AtMostOnce });
        _connectBytes = new ReadOnlySequence<byte>(PacketWriter.ToArray(_connect, Version));
        _subscribeBytes = new ReadOnlySequence<byte>(PacketWriter.ToArray(_subscribe, Version));
        _reader = new PacketReader { Version = Version };
    }

    [Benchmark]
    public MqttPacket? DecodeConnect()
    {
        var buffer = _connectBytes;
        _reader.TryRead(ref buffer, out var packet);
        return packet;
    }

    [Benchmark]
    public int EncodeConnect()
    {
        _output.ResetWrittenCount();
        return PacketWriter.Write(_output, _connect, Version);
    }

    [Benchmark]
    public MqttPacket? DecodeSubscribe()
    {
        var buffer = _subscribeBytes;
        _reader.TryRead(ref buffer, out var packet);
        return packet;
    }

    [Benchmark]
    public int EncodeSubscribe()
    {
        _output.ResetWrittenCount();
        return PacketWriter.Write(_output, _subscribe, Version);
    }
}
