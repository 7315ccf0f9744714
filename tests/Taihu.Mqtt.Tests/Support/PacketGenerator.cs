using System.Text;
using Taihu.Mqtt.Packets;

namespace Taihu.Mqtt.Tests.Support;

/// <summary>
/// Builds random valid packets of every type for one protocol version, from a seeded <see cref="Random"/> so that a
/// failure names the seed that reproduces it. Only values that survive an encode/decode cycle unchanged are
/// produced: no property block that encodes as empty (it decodes as null), no 5.0 fields in 3.1.1 packets, and the
/// 3.1.1 CONNACK and SUBACK codes restricted to those 3.1.1 can express.
/// </summary>
internal sealed class PacketGenerator
{
    // Pieces of text: ASCII, two-, three- and four-byte UTF-8 (surrogate pairs in .NET), a BOM that must survive
    // unstripped, a noncharacter and control characters (discouraged by the spec, but legal).
    private static readonly string[] s_textPieces =
    [
        "a", "b", "z", "K", "0", "7", "-", "_", ".", " ", "$", "é", "ß", "Ω", "ж", "中", "文", "€", "😀", "𝄞", "\uFEFF",
        "\uFFFF", "\u0001", "\u007F", "sensor", "temp",
    ];

    private static readonly string[] s_filterOnlyPieces = ["+", "#", "/"];

    private static readonly ReasonCode[] s_connAckCodes5 =
    [
        ReasonCode.Success, ReasonCode.UnspecifiedError, ReasonCode.MalformedPacket, ReasonCode.ProtocolError,
        ReasonCode.ImplementationSpecificError, ReasonCode.UnsupportedProtocolVersion, ReasonCode.ClientIdentifierNotValid,
        ReasonCode.BadUserNameOrPassword, ReasonCode.NotAuthorized, ReasonCode.ServerUnavailable, ReasonCode.ServerBusy,
        ReasonCode.Banned, ReasonCode.BadAuthenticationMethod, ReasonCode.TopicNameInvalid, ReasonCode.PacketTooLarge,
        ReasonCode.QuotaExceeded, ReasonCode.PayloadFormatInvalid, ReasonCode.RetainNotSupported, ReasonCode.QoSNotSupported,
        ReasonCode.UseAnotherServer, ReasonCode.ServerMoved, ReasonCode.ConnectionRateExceeded,
    ];

    // The 5.0 codes that 3.1.1 return codes map back to exactly.
    private static readonly ReasonCode[] s_connAckCodes311 =
    [
        ReasonCode.Success, ReasonCode.UnsupportedProtocolVersion, ReasonCode.ClientIdentifierNotValid,
        ReasonCode.ServerUnavailable, ReasonCode.BadUserNameOrPassword, ReasonCode.NotAuthorized,
    ];

    private static readonly ReasonCode[] s_publishAckCodes =
    [
        ReasonCode.Success, ReasonCode.NoMatchingSubscribers, ReasonCode.UnspecifiedError, ReasonCode.ImplementationSpecificError,
        ReasonCode.NotAuthorized, ReasonCode.TopicNameInvalid, ReasonCode.PacketIdentifierInUse,
        ReasonCode.PacketIdentifierNotFound, ReasonCode.QuotaExceeded, ReasonCode.PayloadFormatInvalid,
    ];

    private static readonly ReasonCode[] s_subAckCodes5 =
    [
        ReasonCode.GrantedQoS0, ReasonCode.GrantedQoS1, ReasonCode.GrantedQoS2, ReasonCode.UnspecifiedError,
        ReasonCode.ImplementationSpecificError, ReasonCode.NotAuthorized, ReasonCode.TopicFilterInvalid,
        ReasonCode.PacketIdentifierInUse, ReasonCode.QuotaExceeded, ReasonCode.SharedSubscriptionsNotSupported,
        ReasonCode.SubscriptionIdentifiersNotSupported, ReasonCode.WildcardSubscriptionsNotSupported,
    ];

    private static readonly ReasonCode[] s_subAckCodes311 =
        [ReasonCode.GrantedQoS0, ReasonCode.GrantedQoS1, ReasonCode.GrantedQoS2, ReasonCode.UnspecifiedError];

    private static readonly ReasonCode[] s_unsubAckCodes =
    [
        ReasonCode.Success, ReasonCode.NoSubscriptionExisted, ReasonCode.UnspecifiedError, ReasonCode.ImplementationSpecificError,
        ReasonCode.NotAuthorized, ReasonCode.TopicFilterInvalid, ReasonCode.PacketIdentifierInUse,
    ];

    private static readonly ReasonCode[] s_disconnectCodes =
    [
        ReasonCode.NormalDisconnection, ReasonCode.DisconnectWithWillMessage, ReasonCode.UnspecifiedError,
        ReasonCode.MalformedPacket, ReasonCode.ProtocolError, ReasonCode.ImplementationSpecificError, ReasonCode.NotAuthorized,
        ReasonCode.ServerBusy, ReasonCode.ServerShuttingDown, ReasonCode.KeepAliveTimeout, ReasonCode.SessionTakenOver,
        ReasonCode.TopicFilterInvalid, ReasonCode.TopicNameInvalid, ReasonCode.ReceiveMaximumExceeded,
        ReasonCode.TopicAliasInvalid, ReasonCode.PacketTooLarge, ReasonCode.MessageRateTooHigh, ReasonCode.QuotaExceeded,
        ReasonCode.AdministrativeAction, ReasonCode.PayloadFormatInvalid, ReasonCode.RetainNotSupported,
        ReasonCode.QoSNotSupported, ReasonCode.UseAnotherServer, ReasonCode.ServerMoved,
        ReasonCode.SharedSubscriptionsNotSupported, ReasonCode.ConnectionRateExceeded, ReasonCode.MaximumConnectTime,
        ReasonCode.SubscriptionIdentifiersNotSupported, ReasonCode.WildcardSubscriptionsNotSupported,
    ];

    private static readonly ReasonCode[] s_authCodes = [ReasonCode.Success, ReasonCode.ContinueAuthentication, ReasonCode.ReAuthenticate];

    private readonly Random _rng;
    private readonly ProtocolVersion _version;

    // One iteration in eight sets every optional field, so that full property blocks are not left to chance.
    private readonly bool _full;

    public PacketGenerator(Random rng, ProtocolVersion version)
    {
        _rng = rng;
        _version = version;
        _full = rng.Next(8) == 0;
    }

    private bool V5 => _version == ProtocolVersion.V500;

    public MqttPacket Create(PacketType type) => type switch
    {
        PacketType.Connect => Connect(),
        PacketType.ConnAck => ConnAck(),
        PacketType.Publish => Publish(),
        PacketType.PubAck or PacketType.PubRec or PacketType.PubRel or PacketType.PubComp => PublishAck(type),
        PacketType.Subscribe => Subscribe(),
        PacketType.SubAck => SubAck(),
        PacketType.Unsubscribe => Unsubscribe(),
        PacketType.UnsubAck => UnsubAck(),
        PacketType.PingReq => PingReqPacket.Instance,
        PacketType.PingResp => PingRespPacket.Instance,
        PacketType.Disconnect => Disconnect(),
        PacketType.Auth => Auth(),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public ConnectPacket Connect()
    {
        var packet = new ConnectPacket
        {
            ProtocolVersion = _version,
            CleanStart = Bool(),
            KeepAlive = UInt16(),
            ClientId = Text(0, 8),
        };
        if (Maybe())
        {
            packet.UserName = Text(0, 6);
        }

        // Before 5.0 a password needs a user name.
        if (Maybe() && (V5 || packet.UserName is not null))
        {
            packet.Password = Bytes(0, 40);
        }

        if (Maybe())
        {
            packet.Will = new WillMessage
            {
                Topic = TopicName(),
                Payload = Bytes(0, 300),
                QoS = (QoS)_rng.Next(3),
                Retain = Bool(),
                Properties = V5 ? WillProperties() : null,
            };
        }

        if (V5)
        {
            var p = new MqttProperties();
            if (Maybe()) p.SessionExpiryInterval = UInt32();
            if (Maybe())
            {
                p.AuthenticationMethod = Text(1, 5);
                if (Maybe()) p.AuthenticationData = Bytes(0, 50);
            }

            if (Maybe()) p.RequestProblemInformation = (byte)_rng.Next(2);
            if (Maybe()) p.RequestResponseInformation = (byte)_rng.Next(2);
            if (Maybe()) p.ReceiveMaximum = (ushort)_rng.Next(1, 65536);
            if (Maybe()) p.TopicAliasMaximum = UInt16();
            if (Maybe()) p.MaximumPacketSize = (uint)_rng.NextInt64(1, 1L << 32);
            if (Maybe()) p.UserProperties = UserProperties();
            packet.Properties = OrNull(p);
        }

        return packet;
    }

    public ConnAckPacket ConnAck()
    {
        var packet = new ConnAckPacket
        {
            SessionPresent = Bool(),
            ReasonCode = Pick(V5 ? s_connAckCodes5 : s_connAckCodes311),
        };
        if (V5)
        {
            var p = new MqttProperties();
            if (Maybe()) p.SessionExpiryInterval = UInt32();
            if (Maybe()) p.ReceiveMaximum = (ushort)_rng.Next(1, 65536);
            if (Maybe()) p.MaximumQoS = (byte)_rng.Next(2);
            if (Maybe()) p.RetainAvailable = (byte)_rng.Next(2);
            if (Maybe()) p.MaximumPacketSize = (uint)_rng.NextInt64(1, 1L << 32);
            if (Maybe()) p.AssignedClientIdentifier = Text(0, 10);
            if (Maybe()) p.TopicAliasMaximum = UInt16();
            if (Maybe()) p.ReasonString = Text(0, 10);
            if (Maybe()) p.UserProperties = UserProperties();
            if (Maybe()) p.WildcardSubscriptionAvailable = (byte)_rng.Next(2);
            if (Maybe()) p.SubscriptionIdentifierAvailable = (byte)_rng.Next(2);
            if (Maybe()) p.SharedSubscriptionAvailable = (byte)_rng.Next(2);
            if (Maybe()) p.ServerKeepAlive = UInt16();
            if (Maybe()) p.ResponseInformation = Text(0, 6);
            if (Maybe()) p.ServerReference = Text(0, 6);
            if (Maybe()) p.AuthenticationMethod = Text(1, 5);
            if (Maybe()) p.AuthenticationData = Bytes(0, 50);
            packet.Properties = OrNull(p);
        }

        return packet;
    }

    public PublishPacket Publish()
    {
        var qos = (QoS)_rng.Next(3);
        var packet = new PublishPacket
        {
            QoS = qos,
            Retain = Bool(),
            Dup = qos != QoS.AtMostOnce && Bool(),
            PacketId = qos == QoS.AtMostOnce ? (ushort)0 : PacketId(),
            Topic = TopicName(),
            // Mostly small, one in four anywhere up to 5,000 bytes (two-byte remaining length, pooled copy path).
            Payload = _rng.Next(4) == 0 ? Bytes(0, 5000) : Bytes(0, 200),
        };
        if (V5)
        {
            var p = new MqttProperties();
            if (Maybe()) p.PayloadFormatIndicator = (byte)_rng.Next(2);
            if (Maybe()) p.MessageExpiryInterval = UInt32();
            if (Maybe()) p.ContentType = Text(0, 8);
            if (Maybe()) p.ResponseTopic = TopicName();
            if (Maybe()) p.CorrelationData = Bytes(0, 64);
            if (Maybe())
            {
                p.SubscriptionIdentifiers = [];
                var count = _rng.Next(1, 5);
                for (var i = 0; i < count; i++)
                {
                    p.SubscriptionIdentifiers.Add(SubscriptionIdentifier());
                }
            }

            if (Maybe())
            {
                p.TopicAlias = (ushort)_rng.Next(1, 65536);
                // With an alias the topic may be left out (section 3.3.2.3.4).
                if (_rng.Next(3) == 0)
                {
                    packet.Topic = "";
                }
            }

            if (Maybe()) p.UserProperties = UserProperties();
            packet.Properties = OrNull(p);
        }

        return packet;
    }

    public PublishAckPacket PublishAck(PacketType type)
    {
        var packet = new PublishAckPacket(type, PacketId());
        if (V5)
        {
            packet.ReasonCode = Pick(s_publishAckCodes);
            packet.Properties = ReasonProperties();
        }

        return packet;
    }

    public SubscribePacket Subscribe()
    {
        var packet = new SubscribePacket { PacketId = PacketId() };
        var count = _rng.Next(1, 6);
        for (var i = 0; i < count; i++)
        {
            var subscription = new TopicSubscription { Filter = TopicFilter(), MaximumQoS = (QoS)_rng.Next(3) };
            if (V5)
            {
                subscription.NoLocal = Bool();
                subscription.RetainAsPublished = Bool();
                subscription.RetainHandling = (RetainHandling)_rng.Next(3);
            }

            packet.Subscriptions.Add(subscription);
        }

        if (V5)
        {
            var p = new MqttProperties();
            if (Maybe()) p.SubscriptionIdentifiers = [SubscriptionIdentifier()];
            if (Maybe()) p.UserProperties = UserProperties();
            packet.Properties = OrNull(p);
        }

        return packet;
    }

    public SubAckPacket SubAck()
    {
        var packet = new SubAckPacket { PacketId = PacketId() };
        var count = _rng.Next(1, 6);
        for (var i = 0; i < count; i++)
        {
            packet.ReasonCodes.Add(Pick(V5 ? s_subAckCodes5 : s_subAckCodes311));
        }

        if (V5)
        {
            packet.Properties = ReasonProperties();
        }

        return packet;
    }

    public UnsubscribePacket Unsubscribe()
    {
        var packet = new UnsubscribePacket { PacketId = PacketId() };
        var count = _rng.Next(1, 6);
        for (var i = 0; i < count; i++)
        {
            packet.Filters.Add(TopicFilter());
        }

        if (V5)
        {
            packet.Properties = Maybe() ? new MqttProperties { UserProperties = UserProperties() } : null;
        }

        return packet;
    }

    public UnsubAckPacket UnsubAck()
    {
        var packet = new UnsubAckPacket { PacketId = PacketId() };
        if (V5)
        {
            var count = _rng.Next(0, 6);
            for (var i = 0; i < count; i++)
            {
                packet.ReasonCodes.Add(Pick(s_unsubAckCodes));
            }

            packet.Properties = ReasonProperties();
        }

        return packet;
    }

    public DisconnectPacket Disconnect()
    {
        var packet = new DisconnectPacket();
        if (V5)
        {
            packet.ReasonCode = Pick(s_disconnectCodes);
            var p = new MqttProperties();
            if (Maybe()) p.SessionExpiryInterval = UInt32();
            if (Maybe()) p.ReasonString = Text(0, 10);
            if (Maybe()) p.ServerReference = Text(0, 6);
            if (Maybe()) p.UserProperties = UserProperties();
            packet.Properties = OrNull(p);
        }

        return packet;
    }

    public AuthPacket Auth()
    {
        var p = new MqttProperties();
        if (Maybe()) p.AuthenticationMethod = Text(1, 5);
        if (Maybe()) p.AuthenticationData = Bytes(0, 80);
        if (Maybe()) p.ReasonString = Text(0, 10);
        if (Maybe()) p.UserProperties = UserProperties();
        return new AuthPacket { ReasonCode = Pick(s_authCodes), Properties = OrNull(p) };
    }

    /// <summary>A topic name: one to five levels, possibly empty ones, never a wildcard or U+0000.</summary>
    public string TopicName()
    {
        var levels = _rng.Next(1, 6);
        var builder = new StringBuilder();
        for (var i = 0; i < levels; i++)
        {
            if (i > 0)
            {
                builder.Append('/');
            }

            builder.Append(Text(0, 4));
        }

        return builder.Length == 0 ? "t" : builder.ToString();
    }

    /// <summary>A valid topic filter, sometimes with wildcards, sometimes shared.</summary>
    public string TopicFilter()
    {
        var levels = _rng.Next(1, 5);
        var builder = new StringBuilder();
        if (V5 && _rng.Next(6) == 0)
        {
            builder.Append("$share/").Append(Text(1, 3)).Append('/');
        }

        for (var i = 0; i < levels; i++)
        {
            if (i > 0)
            {
                builder.Append('/');
            }

            var roll = _rng.Next(8);
            if (roll == 0)
            {
                builder.Append('+');
            }
            else if (roll == 1 && i == levels - 1)
            {
                builder.Append('#');
            }
            else
            {
                builder.Append(Text(0, 4));
            }
        }

        // A filter is never empty, and a shared one needs a filter after the group.
        var filter = builder.ToString();
        return filter.Length == 0 || filter.EndsWith('/') ? filter + "f" : filter;
    }

    /// <summary>Text of <paramref name="min"/> to <paramref name="max"/> pieces; may use wildcard characters when asked.</summary>
    public string Text(int min, int max, bool allowWildcards = false)
    {
        var count = _rng.Next(min, max + 1);
        var builder = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            builder.Append(allowWildcards && _rng.Next(5) == 0 ? Pick(s_filterOnlyPieces) : Pick(s_textPieces));
        }

        return builder.ToString();
    }

    private MqttProperties? WillProperties()
    {
        var p = new MqttProperties();
        if (Maybe()) p.WillDelayInterval = UInt32();
        if (Maybe()) p.PayloadFormatIndicator = (byte)_rng.Next(2);
        if (Maybe()) p.MessageExpiryInterval = UInt32();
        if (Maybe()) p.ContentType = Text(0, 8);
        if (Maybe()) p.ResponseTopic = TopicName();
        if (Maybe()) p.CorrelationData = Bytes(0, 64);
        if (Maybe()) p.UserProperties = UserProperties();
        return OrNull(p);
    }

    private MqttProperties? ReasonProperties()
    {
        var p = new MqttProperties();
        if (Maybe()) p.ReasonString = Text(0, 10);
        if (Maybe()) p.UserProperties = UserProperties();
        return OrNull(p);
    }

    private List<UserProperty> UserProperties()
    {
        // Names and values are any strings, wildcards included; the same name may repeat (section 3.3.2.3.7).
        var count = _rng.Next(1, 5);
        var list = new List<UserProperty>(count);
        for (var i = 0; i < count; i++)
        {
            var name = i > 0 && _rng.Next(4) == 0 ? list[0].Name : Text(0, 4, allowWildcards: true);
            list.Add(new UserProperty(name, Text(0, 6, allowWildcards: true)));
        }

        return list;
    }

    /// <summary>A Subscription Identifier whose encoding is one to four bytes long, equally often.</summary>
    private uint SubscriptionIdentifier() => _rng.Next(4) switch
    {
        0 => (uint)_rng.Next(1, 128),
        1 => (uint)_rng.Next(128, 16_384),
        2 => (uint)_rng.Next(16_384, 2_097_152),
        _ => (uint)_rng.Next(2_097_152, VariableByteInteger.MaxValue + 1),
    };

    // A block that encodes to nothing decodes as null.
    private static MqttProperties? OrNull(MqttProperties p) => PropertyCodec.GetLength(p) == 0 ? null : p;

    private bool Maybe() => _full || _rng.Next(2) == 0;

    private bool Bool() => _rng.Next(2) == 0;

    private ushort UInt16() => (ushort)_rng.Next(0, 65536);

    private ushort PacketId() => (ushort)_rng.Next(1, 65536);

    private uint UInt32() => _rng.Next(4) == 0 ? uint.MaxValue : (uint)_rng.NextInt64(0, 1L << 32);

    private ReadOnlyMemory<byte> Bytes(int min, int max)
    {
        var bytes = new byte[_rng.Next(min, max + 1)];
        _rng.NextBytes(bytes);
        return bytes;
    }

    private T Pick<T>(T[] items) => items[_rng.Next(items.Length)];
}
