using MQTTnet;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// The hostile-frame corpus against a running broker over a raw socket. Each case is a name and the exact bytes
/// (hex, spaces for readability), sent either as the first packet or after a valid CONNECT of the case's version,
/// and the exact reaction: a 5.0 client gets DISCONNECT (or CONNACK for a bad CONNECT) with the reason code and
/// then the socket closes; a 3.1.1 client (and anyone before CONNECT) sees the socket close with nothing sent.
/// Afterwards a fresh client must still be served.
/// </summary>
public class BrokerHostileFrameTests
{
    public enum Reaction
    {
        /// <summary>DISCONNECT with the code, then close (5.0 after CONNECT).</summary>
        Disconnect,

        /// <summary>CONNACK with the code, then close (a refused CONNECT).</summary>
        ConnAck,

        /// <summary>The socket closes with nothing sent.</summary>
        Close,
    }

    /// <param name="Name">What is wrong with the frame.</param>
    /// <param name="Version">The version of the valid CONNECT sent first, or of the CONNECT under test.</param>
    /// <param name="AfterConnect">Whether a valid CONNECT precedes the frame.</param>
    /// <param name="Hex">The frame.</param>
    /// <param name="Reaction">What the broker must do.</param>
    /// <param name="Code">The reason code of DISCONNECT or CONNACK.</param>
    /// <param name="Options">Broker options for the case.</param>
    /// <param name="Leading">Acknowledgements the broker sends before its reaction (for frames that are valid at first).</param>
    public sealed record HostileCase(string Name, ProtocolVersion Version, bool AfterConnect, string Hex, Reaction Reaction, ReasonCode Code = ReasonCode.Success, Action<BrokerOptions>? Options = null, int Leading = 0);

    private const ProtocolVersion V5 = ProtocolVersion.V500;
    private const ProtocolVersion V3 = ProtocolVersion.V311;

    // A valid 5.0 CONNECT: "MQTT" level 5, clean start, keep alive 60, no properties, client id "c1".
    private const string ValidConnect5 = "10 0F 0004 4D515454 05 02 003C 00 0002 6331";

    private static HostileCase After5(string name, string hex, ReasonCode code, Action<BrokerOptions>? options = null, int leading = 0) =>
        new(name, V5, true, hex, Reaction.Disconnect, code, options, leading);

    private static HostileCase After3(string name, string hex) => new(name, V3, true, hex, Reaction.Close);

    private static HostileCase Connect5(string name, string hex, ReasonCode code) => new(name, V5, false, hex, Reaction.ConnAck, code);

    private static HostileCase Connect3(string name, string hex) => new(name, V3, false, hex, Reaction.Close);

    private static readonly HostileCase[] s_cases =
    [
        // Fixed header.
        After5("remaining length with 5 bytes (5.0)", "30 FF FF FF FF 01", ReasonCode.MalformedPacket),
        After3("remaining length with 5 bytes (3.1.1)", "30 FF FF FF FF 01"),
        new("remaining length with 5 bytes as first packet", V5, false, "10 FF FF FF FF 01", Reaction.Close),
        After5("PUBREL with flags 0", "60 02 0001", ReasonCode.MalformedPacket),
        After3("PUBREL with flags 0 (3.1.1)", "60 02 0001"),
        After5("SUBSCRIBE with flags 0", "80 07 0001 00 0001 61 00", ReasonCode.MalformedPacket),
        After3("SUBSCRIBE with flags 0 (3.1.1)", "80 06 0001 0001 61 00"),
        After5("UNSUBSCRIBE with flags 0", "A0 06 0001 00 0001 61", ReasonCode.MalformedPacket),
        After5("PINGREQ with flags 1", "C1 00", ReasonCode.MalformedPacket),
        After5("DISCONNECT with flags 1", "E1 00", ReasonCode.MalformedPacket),
        Connect5("CONNECT with fixed header flags 1", "11 0F 0004 4D515454 05 02 003C 00 0002 6331", ReasonCode.MalformedPacket),
        After5("packet type 0", "00 00", ReasonCode.MalformedPacket),
        new("packet type 0 as first packet", V5, false, "00 00", Reaction.Close),
        After3("AUTH in 3.1.1", "F0 00"),
        After5("PUBACK shorter than a packet identifier", "40 01 00", ReasonCode.MalformedPacket),

        // PUBLISH.
        After5("PUBLISH with QoS 3", "36 06 0001 61 0001 00", ReasonCode.MalformedPacket),
        After3("PUBLISH with QoS 3 (3.1.1)", "36 05 0001 61 0001"),
        After5("PUBLISH QoS 0 with DUP", "38 04 0001 61 00", ReasonCode.MalformedPacket),
        After5("topic with overlong encoding C0 AF", "30 05 0002 C0AF 00", ReasonCode.MalformedPacket),
        After5("topic with surrogate ED A0 80", "30 06 0003 EDA080 00", ReasonCode.MalformedPacket),
        After5("topic with truncated sequence", "30 05 0002 61E2 00", ReasonCode.MalformedPacket),
        After5("topic with byte FF", "30 04 0001 FF 00", ReasonCode.MalformedPacket),
        After3("topic with byte FF (3.1.1)", "30 03 0001 FF"),
        After5("topic with U+0000", "30 06 0003 610062 00", ReasonCode.MalformedPacket),
        After5("topic name with +", "30 06 0003 612F2B 00", ReasonCode.TopicNameInvalid),
        After5("topic name with #", "30 06 0003 612F23 00", ReasonCode.TopicNameInvalid),
        After3("topic name with # (3.1.1)", "30 05 0003 612F23"),
        After5("PUBLISH QoS 1 with packet identifier 0", "32 06 0001 61 0000 00", ReasonCode.MalformedPacket),
        After5("empty topic without topic alias", "30 03 0000 00", ReasonCode.ProtocolError),
        After3("empty topic (3.1.1)", "30 02 0000"),
        After5("topic alias 0", "30 07 0001 61 03 230000", ReasonCode.TopicAliasInvalid),
        After5("topic alias above the maximum", "30 07 0001 61 03 23000B", ReasonCode.TopicAliasInvalid),
        After5("topic alias that was never set", "30 06 0000 03 230001", ReasonCode.ProtocolError),
        After5("topic string runs past the packet end", "30 03 0010 61", ReasonCode.MalformedPacket),
        After5("duplicated Payload Format Indicator", "30 08 0001 61 04 0101 0101", ReasonCode.ProtocolError),
        After5("Session Expiry Interval in PUBLISH", "30 09 0001 61 05 11 00000001", ReasonCode.MalformedPacket),
        After5("unknown property 0x05", "30 06 0001 61 02 0500", ReasonCode.MalformedPacket),
        After5("property length past the end", "30 06 0001 61 0A 0101", ReasonCode.MalformedPacket),
        After5("Payload Format Indicator 2", "30 06 0001 61 02 0102", ReasonCode.ProtocolError),
        After5("Response Topic with a wildcard", "30 0A 0001 61 06 08 0003 612F23", ReasonCode.ProtocolError),
        After5("QoS 2 beyond Receive Maximum", "34 06 0001 61 0001 00  34 06 0001 61 0002 00  34 06 0001 61 0003 00", ReasonCode.ReceiveMaximumExceeded, o => o.MaximumInflightMessages = 2, leading: 2),
        After5("packet larger than MaximumPacketSize (header only)", "30 80 80 40", ReasonCode.PacketTooLarge),
        After5("packet larger than a small MaximumPacketSize", "30 46 0001 61 00" + string.Concat(Enumerable.Repeat(" 4142434445464748", 8)) + " 41424344454647", ReasonCode.PacketTooLarge, o => o.MaximumPacketSize = 64),

        // SUBSCRIBE and UNSUBSCRIBE.
        After5("SUBSCRIBE with packet identifier 0", "82 07 0000 00 0001 61 00", ReasonCode.MalformedPacket),
        After5("UNSUBSCRIBE with packet identifier 0", "A2 06 0000 00 0001 61", ReasonCode.MalformedPacket),
        After5("SUBSCRIBE without a topic filter", "82 03 0001 00", ReasonCode.ProtocolError),
        After3("SUBSCRIBE without a topic filter (3.1.1)", "82 02 0001"),
        After5("UNSUBSCRIBE without a topic filter", "A2 03 0001 00", ReasonCode.ProtocolError),
        After5("SUBSCRIBE with an empty topic filter", "82 06 0001 00 0000 00", ReasonCode.MalformedPacket),
        After3("SUBSCRIBE with an empty topic filter (3.1.1)", "82 05 0001 0000 00"),
        After5("UNSUBSCRIBE with an empty topic filter", "A2 05 0001 00 0000", ReasonCode.MalformedPacket),
        After3("UNSUBSCRIBE with an empty topic filter (3.1.1)", "A2 04 0001 0000"),
        After5("subscription options with reserved bits", "82 07 0001 00 0001 61 C0", ReasonCode.MalformedPacket),
        After3("subscription options with reserved bits (3.1.1)", "82 06 0001 0001 61 04"),
        After5("subscription QoS 3", "82 07 0001 00 0001 61 03", ReasonCode.ProtocolError),
        After3("subscription QoS 3 (3.1.1)", "82 06 0001 0001 61 03"),
        After5("retain handling 3", "82 07 0001 00 0001 61 30", ReasonCode.ProtocolError),
        After5("Subscription Identifier 0", "82 09 0001 02 0B00 0001 61 00", ReasonCode.ProtocolError),
        After5("two Subscription Identifiers", "82 0B 0001 04 0B01 0B02 0001 61 00", ReasonCode.ProtocolError),
        After5("topic filter runs past the packet end", "82 06 0001 00 0005 61", ReasonCode.MalformedPacket),
        After5("topic filter with invalid UTF-8", "82 07 0001 00 0001 FF 00", ReasonCode.MalformedPacket),

        // PINGREQ, DISCONNECT, AUTH.
        After5("PINGREQ with a trailing byte", "C0 01 00", ReasonCode.MalformedPacket),
        After3("PINGREQ with a trailing byte (3.1.1)", "C0 01 00"),
        After3("DISCONNECT with a body in 3.1.1", "E0 01 00"),
        After5("AUTH with reason code 0x05", "F0 01 05", ReasonCode.ProtocolError),

        // Packets a client may not send, or not now.
        After5("second CONNECT", ValidConnect5, ReasonCode.ProtocolError),
        After3("second CONNECT (3.1.1)", "10 0E 0004 4D515454 04 02 003C 0002 6331"),
        new("PUBLISH before CONNECT", V5, false, "30 05 0001 61 00 6869", Reaction.Close),
        new("SUBSCRIBE before CONNECT", V3, false, "82 06 0001 0001 61 00", Reaction.Close),
        After5("CONNACK sent by a client", "20 03 00 00 00", ReasonCode.ProtocolError),
        After3("CONNACK sent by a client (3.1.1)", "20 02 00 00"),
        After5("SUBACK sent by a client", "90 04 0001 00 00", ReasonCode.ProtocolError),
        After5("PINGRESP sent by a client", "D0 00", ReasonCode.ProtocolError),

        // CONNECT.
        new("CONNECT with protocol name MQTX", V5, false, "10 0F 0004 4D515458 05 02 003C 00 0002 6331", Reaction.ConnAck, ReasonCode.UnsupportedProtocolVersion),
        new("CONNECT with level 6", V5, false, "10 0F 0004 4D515454 06 02 003C 00 0002 6331", Reaction.ConnAck, ReasonCode.UnsupportedProtocolVersion),
        new("CONNECT MQIsdp with level 4", V3, false, "10 10 0006 4D5149736470 04 02 003C 0002 6331", Reaction.ConnAck, ReasonCode.UnsupportedProtocolVersion),
        Connect5("CONNECT with the reserved flag", "10 0F 0004 4D515454 05 03 003C 00 0002 6331", ReasonCode.MalformedPacket),
        Connect3("CONNECT with the reserved flag (3.1.1)", "10 0E 0004 4D515454 04 03 003C 0002 6331"),
        Connect5("will QoS 3", "10 0F 0004 4D515454 05 1E 003C 00 0002 6331", ReasonCode.MalformedPacket),
        Connect5("will retain without will flag", "10 0F 0004 4D515454 05 22 003C 00 0002 6331", ReasonCode.MalformedPacket),
        Connect3("will QoS 1 without will flag (3.1.1)", "10 0E 0004 4D515454 04 0A 003C 0002 6331"),
        Connect3("password without user name (3.1.1)", "10 11 0004 4D515454 04 42 003C 0002 6331 0001 70"),
        Connect5("will topic with a wildcard", "10 17 0004 4D515454 05 06 003C 00 0002 6331 00 0003 612F23 0000", ReasonCode.TopicNameInvalid),
        Connect5("duplicated Receive Maximum", "10 15 0004 4D515454 05 02 003C 06 21000A 21000A 0002 6331", ReasonCode.ProtocolError),
        Connect5("Topic Alias in CONNECT", "10 12 0004 4D515454 05 02 003C 03 230001 0002 6331", ReasonCode.MalformedPacket),
        Connect5("Receive Maximum 0", "10 12 0004 4D515454 05 02 003C 03 210000 0002 6331", ReasonCode.ProtocolError),
        Connect5("Maximum Packet Size 0", "10 14 0004 4D515454 05 02 003C 05 27 00000000 0002 6331", ReasonCode.ProtocolError),
        Connect5("Request Problem Information 2", "10 11 0004 4D515454 05 02 003C 02 1702 0002 6331", ReasonCode.ProtocolError),
        Connect5("Authentication Data without Authentication Method", "10 12 0004 4D515454 05 02 003C 03 160000 0002 6331", ReasonCode.ProtocolError),
        Connect5("client identifier runs past the packet end", "10 0F 0004 4D515454 05 02 003C 00 0009 6331", ReasonCode.MalformedPacket),
        Connect5("client identifier with invalid UTF-8", "10 0F 0004 4D515454 05 02 003C 00 0002 C0AF", ReasonCode.MalformedPacket),
        Connect5("CONNECT with bytes after the last field", "10 10 0004 4D515454 05 02 003C 00 0002 6331 00", ReasonCode.MalformedPacket),
    ];

    private static readonly Dictionary<string, HostileCase> s_byName = s_cases.ToDictionary(c => c.Name);

    public static TheoryData<string> Cases => new(s_cases.Select(c => c.Name));

    [Fact]
    public void Corpus_has_at_least_45_distinct_frames()
    {
        Assert.Equal(s_cases.Length, s_byName.Count);
        Assert.True(s_cases.Select(c => c.Hex.Replace(" ", "", StringComparison.Ordinal)).Distinct().Count() >= 45);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Broker_reacts_exactly_and_keeps_serving(string name)
    {
        var hostile = s_byName[name];
        await using var host = await BrokerHost.StartAsync(hostile.Options);
        await using (var raw = hostile.AfterConnect
            ? await RawSession.ConnectAsync(host, hostile.Version, "hostile")
            : await RawClient.OpenAsync(host))
        {
            // A refused CONNECT is answered in 5.0 form, except a refused protocol version (answered as 3.1.1 does).
            raw.Version = hostile.Reaction == Reaction.ConnAck && hostile.Code == ReasonCode.UnsupportedProtocolVersion ? ProtocolVersion.Unknown : hostile.Version;
            await raw.SendHexAsync(hostile.Hex);
            var packets = await raw.ReceiveUntilClosedAsync();
            Assert.Equal(hostile.Leading, packets.Count(p => p is PublishAckPacket));
            var reactions = packets.Where(p => p is not PublishAckPacket).ToList();
            switch (hostile.Reaction)
            {
                case Reaction.Disconnect:
                    Assert.Equal(hostile.Code, Assert.IsType<DisconnectPacket>(Assert.Single(reactions)).ReasonCode);
                    break;
                case Reaction.ConnAck:
                    Assert.Equal(hostile.Code, Assert.IsType<ConnAckPacket>(Assert.Single(reactions)).ReasonCode);
                    break;
                default:
                    Assert.Empty(reactions);
                    break;
            }
        }

        await using var client = await TestClient.ConnectAsync(host, "after");
        await client.Client.SubscribeAsync("alive");
        await client.Client.PublishStringAsync("alive", "yes");
        Assert.Equal("yes", (await client.NextAsync()).ApplicationMessage.ConvertPayloadToString());
    }
}
