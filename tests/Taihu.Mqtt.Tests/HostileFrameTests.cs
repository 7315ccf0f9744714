using System.Buffers;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Tests.Support;

namespace Taihu.Mqtt.Tests;

/// <summary>
/// A corpus of malformed frames, each one whole packet that can never become valid, and the exact reason code the
/// reader must refuse it with (MQTT 5.0 section 2.2.2.2, 4.13 and the packet sections; 3.1.1 where it differs).
/// Every frame is fed twice: in one buffer and one byte per segment.
/// </summary>
public class HostileFrameTests
{
    private const ReasonCode Malformed = ReasonCode.MalformedPacket;
    private const ReasonCode Protocol = ReasonCode.ProtocolError;
    private const ProtocolVersion V311 = ProtocolVersion.V311;
    private const ProtocolVersion V5 = ProtocolVersion.V500;

    // CONNECT frames carry their own version; the reader has none yet.
    private const ProtocolVersion Connect = ProtocolVersion.Unknown;

    // Pieces of CONNECT: "MQTT" + level, and a client id "a".
    private const string Mqtt = "0004 4D515454";
    private const string ClientA = "000161";

    public static TheoryData<string, ProtocolVersion, string, ReasonCode> Frames => new()
    {
        // Fixed header
        { "packet type 0", V311, "00 00", Malformed },
        { "packet type 0 in 5.0", V5, "00 00", Malformed },
        { "CONNECT with header flags 1", Connect, $"11 0D {Mqtt} 04 02 003C {ClientA}", Malformed },
        { "CONNACK with header flags 2", V311, "22 02 00 00", Malformed },
        { "PUBACK with header flags 2", V311, "42 02 0001", Malformed },
        { "PUBREL with header flags 0", V311, "60 02 0001", Malformed },
        { "PUBREL with header flags 3", V5, "63 02 0001", Malformed },
        { "SUBSCRIBE with header flags 0", V311, "80 06 0001 000161 00", Malformed },
        { "SUBACK with header flags 2", V311, "92 03 0001 00", Malformed },
        { "UNSUBSCRIBE with header flags 0", V311, "A0 05 0001 000161", Malformed },
        { "UNSUBACK with header flags 1", V311, "B1 02 0001", Malformed },
        { "PINGREQ with header flags 1", V311, "C1 00", Malformed },
        { "PINGRESP with header flags 8", V311, "D8 00", Malformed },
        { "DISCONNECT with header flags 1", V311, "E1 00", Malformed },
        { "AUTH with header flags 1", V5, "F1 00", Malformed },
        { "AUTH in 3.1.1", V311, "F0 00", Malformed },
        { "PUBLISH with QoS 3", V311, "36 05 000161 0001", Malformed },
        { "PUBLISH with DUP and QoS 0", V311, "38 03 000161", Malformed },

        // Strings: well-formed UTF-8 without U+0000 (section 1.5.4)
        { "topic with overlong '/'", V311, "30 04 0002 C0AF", Malformed },
        { "topic with overlong NUL", V311, "30 05 0003 61 C080", Malformed },
        { "topic with surrogate ED A0 80", V311, "30 05 0003 EDA080", Malformed },
        { "topic with truncated 3-byte sequence", V311, "30 05 0003 61 E282", Malformed },
        { "topic with byte FF", V311, "30 04 0002 61 FF", Malformed },
        { "topic with lone continuation byte", V5, "30 05 0002 61 80 00", Malformed },
        { "topic with code point above U+10FFFF", V311, "30 06 0004 F4908080", Malformed },
        { "topic with U+0000", V311, "30 05 0003 610062", Malformed },
        { "user property name with bad UTF-8", V5, "30 0A 000161 06 26 0001 FF 0000", Malformed },
        { "client id with U+0000", Connect, $"10 0D {Mqtt} 04 02 003C 0001 00", Malformed },

        // Topic names (section 4.7)
        { "PUBLISH topic with +", V311, "30 05 0003 612F2B", ReasonCode.TopicNameInvalid },
        { "PUBLISH topic with #", V311, "30 05 0003 612F23", ReasonCode.TopicNameInvalid },
        { "PUBLISH topic with + in 5.0", V5, "30 04 0001 2B 00", ReasonCode.TopicNameInvalid },
        { "empty topic in 3.1.1", V311, "30 02 0000", ReasonCode.TopicNameInvalid },
        { "empty topic without topic alias in 5.0", V5, "30 03 0000 00", Protocol },
        { "will topic with # in 3.1.1", Connect, $"10 12 {Mqtt} 04 06 003C {ClientA} 000123 0000", Malformed },
        { "will topic with # in 5.0", Connect, $"10 14 {Mqtt} 05 06 003C 00 {ClientA} 00 000123 0000", ReasonCode.TopicNameInvalid },

        // Packet identifiers (section 2.2.1)
        { "PUBLISH QoS 1 with packet id 0", V311, "32 05 000161 0000", Malformed },
        { "PUBLISH QoS 2 with packet id 0 in 5.0", V5, "34 06 000161 0000 00", Malformed },
        { "PUBACK with packet id 0", V311, "40 02 0000", Malformed },
        { "PUBREC with packet id 0 in 5.0", V5, "50 02 0000", Malformed },
        { "SUBSCRIBE with packet id 0", V311, "82 06 0000 000161 00", Malformed },
        { "UNSUBSCRIBE with packet id 0", V311, "A2 05 0000 000161", Malformed },

        // SUBSCRIBE and UNSUBSCRIBE payloads (sections 3.8.3, 3.10.3)
        { "SUBSCRIBE without payload", V311, "82 02 0001", Protocol },
        { "SUBSCRIBE without payload in 5.0", V5, "82 03 0001 00", Protocol },
        { "UNSUBSCRIBE without payload", V311, "A2 02 0001", Protocol },
        { "UNSUBSCRIBE without payload in 5.0", V5, "A2 03 0001 00", Protocol },
        // An empty topic filter: 4.7.3 "at least one character long"; Mosquitto calls it malformed.
        { "SUBSCRIBE with an empty topic filter", V311, "82 05 0001 0000 00", Malformed },
        { "SUBSCRIBE with an empty topic filter in 5.0", V5, "82 06 0001 00 0000 00", Malformed },
        { "SUBSCRIBE with an empty topic filter after a valid one in 5.0", V5, "82 0A 0001 00 000161 00 0000 00", Malformed },
        { "UNSUBSCRIBE with an empty topic filter", V311, "A2 04 0001 0000", Malformed },
        { "UNSUBSCRIBE with an empty topic filter in 5.0", V5, "A2 05 0001 00 0000", Malformed },
        { "subscription options with bits 6-7 set", V5, "82 07 0001 00 000161 C0", Malformed },
        { "subscription options with 5.0 bits in 3.1.1", V311, "82 06 0001 000161 04", Malformed },
        { "subscription with QoS 3 in 3.1.1", V311, "82 06 0001 000161 03", Malformed },
        { "subscription with QoS 3 in 5.0", V5, "82 07 0001 00 000161 03", Protocol },
        { "subscription with retain handling 3", V5, "82 07 0001 00 000161 30", Protocol },
        { "subscription without options byte", V311, "82 05 0001 000161", Malformed },

        // CONNECT (section 3.1.2)
        { "CONNECT with protocol name MQTX", Connect, $"10 0D 0004 4D515458 04 02 003C {ClientA}", ReasonCode.UnsupportedProtocolVersion },
        { "CONNECT with protocol name mqtt", Connect, $"10 0D 0004 6D717474 04 02 003C {ClientA}", ReasonCode.UnsupportedProtocolVersion },
        { "CONNECT with protocol level 6", Connect, $"10 0D {Mqtt} 06 02 003C {ClientA}", ReasonCode.UnsupportedProtocolVersion },
        { "CONNECT with protocol level 2", Connect, $"10 0D {Mqtt} 02 02 003C {ClientA}", ReasonCode.UnsupportedProtocolVersion },
        { "CONNECT MQTT with level 3", Connect, $"10 0D {Mqtt} 03 02 003C {ClientA}", ReasonCode.UnsupportedProtocolVersion },
        { "CONNECT MQIsdp with level 4", Connect, $"10 0F 0006 4D5149736470 04 02 003C {ClientA}", ReasonCode.UnsupportedProtocolVersion },
        { "CONNECT with reserved flag", Connect, $"10 0D {Mqtt} 04 03 003C {ClientA}", Malformed },
        { "CONNECT with reserved flag in 5.0", Connect, $"10 0E {Mqtt} 05 01 003C 00 {ClientA}", Malformed },
        { "CONNECT with will QoS 3", Connect, $"10 12 {Mqtt} 04 1E 003C {ClientA} 000174 0000", Malformed },
        { "CONNECT with will retain but no will", Connect, $"10 0D {Mqtt} 04 22 003C {ClientA}", Malformed },
        { "CONNECT with will QoS 1 but no will", Connect, $"10 0D {Mqtt} 04 0A 003C {ClientA}", Malformed },
        { "CONNECT with password but no user name in 3.1.1", Connect, $"10 10 {Mqtt} 04 42 003C {ClientA} 000170", Malformed },
        { "CONNECT ending after the protocol level", Connect, $"10 07 {Mqtt} 04", Malformed },
        { "CONNECT with client id running past the end", Connect, $"10 0D {Mqtt} 04 02 003C 0005 61", Malformed },
        { "CONNECT with will flag but no will fields", Connect, $"10 0D {Mqtt} 04 06 003C {ClientA}", Malformed },
        { "CONNECT with bytes after the last field", Connect, $"10 0E {Mqtt} 04 02 003C {ClientA} 00", Malformed },

        // Properties (section 2.2.2.2)
        { "PUBLISH with two Message Expiry Intervals", V5, "30 0E 000161 0A 0200000001 0200000002", Protocol },
        { "CONNECT with two Session Expiry Intervals", Connect, $"10 18 {Mqtt} 05 02 003C 0A 1100000001 1100000002 {ClientA}", Protocol },
        { "PUBLISH with two Topic Aliases", V5, "30 0A 000161 06 230001 230002", Protocol },
        { "PUBLISH with two Content Types", V5, "30 0C 000161 08 03000161 03000162", Protocol },
        { "Session Expiry Interval in PUBLISH", V5, "30 09 000161 05 1100000001", Malformed },
        { "Topic Alias in CONNECT", Connect, $"10 11 {Mqtt} 05 02 003C 03 230001 {ClientA}", Malformed },
        { "Will Delay Interval in PUBLISH", V5, "30 09 000161 05 1800000001", Malformed },
        { "Subscription Identifier in UNSUBSCRIBE", V5, "A2 08 0001 02 0B01 000161", Malformed },
        { "Reason String in PUBLISH", V5, "30 08 000161 04 1F000178", Malformed },
        { "unknown property 0x7F", V5, "30 05 000161 01 7F", Malformed },
        { "unknown property 0x00", V5, "30 06 000161 02 0000", Malformed },
        { "property id encoded in two bytes", V5, "30 07 000161 03 8101 00", Malformed },
        { "property length past the end", V5, "30 05 000161 05 01", Malformed },
        { "property value past the property length", V5, "30 08 000161 02 0200 0000", Malformed },
        { "property length of five bytes", V5, "30 08 000161 FFFFFFFF7F", Malformed },
        { "Subscription Identifier of five bytes", V5, "30 0A 000161 06 0B FFFFFFFF7F", Malformed },
        { "Receive Maximum 0", Connect, $"10 11 {Mqtt} 05 02 003C 03 210000 {ClientA}", Protocol },
        { "Maximum Packet Size 0", Connect, $"10 13 {Mqtt} 05 02 003C 05 2700000000 {ClientA}", Protocol },
        { "Subscription Identifier 0 in SUBSCRIBE", V5, "82 09 0001 02 0B00 000161 00", Protocol },
        { "Subscription Identifier 0 in PUBLISH", V5, "30 06 000161 02 0B00", Protocol },
        { "two Subscription Identifiers in SUBSCRIBE", V5, "82 0B 0001 04 0B01 0B02 000161 00", Protocol },
        { "Payload Format Indicator 2", V5, "30 06 000161 02 0102", Protocol },
        { "property id encoded in two bytes (over-long)", V5, "30 07 000161 03 8100 01", Malformed },
        { "property length encoded in two bytes (over-long)", V5, "30 05 000161 8000", Malformed },
        { "Request Problem Information 2", Connect, $"10 10 {Mqtt} 05 02 003C 02 1702 {ClientA}", Protocol },
        { "Maximum QoS 2 in CONNACK", V5, "20 05 00 00 02 2402", Protocol },
        { "Authentication Data without Method in CONNECT", Connect, $"10 12 {Mqtt} 05 02 003C 04 160001AA {ClientA}", Protocol },
        { "Response Topic with wildcard", V5, "30 08 000161 04 08000123", Protocol },
        { "Response Topic empty", V5, "30 07 000161 03 080000", Protocol },

        // Lengths and trailing bytes
        { "topic length past the packet end", V311, "30 04 0005 6162", Malformed },
        { "PUBACK ending inside the packet id", V311, "40 01 00", Malformed },
        { "PUBACK with a byte after the packet id in 3.1.1", V311, "40 03 0001 00", Malformed },
        { "DISCONNECT with a body in 3.1.1", V311, "E0 01 00", Malformed },
        { "DISCONNECT with bytes after the properties", V5, "E0 03 00 00 00", Malformed },
        { "PINGREQ with a body", V311, "C0 01 00", Malformed },
        { "PINGRESP with a body in 5.0", V5, "D0 01 00", Malformed },
        { "CONNACK ending after the flags", V311, "20 01 00", Malformed },
        { "CONNACK with reserved acknowledge flags", V311, "20 02 02 00", Malformed },
        { "UNSUBACK with a payload in 3.1.1", V311, "B0 03 0001 00", Malformed },

        // AUTH (section 3.15)
        { "AUTH with reason code 0x80", V5, "F0 01 80", Protocol },
        { "AUTH with reason code 0x87", V5, "F0 02 87 00", Protocol },
    };

    [Theory]
    [MemberData(nameof(Frames))]
    public void Hostile_frame_is_refused_with_the_exact_reason_code(string name, ProtocolVersion version, string hex, ReasonCode expected)
    {
        var bytes = Hex.Parse(hex);

        // The entry must be exactly one whole frame; otherwise it could pass by being read as "need more bytes"
        // or by failing in some other place than the one its name promises.
        Assert.True(PacketReader.TryReadFixedHeader(new ReadOnlySequence<byte>(bytes), int.MaxValue, out _, out var remaining, out var headerLength), name);
        Assert.True(bytes.Length == headerLength + remaining, $"{name}: the remaining length says {remaining}, the body has {bytes.Length - headerLength} bytes");

        foreach (var buffer in new[] { new ReadOnlySequence<byte>(bytes), Sequences.OneBytePerSegment(bytes) })
        {
            var ex = ReadExpectingError(buffer, version);
            Assert.True(expected == ex.ReasonCode, $"{name}: expected {expected}, got {ex.ReasonCode} ({ex.Message})");
            Assert.Equal((PacketType)(bytes[0] >> 4), ex.PacketType);
        }
    }

    [Fact]
    public void Corpus_has_at_least_45_distinct_frames_with_distinct_names()
    {
        var rows = Frames.Select(row => (Name: (string)row[0], Version: (ProtocolVersion)row[1], Bytes: Hex.Format(Hex.Parse((string)row[2])))).ToList();
        Assert.True(rows.Count >= 45, $"{rows.Count} frames");
        Assert.Equal(rows.Count, rows.Select(r => r.Name).Distinct().Count());
        Assert.Equal(rows.Count, rows.Select(r => (r.Version, r.Bytes)).Distinct().Count());
    }

    [Theory]
    [InlineData("30 FF FF FF FF 7F")]
    [InlineData("30 80 80 80 80 01")]
    [InlineData("C0 FF FF FF FF")]
    public void Remaining_length_of_five_bytes_is_malformed(string hex)
    {
        var bytes = Hex.Parse(hex);
        foreach (var buffer in new[] { new ReadOnlySequence<byte>(bytes), Sequences.OneBytePerSegment(bytes) })
        {
            var ex = ReadExpectingError(buffer, V311);
            Assert.Equal(Malformed, ex.ReasonCode);
        }
    }

    [Theory]
    [InlineData("30")]
    [InlineData("30 FF")]
    [InlineData("30 FF FF FF")]
    [InlineData("30 0A 000161")]
    [InlineData("30 0A 000161 00000000")]
    [InlineData("82 FF 7F 0001")]
    public void Remaining_length_longer_than_the_bytes_so_far_is_need_more_not_an_error(string hex)
    {
        var bytes = Hex.Parse(hex);
        var reader = new PacketReader { Version = V311 };
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.False(reader.TryRead(ref buffer, out var packet));
        Assert.Null(packet);
        Assert.Equal(bytes.Length, buffer.Length);
    }

    [Fact]
    public void Packet_too_large_is_refused_from_the_fixed_header_before_the_body_arrives()
    {
        // 101 bytes of PUBLISH announced; only the fixed header is here.
        var reader = new PacketReader { Version = V5, MaximumPacketSize = 100 };
        var buffer = new ReadOnlySequence<byte>(Hex.Parse("30 63"));
        var ex = ReadExpectingError(buffer, reader);
        Assert.Equal(ReasonCode.PacketTooLarge, ex.ReasonCode);
        Assert.Equal(PacketType.Publish, ex.PacketType);

        // Exactly at the limit: need more bytes, not an error.
        var atLimit = new ReadOnlySequence<byte>(Hex.Parse("30 62"));
        Assert.False(reader.TryRead(ref atLimit, out _));
    }

    [Fact]
    public void Packet_too_large_counts_the_fixed_header()
    {
        // Remaining length 127 takes one byte (total 129); 128 takes two (total 131).
        var reader = new PacketReader { Version = V311, MaximumPacketSize = 130 };
        var fits = new ReadOnlySequence<byte>(Hex.Parse("30 7F"));
        Assert.False(reader.TryRead(ref fits, out _));
        var ex = ReadExpectingError(new ReadOnlySequence<byte>(Hex.Parse("30 80 01")), reader);
        Assert.Equal(ReasonCode.PacketTooLarge, ex.ReasonCode);
    }

    [Fact]
    public void Default_maximum_accepts_the_largest_remaining_length()
    {
        var reader = new PacketReader { Version = V311 };
        var buffer = new ReadOnlySequence<byte>(Hex.Parse("30 FF FF FF 7F 0001"));
        Assert.False(reader.TryRead(ref buffer, out _));
    }

    [Fact]
    public void Packet_too_large_split_across_segments_is_refused_once_the_length_is_complete()
    {
        var reader = new PacketReader { Version = V311, MaximumPacketSize = 1000 };
        var bytes = Hex.Parse("30 E8 07");
        var partial = Sequences.FromChunks([[0x30], [0xE8]]);
        Assert.False(reader.TryRead(ref partial, out _));
        var ex = ReadExpectingError(Sequences.OneBytePerSegment(bytes), reader);
        Assert.Equal(ReasonCode.PacketTooLarge, ex.ReasonCode);
    }

    [Fact]
    public void Errors_inside_CONNECT_carry_the_version_of_the_client()
    {
        var v5 = ReadExpectingError(new ReadOnlySequence<byte>(Hex.Parse($"10 18 {Mqtt} 05 02 003C 0A 1100000001 1100000002 {ClientA}")), Connect);
        Assert.Equal(ProtocolVersion.V500, v5.ConnectVersion);
        Assert.Equal(PacketType.Connect, v5.PacketType);

        var v311 = ReadExpectingError(new ReadOnlySequence<byte>(Hex.Parse($"10 0D {Mqtt} 04 03 003C {ClientA}")), Connect);
        Assert.Equal(ProtocolVersion.V311, v311.ConnectVersion);

        var v31 = ReadExpectingError(new ReadOnlySequence<byte>(Hex.Parse($"10 0F 0006 4D5149736470 03 03 003C {ClientA}")), Connect);
        Assert.Equal(ProtocolVersion.V310, v31.ConnectVersion);

        // Before the level is known there is no version to answer in.
        var unknown = ReadExpectingError(new ReadOnlySequence<byte>(Hex.Parse($"10 0D {Mqtt} 06 02 003C {ClientA}")), Connect);
        Assert.Equal(ProtocolVersion.Unknown, unknown.ConnectVersion);
    }

    [Fact]
    public void A_refused_frame_leaves_the_buffer_unsliced()
    {
        var reader = new PacketReader { Version = V311 };
        var buffer = new ReadOnlySequence<byte>(Hex.Parse("30 05 0003 612F2B"));
        try
        {
            reader.TryRead(ref buffer, out _);
            Assert.Fail("The frame was accepted.");
        }
        catch (MqttProtocolException)
        {
            Assert.Equal(7, buffer.Length);
        }
    }

    private static MqttProtocolException ReadExpectingError(ReadOnlySequence<byte> buffer, ProtocolVersion version) =>
        ReadExpectingError(buffer, new PacketReader { Version = version });

    private static MqttProtocolException ReadExpectingError(ReadOnlySequence<byte> buffer, PacketReader reader) =>
        Assert.Throws<MqttProtocolException>(() => reader.TryRead(ref buffer, out _));
}
