using System.Buffers;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Tests.Support;

namespace Taihu.Mqtt.Tests;

/// <summary>
/// A reader set to <see cref="PacketReader.AwaitingConnect"/> judges the first packet from its fixed header: a
/// packet that is not CONNECT is refused from its first byte, and a CONNECT larger than
/// <see cref="PacketReader.MaximumConnectPacketSize"/> as soon as the length bytes read make it so, whatever
/// follows. Each frame below is incomplete on purpose: a reader that waited for the body would say "need more".
/// </summary>
public class FirstPacketTests
{
    private const int Limit = 16 * 1024;

    // A valid 3.1.1 CONNECT: "MQTT" level 4, clean session, keep alive 60, client id "a".
    private const string Connect = "10 0D 0004 4D515454 04 02 003C 000161";

    private static PacketReader NewReader() => new() { AwaitingConnect = true, MaximumConnectPacketSize = Limit, MaximumPacketSize = 1024 * 1024 };

    public static TheoryData<string, string, ReasonCode> Frames => new()
    {
        { "PUBLISH first byte alone", "30", ReasonCode.ProtocolError },
        { "PUBLISH announcing 512 KiB", "30 80 80 20", ReasonCode.ProtocolError },
        { "SUBSCRIBE first byte alone", "82", ReasonCode.ProtocolError },
        { "PINGREQ first byte alone", "C0", ReasonCode.ProtocolError },
        { "packet type 0 first byte alone", "00", ReasonCode.ProtocolError },
        { "CONNECT announcing 64 KiB", "10 80 80 04", ReasonCode.PacketTooLarge },
        { "CONNECT announcing one byte over the limit", "10 FE 7F", ReasonCode.PacketTooLarge },
        { "CONNECT length cut short after three continuation bytes", "10 FF FF FF", ReasonCode.PacketTooLarge },
        { "CONNECT length cut short after two continuation bytes", "10 FF FF", ReasonCode.PacketTooLarge },
        { "CONNECT remaining length with five bytes", "10 FF FF FF FF 01", ReasonCode.PacketTooLarge },
    };

    [Theory]
    [MemberData(nameof(Frames))]
    public void First_packet_is_judged_from_its_fixed_header(string name, string hex, ReasonCode expected)
    {
        var bytes = Hex.Parse(hex);
        foreach (var buffer in new[] { new ReadOnlySequence<byte>(bytes), Sequences.OneBytePerSegment(bytes) })
        {
            var reader = NewReader();
            var input = buffer;
            MqttProtocolException? refused = null;
            try
            {
                reader.TryRead(ref input, out _);
            }
            catch (MqttProtocolException ex)
            {
                refused = ex;
            }

            Assert.True(refused is not null, $"{name}: read as 'need more bytes'");
            Assert.True(expected == refused.ReasonCode, $"{name}: expected {expected}, got {refused.ReasonCode} ({refused.Message})");
            Assert.Equal((PacketType)(bytes[0] >> 4), refused.PacketType);
        }
    }

    [Fact]
    public void Connect_at_the_limit_is_read_and_later_packets_follow_the_general_limit()
    {
        var reader = NewReader();

        // A CONNECT of exactly the limit: 3 header bytes and a password that fills the rest.
        var remaining = Limit - 3;
        var passwordLength = remaining - 13 - 2 - 1 - 2;
        var connect = new List<byte>(Hex.Parse($"10 {EncodeLength(remaining)} 0004 4D515454 04 C2 003C 000161 0001 75"));
        connect.Add((byte)(passwordLength >> 8));
        connect.Add((byte)passwordLength);
        connect.AddRange(new byte[passwordLength]);
        Assert.Equal(Limit, connect.Count);
        var buffer = new ReadOnlySequence<byte>(connect.ToArray());
        Assert.True(reader.TryRead(ref buffer, out var packet));
        Assert.IsType<ConnectPacket>(packet);
        Assert.False(reader.AwaitingConnect);

        // After CONNECT, a PUBLISH larger than the CONNECT limit but within MaximumPacketSize is waited for.
        reader.Version = ProtocolVersion.V311;
        var publish = new ReadOnlySequence<byte>(Hex.Parse("30 80 80 20"));
        Assert.False(reader.TryRead(ref publish, out _));
    }

    [Fact]
    public void Connect_split_anywhere_still_needs_more_bytes()
    {
        var bytes = Hex.Parse(Connect);
        for (var length = 0; length < bytes.Length; length++)
        {
            var reader = NewReader();
            var buffer = new ReadOnlySequence<byte>(bytes, 0, length);
            Assert.False(reader.TryRead(ref buffer, out _));
            Assert.True(reader.AwaitingConnect);
        }
    }

    [Fact]
    public void Maximum_packet_size_applies_when_smaller_than_the_connect_limit()
    {
        var reader = new PacketReader { AwaitingConnect = true, MaximumConnectPacketSize = Limit, MaximumPacketSize = 64 };
        var buffer = new ReadOnlySequence<byte>(Hex.Parse("10 7F"));
        Assert.Equal(ReasonCode.PacketTooLarge, Assert.Throws<MqttProtocolException>(() => reader.TryRead(ref buffer, out _)).ReasonCode);
    }

    private static string EncodeLength(int value)
    {
        var parts = new List<string>();
        do
        {
            var b = value % 128;
            value /= 128;
            parts.Add((value > 0 ? b | 0x80 : b).ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }
        while (value > 0);
        return string.Join(" ", parts);
    }
}
