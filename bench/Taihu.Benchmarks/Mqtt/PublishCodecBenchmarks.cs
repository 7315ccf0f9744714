using System.Buffers;
using BenchmarkDotNet.Attributes;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Topics;

namespace Taihu.Benchmarks.Mqtt;

/// <summary>
/// PUBLISH through the codec, the per-message hot path. Decoding reads a single-segment sequence (the common case
/// of a pipe read) with a <see cref="TopicNameCache"/>, and releases the pooled payload after each packet so that
/// <see cref="ArrayPool{T}"/> and the PooledBuffer wrapper pool stay in steady state: whatever the MemoryDiagnoser
/// reports is allocation beyond the payload. <see cref="Decode"/> is the plain TryRead (a new PublishPacket per
/// message); <see cref="DecodeIntoReusedPacket"/> passes the connection's reusable packet. Encoding writes into
/// one ArrayBufferWriter, reset before each packet.
/// </summary>
[MemoryDiagnoser]
public class PublishCodecBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(8192);
    private readonly PublishPacket _reusable = new();
    private PacketReader _reader = null!;
    private PublishPacket _packet = null!;
    private ReadOnlySequence<byte> _encoded;

    [Params(16, 4096)]
    public int PayloadSize { get; set; }

    [Params(QoS.AtMostOnce, QoS.AtLeastOnce)]
    public QoS QoS { get; set; }

    [Params(ProtocolVersion.V311, ProtocolVersion.V500)]
    public ProtocolVersion Version { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var payload = new byte[PayloadSize];
        new Random(42).NextBytes(payload);
        _packet = new PublishPacket
        {
            Topic = "tenant/42/device/1234/telemetry",
            QoS = QoS,
            PacketId = QoS == QoS.AtMostOnce ? (ushort)0 : (ushort)4711,
            Payload = payload,
        };
        _encoded = new ReadOnlySequence<byte>(PacketWriter.ToArray(_packet, Version));
        _reader = new PacketReader { Version = Version, TopicCache = new TopicNameCache() };
    }

    [Benchmark(Baseline = true)]
    public int Decode()
    {
        var buffer = _encoded;
        _reader.TryRead(ref buffer, out var packet);
        var publish = (PublishPacket)packet!;
        var length = publish.Payload.Length;
        publish.PayloadOwner!.Release();
        return length;
    }

    [Benchmark]
    public int DecodeIntoReusedPacket()
    {
        var buffer = _encoded;
        _reader.TryRead(ref buffer, _reusable, out _);
        var length = _reusable.Payload.Length;
        _reusable.PayloadOwner!.Release();
        return length;
    }

    [Benchmark]
    public int Encode()
    {
        _output.ResetWrittenCount();
        return PacketWriter.Write(_output, _packet, Version);
    }
}

/// <summary>
/// A 5.0 PUBLISH that carries properties (Message Expiry Interval, Content Type, one User Property): the property
/// block is decoded into a new <see cref="MqttProperties"/> with its strings and list, so this shows what a
/// property-carrying PUBLISH costs on top of the property-less one in <see cref="PublishCodecBenchmarks"/>.
/// </summary>
[MemoryDiagnoser]
public class PublishWithPropertiesCodecBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(1024);
    private readonly PublishPacket _reusable = new();
    private PacketReader _reader = null!;
    private PublishPacket _packet = null!;
    private ReadOnlySequence<byte> _encoded;

    [GlobalSetup]
    public void Setup()
    {
        _packet = new PublishPacket
        {
            Topic = "tenant/42/device/1234/telemetry",
            QoS = QoS.AtLeastOnce,
            PacketId = 4711,
            Payload = new byte[16],
            Properties = new MqttProperties
            {
                MessageExpiryInterval = 3600,
                ContentType = "application/json",
                UserProperties = [new UserProperty("schema", "v2")],
            },
        };
        _encoded = new ReadOnlySequence<byte>(PacketWriter.ToArray(_packet, ProtocolVersion.V500));
        _reader = new PacketReader { Version = ProtocolVersion.V500, TopicCache = new TopicNameCache() };
    }

    [Benchmark(Baseline = true)]
    public int Decode()
    {
        var buffer = _encoded;
        _reader.TryRead(ref buffer, out var packet);
        var publish = (PublishPacket)packet!;
        var length = publish.Payload.Length;
        publish.PayloadOwner!.Release();
        return length;
    }

    [Benchmark]
    public int DecodeIntoReusedPacket()
    {
        var buffer = _encoded;
        _reader.TryRead(ref buffer, _reusable, out _);
        var length = _reusable.Payload.Length;
        _reusable.PayloadOwner!.Release();
        return length;
    }

    [Benchmark]
    public int Encode()
    {
        _output.ResetWrittenCount();
        return PacketWriter.Write(_output, _packet, ProtocolVersion.V500);
    }
}
