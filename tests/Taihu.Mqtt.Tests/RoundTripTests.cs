using System.Buffers;
using System.Reflection;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Tests.Support;
using Taihu.Mqtt.Topics;
using Xunit.Sdk;

namespace Taihu.Mqtt.Tests;

/// <summary>
/// Property tests of the codec: for random valid packets of every type and version, decode(encode(p)) equals p
/// field by field, re-encoding gives the same bytes, and the reader copes with the frame arriving in any number of
/// pieces: every strict prefix is "need more bytes", the whole decodes and is sliced off the buffer. Each iteration
/// has its own seed, printed on failure; <see cref="Reproduce"/> replays one.
/// </summary>
public class RoundTripTests
{
    private const int Iterations = 500;

    public static TheoryData<PacketType, ProtocolVersion> Cases()
    {
        var data = new TheoryData<PacketType, ProtocolVersion>();
        foreach (var type in Enum.GetValues<PacketType>())
        {
            if (type == PacketType.Reserved)
            {
                continue;
            }

            foreach (var version in new[] { ProtocolVersion.V310, ProtocolVersion.V311, ProtocolVersion.V500 })
            {
                // AUTH exists only in 5.0.
                if (type != PacketType.Auth || version == ProtocolVersion.V500)
                {
                    data.Add(type, version);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Random_packets_round_trip(PacketType type, ProtocolVersion version)
    {
        for (var i = 0; i < Iterations; i++)
        {
            RunIteration(type, version, SeedOf(type, version, i));
        }
    }

    /// <summary>Replays one iteration: put the seed from a failure message here and run it under a debugger.</summary>
    [Theory]
    [InlineData(PacketType.Publish, ProtocolVersion.V500, 3_050_000)]
    public void Reproduce(PacketType type, ProtocolVersion version, int seed) => RunIteration(type, version, seed);

    [Fact]
    public void Seeds_are_distinct_across_cases()
    {
        var seeds = new HashSet<int>();
        foreach (var row in Cases())
        {
            var type = (PacketType)row[0];
            var version = (ProtocolVersion)row[1];
            for (var i = 0; i < Iterations; i++)
            {
                Assert.True(seeds.Add(SeedOf(type, version, i)));
            }
        }
    }

    private static int SeedOf(PacketType type, ProtocolVersion version, int iteration) =>
        ((int)type * 1_000_000) + ((int)version * 10_000) + iteration;

    private static void RunIteration(PacketType type, ProtocolVersion version, int seed)
    {
        var rng = new Random(seed);
        var packet = new PacketGenerator(rng, version).Create(type);
        try
        {
            CheckRoundTrip(packet, version, rng);
        }
        catch (Exception ex) when (ex is not XunitException)
        {
            Assert.Fail($"seed {seed} ({type}, {version}): {ex}");
        }
        catch (XunitException ex)
        {
            Assert.Fail($"seed {seed} ({type}, {version}): {ex.Message}");
        }
    }

    private static void CheckRoundTrip(MqttPacket packet, ProtocolVersion version, Random rng)
    {
        var bytes = PacketWriter.ToArray(packet, version);
        Assert.Equal(bytes.Length, PacketWriter.GetSize(packet, version));
        Assert.Equal((byte)packet.Type, bytes[0] >> 4);

        // CONNECT carries its own version; everything else is read in the version the connection agreed on.
        var readerVersion = packet is ConnectPacket ? ProtocolVersion.Unknown : version;
        var cache = rng.Next(2) == 0 ? new TopicNameCache() : null;

        // 1. One contiguous buffer.
        var reader = new PacketReader { Version = readerVersion, TopicCache = cache };
        var whole = new ReadOnlySequence<byte>(bytes);
        Assert.True(reader.TryRead(ref whole, out var decoded), "the whole frame did not decode");
        Assert.True(whole.IsEmpty, $"TryRead left {whole.Length} bytes of a {bytes.Length}-byte frame");
        AssertEqual(packet, decoded);
        Assert.Equal(Hex.Format(bytes), Hex.Format(PacketWriter.ToArray(decoded, version)));
        Release(decoded);

        // 2. Every strict prefix, byte by byte: need more bytes, buffer untouched, nothing thrown.
        for (var length = 0; length < bytes.Length; length++)
        {
            var prefix = new ReadOnlySequence<byte>(bytes, 0, length);
            Assert.False(reader.TryRead(ref prefix, out var early), $"a {length}-byte prefix of {bytes.Length} decoded");
            Assert.Null(early);
            Assert.Equal(length, prefix.Length);
        }

        // 3. Random segments, followed by the start of the next packet, as a pipe delivers them.
        var chunks = Sequences.RandomChunks(rng, bytes);
        var next = PacketWriter.ToArray(PingReqPacket.Instance, version);
        var trailing = rng.Next(3);
        if (trailing > 0)
        {
            chunks.Add(next.AsSpan(0, trailing).ToArray());
        }

        var segments = Sequences.Link(chunks);
        var frameChunks = trailing > 0 ? chunks.Count - 1 : chunks.Count;
        for (var count = 0; count < frameChunks; count++)
        {
            var partial = Sequences.Take(segments, count);
            if (partial.Length == bytes.Length)
            {
                // Only empty segments are left to come.
                break;
            }

            var before = partial.Length;
            Assert.False(reader.TryRead(ref partial, out _), $"{count} of {chunks.Count} segments decoded");
            Assert.Equal(before, partial.Length);
        }

        var all = Sequences.Take(segments, segments.Count);
        Assert.True(reader.TryRead(ref all, out var fromSegments), $"the frame in {chunks.Count} segments did not decode");
        Assert.Equal(trailing, all.Length);
        AssertEqual(packet, fromSegments);
        Release(fromSegments);

        // 4. Small frames: every strict prefix of the segmented sequence too, so the fixed header straddles segments.
        if (bytes.Length <= 256)
        {
            var fragmented = Sequences.Take(segments, segments.Count);
            for (var length = 0; length < bytes.Length; length++)
            {
                var prefix = fragmented.Slice(0, length);
                Assert.False(reader.TryRead(ref prefix, out _), $"a {length}-byte segmented prefix decoded");
            }
        }
    }

    private static void AssertEqual(MqttPacket expected, MqttPacket? actual)
    {
        var differences = PacketComparer.Differences(expected, actual);
        Assert.True(differences.Count == 0, string.Join("; ", differences));
    }

    private static void Release(MqttPacket? packet)
    {
        if (packet is PublishPacket { PayloadOwner: { } owner })
        {
            owner.Release();
        }
    }

    /// <summary>Remaining lengths at the edges of the 1-, 2-, 3- and 4-byte encodings.</summary>
    [Theory]
    [InlineData(3)]
    [InlineData(127)]
    [InlineData(128)]
    [InlineData(16_383)]
    [InlineData(16_384)]
    [InlineData(2_097_151)]
    [InlineData(2_097_152)]
    public void Remaining_length_boundaries_round_trip(int remainingLength)
    {
        // PUBLISH QoS 0 in 3.1.1 to topic "t": two length bytes, one topic byte, then the payload.
        var payloadLength = remainingLength - 3;
        var packet = new PublishPacket { Topic = "t", Payload = new byte[payloadLength] };
        var bytes = PacketWriter.ToArray(packet, ProtocolVersion.V311);
        var expectedHeader = 1 + VariableByteInteger.GetLength((uint)(3 + payloadLength));
        Assert.Equal(expectedHeader + 3 + payloadLength, bytes.Length);

        var reader = new PacketReader { Version = ProtocolVersion.V311 };
        var buffer = Sequences.FromChunks([bytes.AsSpan(0, 2).ToArray(), bytes.AsSpan(2).ToArray()]);
        Assert.True(reader.TryRead(ref buffer, out var decoded));
        var publish = Assert.IsType<PublishPacket>(decoded);
        Assert.Equal(payloadLength, publish.Payload.Length);
        publish.PayloadOwner?.Release();
    }

    [Theory]
    [InlineData(ReasonCode.Success, ReasonCode.Success, 0)]
    [InlineData(ReasonCode.UnsupportedProtocolVersion, ReasonCode.UnsupportedProtocolVersion, 1)]
    [InlineData(ReasonCode.ClientIdentifierNotValid, ReasonCode.ClientIdentifierNotValid, 2)]
    [InlineData(ReasonCode.ServerUnavailable, ReasonCode.ServerUnavailable, 3)]
    [InlineData(ReasonCode.BadUserNameOrPassword, ReasonCode.BadUserNameOrPassword, 4)]
    [InlineData(ReasonCode.NotAuthorized, ReasonCode.NotAuthorized, 5)]
    [InlineData(ReasonCode.Banned, ReasonCode.NotAuthorized, 5)]
    [InlineData(ReasonCode.BadAuthenticationMethod, ReasonCode.NotAuthorized, 5)]
    [InlineData(ReasonCode.ServerBusy, ReasonCode.ServerUnavailable, 3)]
    [InlineData(ReasonCode.UnspecifiedError, ReasonCode.ServerUnavailable, 3)]
    [InlineData(ReasonCode.QuotaExceeded, ReasonCode.ServerUnavailable, 3)]
    public void ConnAck_in_311_maps_reason_codes_to_return_codes(ReasonCode sent, ReasonCode decoded, byte returnCode)
    {
        var bytes = PacketWriter.ToArray(new ConnAckPacket { ReasonCode = sent }, ProtocolVersion.V311);
        Assert.Equal($"200200{returnCode:X2}", Hex.Format(bytes));
        var result = Decode<ConnAckPacket>(bytes, ProtocolVersion.V311);
        Assert.Equal(decoded, result.ReasonCode);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(0x80)]
    [InlineData(0xFF)]
    public void ConnAck_in_311_with_a_reserved_return_code_decodes_as_server_unavailable(byte returnCode)
    {
        var result = Decode<ConnAckPacket>([0x20, 0x02, 0x00, returnCode], ProtocolVersion.V311);
        Assert.Equal(ReasonCode.ServerUnavailable, result.ReasonCode);
    }

    [Fact]
    public void SubAck_in_311_maps_failure_codes_to_0x80()
    {
        var packet = new SubAckPacket { PacketId = 7 };
        packet.ReasonCodes.AddRange([ReasonCode.GrantedQoS2, ReasonCode.NotAuthorized, ReasonCode.GrantedQoS0, ReasonCode.QuotaExceeded, ReasonCode.GrantedQoS1]);
        var bytes = PacketWriter.ToArray(packet, ProtocolVersion.V311);
        Assert.Equal("9007000702800080" + "01", Hex.Format(bytes));
        var result = Decode<SubAckPacket>(bytes, ProtocolVersion.V311);
        Assert.Equal(new[] { ReasonCode.GrantedQoS2, ReasonCode.UnspecifiedError, ReasonCode.GrantedQoS0, ReasonCode.UnspecifiedError, ReasonCode.GrantedQoS1 }, result.ReasonCodes);
    }

    [Fact]
    public void Options_and_fields_of_50_are_not_written_to_311_peers()
    {
        var subscribe = new SubscribePacket { PacketId = 1, Properties = new MqttProperties { SubscriptionIdentifiers = [5] } };
        subscribe.Subscriptions.Add(new TopicSubscription { Filter = "a", MaximumQoS = QoS.AtLeastOnce, NoLocal = true, RetainAsPublished = true, RetainHandling = RetainHandling.DoNotSend });
        Assert.Equal("82060001000161" + "01", Hex.Format(PacketWriter.ToArray(subscribe, ProtocolVersion.V311)));

        var ack = new PublishAckPacket(PacketType.PubAck, 9, ReasonCode.NoMatchingSubscribers) { Properties = new MqttProperties { ReasonString = "x" } };
        Assert.Equal("40020009", Hex.Format(PacketWriter.ToArray(ack, ProtocolVersion.V311)));

        var disconnect = new DisconnectPacket { ReasonCode = ReasonCode.ServerShuttingDown };
        Assert.Equal("E000", Hex.Format(PacketWriter.ToArray(disconnect, ProtocolVersion.V311)));

        var unsubAck = new UnsubAckPacket { PacketId = 3 };
        unsubAck.ReasonCodes.Add(ReasonCode.NoSubscriptionExisted);
        Assert.Equal("B0020003", Hex.Format(PacketWriter.ToArray(unsubAck, ProtocolVersion.V311)));
    }

    [Fact]
    public void Acknowledgements_in_50_use_the_shortest_form()
    {
        Assert.Equal("40020009", Hex.Format(PacketWriter.ToArray(new PublishAckPacket(PacketType.PubAck, 9), ProtocolVersion.V500)));
        Assert.Equal("5003000910", Hex.Format(PacketWriter.ToArray(new PublishAckPacket(PacketType.PubRec, 9, ReasonCode.NoMatchingSubscribers), ProtocolVersion.V500)));
        Assert.Equal("62020009", Hex.Format(PacketWriter.ToArray(new PublishAckPacket(PacketType.PubRel, 9), ProtocolVersion.V500)));
        Assert.Equal("E000", Hex.Format(PacketWriter.ToArray(new DisconnectPacket(), ProtocolVersion.V500)));
        Assert.Equal("E00104", Hex.Format(PacketWriter.ToArray(new DisconnectPacket { ReasonCode = ReasonCode.DisconnectWithWillMessage }, ProtocolVersion.V500)));
        Assert.Equal("F000", Hex.Format(PacketWriter.ToArray(new AuthPacket(), ProtocolVersion.V500)));
        Assert.Equal("C000", Hex.Format(PacketWriter.ToArray(PingReqPacket.Instance, ProtocolVersion.V500)));
        Assert.Equal("D000", Hex.Format(PacketWriter.ToArray(PingRespPacket.Instance, ProtocolVersion.V311)));
    }

    [Fact]
    public void Short_acknowledgements_in_50_decode_with_success()
    {
        var ack = Decode<PublishAckPacket>([0x70, 0x02, 0x12, 0x34], ProtocolVersion.V500);
        Assert.Equal(PacketType.PubComp, ack.Type);
        Assert.Equal(0x1234, ack.PacketId);
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Null(ack.Properties);

        var withCodeOnly = Decode<PublishAckPacket>([0x40, 0x03, 0x00, 0x01, 0x10], ProtocolVersion.V500);
        Assert.Equal(ReasonCode.NoMatchingSubscribers, withCodeOnly.ReasonCode);
        Assert.Null(withCodeOnly.Properties);

        var withEmptyProperties = Decode<PublishAckPacket>([0x40, 0x04, 0x00, 0x01, 0x10, 0x00], ProtocolVersion.V500);
        Assert.Null(withEmptyProperties.Properties);

        var disconnect = Decode<DisconnectPacket>([0xE0, 0x00], ProtocolVersion.V500);
        Assert.Equal(ReasonCode.NormalDisconnection, disconnect.ReasonCode);
        var auth = Decode<AuthPacket>([0xF0, 0x00], ProtocolVersion.V500);
        Assert.Equal(ReasonCode.Success, auth.ReasonCode);
    }

    [Fact]
    public void Mqtt31_connect_uses_the_MQIsdp_name()
    {
        var bytes = PacketWriter.ToArray(new ConnectPacket { ProtocolVersion = ProtocolVersion.V310, ClientId = "c" }, ProtocolVersion.V310);
        Assert.Equal("100F" + "00064D514973647003" + "02" + "0000" + "000163", Hex.Format(bytes));
        Assert.Equal(ProtocolVersion.V310, Decode<ConnectPacket>(bytes, ProtocolVersion.Unknown).ProtocolVersion);
    }

    [Fact]
    public void A_BOM_at_the_start_of_a_topic_is_kept()
    {
        // [MQTT-1.5.4-3]: 0xEF 0xBB 0xBF is U+FEFF and must not be skipped or stripped.
        var bytes = Hex.Parse("30 05 0003 EFBBBF");
        foreach (var cache in new[] { null, new TopicNameCache() })
        {
            var reader = new PacketReader { Version = ProtocolVersion.V311, TopicCache = cache };
            var buffer = new ReadOnlySequence<byte>(bytes);
            Assert.True(reader.TryRead(ref buffer, out var packet));
            Assert.Equal("\uFEFF", ((PublishPacket)packet).Topic);
        }
    }

    [Fact]
    public void Several_packets_in_one_buffer_are_read_one_by_one()
    {
        var packets = new MqttPacket[]
        {
            new PublishPacket { Topic = "a/b", QoS = QoS.AtLeastOnce, PacketId = 1, Payload = new byte[] { 1, 2, 3 } },
            PingReqPacket.Instance,
            new PublishAckPacket(PacketType.PubRel, 2),
            new DisconnectPacket(),
        };
        var bytes = packets.SelectMany(p => PacketWriter.ToArray(p, ProtocolVersion.V311)).ToArray();
        var buffer = Sequences.FromChunks(Sequences.RandomChunks(new Random(42), bytes));
        var reader = new PacketReader { Version = ProtocolVersion.V311 };
        foreach (var expected in packets)
        {
            Assert.True(reader.TryRead(ref buffer, out var actual));
            AssertEqual(expected, actual);
            Release(actual);
        }

        Assert.True(buffer.IsEmpty);
        Assert.False(reader.TryRead(ref buffer, out _));
    }

    [Fact]
    public void Decoded_payload_does_not_alias_the_input_buffer()
    {
        var bytes = PacketWriter.ToArray(new PublishPacket { Topic = "t", Payload = new byte[] { 1, 2, 3 } }, ProtocolVersion.V311);
        var reader = new PacketReader { Version = ProtocolVersion.V311 };
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.True(reader.TryRead(ref buffer, out var packet));
        Array.Clear(bytes);
        var publish = (PublishPacket)packet;
        Assert.Equal(new byte[] { 1, 2, 3 }, publish.Payload.ToArray());
        Assert.Equal(1, publish.PayloadOwner!.RefCount);
        publish.PayloadOwner.Release();
    }

    /// <summary>
    /// The comparer is the oracle of the round-trip tests, so it is tested too: changing any single property of a
    /// fully populated <see cref="MqttProperties"/> must be reported, under that property's name.
    /// </summary>
    [Fact]
    public void Comparer_sees_a_change_in_every_property()
    {
        var full = FullProperties();
        foreach (var property in typeof(MqttProperties).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            Assert.NotNull(property.GetValue(full));
            var changed = full.Clone();
            property.SetValue(changed, Changed(property.GetValue(full)));
            var differences = PacketComparer.Differences(new AuthPacket { Properties = full }, new AuthPacket { Properties = changed });
            var difference = Assert.Single(differences);
            Assert.StartsWith($"packet.Properties.{property.Name}", difference, StringComparison.Ordinal);

            property.SetValue(changed, null);
            Assert.Single(PacketComparer.Differences(new AuthPacket { Properties = full }, new AuthPacket { Properties = changed }));
        }

        Assert.Empty(PacketComparer.Differences(new AuthPacket { Properties = full }, new AuthPacket { Properties = full.Clone() }));
    }

    [Fact]
    public void Comparer_sees_nested_and_null_versus_empty_differences()
    {
        static ConnectPacket Make() => new()
        {
            ClientId = "c",
            Password = Array.Empty<byte>(),
            Will = new WillMessage { Topic = "w", Payload = new byte[] { 1 } },
        };

        Assert.Empty(PacketComparer.Differences(Make(), Make()));
        var other = Make();
        other.Password = null;
        Assert.Single(PacketComparer.Differences(Make(), other));
        other = Make();
        other.Will!.Payload = new byte[] { 2 };
        Assert.Equal("packet.Will.Payload", PacketComparer.Differences(Make(), other).Single().Split(':')[0]);

        var a = new SubscribePacket { PacketId = 1 };
        a.Subscriptions.Add(new TopicSubscription { Filter = "x", RetainHandling = RetainHandling.DoNotSend });
        var b = new SubscribePacket { PacketId = 1 };
        b.Subscriptions.Add(new TopicSubscription { Filter = "x" });
        Assert.Equal("packet.Subscriptions[0].RetainHandling", PacketComparer.Differences(a, b).Single().Split(':')[0]);
        Assert.Single(PacketComparer.Differences(new PublishAckPacket(PacketType.PubAck, 1), new PublishAckPacket(PacketType.PubRec, 1)));
    }

    private static MqttProperties FullProperties() => new()
    {
        PayloadFormatIndicator = 1,
        MessageExpiryInterval = 60,
        ContentType = "text/plain",
        ResponseTopic = "r",
        CorrelationData = new byte[] { 1, 2 },
        SubscriptionIdentifiers = [1, 300],
        SessionExpiryInterval = 10,
        AssignedClientIdentifier = "id",
        ServerKeepAlive = 30,
        AuthenticationMethod = "m",
        AuthenticationData = new byte[] { 3 },
        RequestProblemInformation = 0,
        WillDelayInterval = 5,
        RequestResponseInformation = 1,
        ResponseInformation = "ri",
        ServerReference = "sr",
        ReasonString = "rs",
        ReceiveMaximum = 10,
        TopicAliasMaximum = 4,
        TopicAlias = 2,
        MaximumQoS = 1,
        RetainAvailable = 0,
        UserProperties = [new("k", "v")],
        MaximumPacketSize = 1000,
        WildcardSubscriptionAvailable = 1,
        SubscriptionIdentifierAvailable = 0,
        SharedSubscriptionAvailable = 1,
    };

    private static object Changed(object? value) => value switch
    {
        byte b => (byte)(b ^ 1),
        ushort u => (ushort)(u + 1),
        uint u => u + 1,
        string s => s + "x",
        ReadOnlyMemory<byte> m => new ReadOnlyMemory<byte>([.. m.ToArray(), 9]),
        List<uint> ids => new List<uint>(ids) { 7 },
        List<UserProperty> users => new List<UserProperty>(users) { new("k", "v2") },
        _ => throw new InvalidOperationException($"No mutation for {value?.GetType()}."),
    };

    private static T Decode<T>(byte[] bytes, ProtocolVersion version)
        where T : MqttPacket
    {
        var reader = new PacketReader { Version = version };
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.True(reader.TryRead(ref buffer, out var packet));
        Assert.True(buffer.IsEmpty);
        return Assert.IsType<T>(packet);
    }
}
