using System.Buffers;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Tests.Support;
using Taihu.Mqtt.Topics;

namespace Taihu.Mqtt.Tests;

/// <summary>The TryRead overload that decodes a PUBLISH into a caller-provided packet.</summary>
public class PacketReaderReuseTests
{
    private static byte[] Encode(MqttPacket packet, ProtocolVersion version) => PacketWriter.ToArray(packet, version);

    [Theory]
    [InlineData(ProtocolVersion.V311)]
    [InlineData(ProtocolVersion.V500)]
    public void Publish_is_decoded_into_the_given_packet_and_every_field_is_overwritten(ProtocolVersion version)
    {
        var first = new PublishPacket
        {
            Topic = "tenant/1/device/2/telemetry",
            QoS = QoS.AtLeastOnce,
            Retain = true,
            Dup = true,
            PacketId = 7,
            Payload = new byte[] { 1, 2, 3 },
            Properties = version == ProtocolVersion.V500 ? new MqttProperties { ContentType = "application/json" } : null,
        };
        var second = new PublishPacket { Topic = "a/b", Payload = new byte[] { 9 } };
        var reader = new PacketReader { Version = version, TopicCache = new TopicNameCache() };
        var target = new PublishPacket();
        var buffer = new ReadOnlySequence<byte>([.. Encode(first, version), .. Encode(second, version)]);

        Assert.True(reader.TryRead(ref buffer, target, out var packet));
        Assert.Same(target, packet);
        Assert.Empty(PacketComparer.Differences(first, packet));
        target.PayloadOwner!.Release();

        Assert.True(reader.TryRead(ref buffer, target, out packet));
        Assert.Same(target, packet);
        Assert.Empty(PacketComparer.Differences(second, packet));
        target.PayloadOwner!.Release();
        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void Other_packets_and_a_null_target_are_decoded_as_before()
    {
        var reader = new PacketReader { Version = ProtocolVersion.V311 };
        var publish = new PublishPacket { Topic = "a/b", Payload = new byte[] { 1 } };
        var buffer = new ReadOnlySequence<byte>([.. Encode(new PublishAckPacket(PacketType.PubAck, 3), ProtocolVersion.V311), .. Encode(publish, ProtocolVersion.V311)]);
        var target = new PublishPacket();

        Assert.True(reader.TryRead(ref buffer, target, out var ack));
        Assert.IsType<PublishAckPacket>(ack);
        Assert.True(reader.TryRead(ref buffer, reusablePublish: null, out var decoded));
        Assert.NotSame(target, decoded);
        Assert.Empty(PacketComparer.Differences(publish, decoded));
        Assert.Equal("", target.Topic);
    }

    [Fact]
    public void A_malformed_publish_leaves_the_target_untouched()
    {
        var reader = new PacketReader { Version = ProtocolVersion.V311 };
        var target = new PublishPacket { Topic = "kept" };
        // QoS 1 PUBLISH, topic "a", packet identifier 0: malformed.
        var buffer = new ReadOnlySequence<byte>(Hex.Parse("32 05 00 01 61 00 00"));

        Assert.Throws<MqttProtocolException>(() => reader.TryRead(ref buffer, target, out _));
        Assert.Equal("kept", target.Topic);
        Assert.Null(target.PayloadOwner);
    }
}
