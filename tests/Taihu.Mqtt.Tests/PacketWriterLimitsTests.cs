using System.Buffers;
using Taihu.Mqtt.Packets;

namespace Taihu.Mqtt.Tests;

public class PacketWriterLimitsTests
{
    [Fact]
    public void A_topic_longer_than_65535_bytes_is_refused_rather_than_truncated()
    {
        var packet = new PublishPacket { Topic = new string('a', 65_536) };
        Assert.Throws<ArgumentException>(() => PacketWriter.ToArray(packet, ProtocolVersion.V311));
    }

    [Fact]
    public void Correlation_data_longer_than_65535_bytes_is_refused()
    {
        var packet = new PublishPacket { Topic = "t", Properties = new MqttProperties { CorrelationData = new byte[65_536] } };
        Assert.Throws<ArgumentException>(() => PacketWriter.Write(new ArrayBufferWriter<byte>(), packet, ProtocolVersion.V500));
    }

    [Fact]
    public void A_topic_of_exactly_65535_bytes_round_trips()
    {
        var packet = new PublishPacket { Topic = new string('a', 65_535) };
        var bytes = PacketWriter.ToArray(packet, ProtocolVersion.V311);
        var sequence = new ReadOnlySequence<byte>(bytes);
        Assert.True(new PacketReader { Version = ProtocolVersion.V311 }.TryRead(ref sequence, out var decoded));
        Assert.Equal(packet.Topic, ((PublishPacket)decoded).Topic);
    }
}
