namespace Taihu.Broker;

/// <summary>
/// Limits and behaviour of the MQTT broker. Every default says why it is what it is; the host binds these from
/// configuration (section "Broker") and validates them at start-up; this assembly never reads configuration.
/// </summary>
public sealed class BrokerOptions
{
    /// <summary>
    /// Largest packet accepted from a client, fixed header included; advertised in CONNACK (5.0). 1 MiB: device
    /// payloads are small, and a cap keeps one client from making the broker buffer hundreds of megabytes.
    /// (Mosquitto has no limit by default; EMQX uses 1 MB.)
    /// </summary>
    public int MaximumPacketSize { get; set; } = 1024 * 1024;

    /// <summary>
    /// Largest first packet, fixed header included: it must be CONNECT, and both are judged from its fixed header
    /// before its body is buffered (a larger or other first packet closes the connection at once, with nothing
    /// sent, as Mosquitto closes on a first packet that is not CONNECT). Before CONNECT nobody is authenticated,
    /// so without this one socket could make the broker hold a whole <see cref="MaximumPacketSize"/> frame, times
    /// <see cref="MaximumConnections"/>. 16 KiB holds every field a real CONNECT carries with room to spare: a
    /// client id (23 bytes in 3.1.1, rarely over 256), a user name, a password or token (a JWT is 1 to 4 KB), a
    /// will topic (at most <see cref="MaximumTopicLength"/>, 4 KiB) and a will payload (a status of a few bytes),
    /// and properties; 50,000 half-open connections then hold at most 800 MB instead of 50 GB. The smaller of
    /// this and <see cref="MaximumPacketSize"/> applies. (Mosquitto and EMQX check a CONNECT only against their
    /// general packet size limit.)
    /// </summary>
    public int MaximumConnectPacketSize { get; set; } = 16 * 1024;

    /// <summary>
    /// QoS 1 and 2 messages sent to one client and not yet acknowledged, and the Receive Maximum advertised to
    /// 5.0 clients for their own publishes. 100 keeps a fast consumer busy across loopback round trips while
    /// bounding memory per slow consumer (Mosquitto: 20, EMQX: 32).
    /// </summary>
    public int MaximumInflightMessages { get; set; } = 100;

    /// <summary>
    /// QoS 1 and 2 messages queued for one session beyond the inflight window, connected or not. 1000, as
    /// Mosquitto's max_queued_messages: enough to ride out a short disconnect without letting an abandoned
    /// persistent session grow without end. When full, new messages for it are dropped and counted.
    /// </summary>
    public int MaximumQueuedMessages { get; set; } = 1000;

    /// <summary>
    /// Bytes (topic and payload) queued for one session, as Mosquitto's max_queued_bytes; 0 is no byte limit.
    /// 64 MiB: a thousand messages of a typical device size fit many times over, while a thousand of the largest
    /// packets (1 GiB) do not. A message that would pass it is treated as for a full
    /// <see cref="MaximumQueuedMessages"/>.
    /// </summary>
    public long MaximumQueuedBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// How long a publisher is held back when a connected subscriber's queue is full, before messages for that
    /// subscriber are dropped. While held, its QoS 1/2 acknowledgement waits and nothing more is read from it,
    /// so a subscriber that falls behind slows its publishers down instead of losing their messages (the
    /// message that found the queue full is queued past the limit: one per held publisher, up to twice
    /// <see cref="MaximumQueuedBytes"/> in bytes). A subscriber that
    /// frees no room in this time is taken as not reading: publishers are no longer held for it, and what
    /// overflows its queue is dropped and counted, until it has room again. 5 s: shorter than the 10 s most
    /// clients wait for an acknowledgement. Zero turns holding off and drops at once, as Mosquitto does.
    /// Offline sessions never hold publishers back.
    /// </summary>
    public TimeSpan FullQueuePublisherWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Packets waiting to be written to one connection's socket. A consumer that cannot keep up loses QoS 0
    /// messages beyond this (counted as dropped) instead of growing the broker's memory; QoS 1/2 are held by the
    /// inflight window and the session queue instead.
    /// </summary>
    public int MaximumOutboundQueue { get; set; } = 10_000;

    /// <summary>Simultaneous client connections. 50,000: above what this host's open-file limit allows, so the OS limit binds first unless lowered.</summary>
    public int MaximumConnections { get; set; } = 50_000;

    /// <summary>Bytes in a topic name or filter. 65,535 is the protocol's own limit; 4,096 is plenty for any real hierarchy and bounds trie keys.</summary>
    public int MaximumTopicLength { get; set; } = 4096;

    /// <summary>Levels in a topic name or filter. 128, as EMQX: deep enough for any naming scheme, shallow enough to bound matching.</summary>
    public int MaximumTopicLevels { get; set; } = 128;

    /// <summary>Retained messages per namespace. 100,000: one per device topic for a large deployment; further new topics are refused, replacements still work.</summary>
    public int MaximumRetainedMessages { get; set; } = 100_000;

    /// <summary>
    /// Largest retained message, in bytes: topic (UTF-8), payload and properties. 64 KiB: a retained message is
    /// the last known state of a topic (a status, a configuration, a firmware version), which is small, while
    /// every one is held in memory and on disk until replaced and sent to every later subscriber. Without it one
    /// device could retain MaximumRetainedMessages of MaximumPacketSize each (100 GB). A larger retained publish is
    /// refused with 0x97 (5.0, QoS 1 and 2), or delivered live but not retained (3.1.1 and QoS 0, as EMQX's
    /// retainer does with its max_payload_size). Mosquitto has no such limit.
    /// </summary>
    public int MaximumRetainedMessageSize { get; set; } = 64 * 1024;

    /// <summary>
    /// Retained bytes per namespace (tenant), counted as for <see cref="MaximumRetainedMessageSize"/>. 16 MiB: room
    /// for a 1 KiB status on each of 16,000 topics, or 256 messages of the largest size, while a thousand tenants
    /// that all fill theirs stay within 16 GB. A retained publish that would go over it is handled as one over
    /// <see cref="MaximumRetainedMessageSize"/>; replacing a message with one no larger, and deleting, always work.
    /// </summary>
    public long MaximumRetainedBytesPerNamespace { get; set; } = 16L * 1024 * 1024;

    /// <summary>
    /// PUBLISH packets per second one connection may send, or 0 for no limit (the default: the broker cannot know
    /// what rate a deployment's devices need, and a fixed default would cut off legitimate bursts). A token bucket
    /// per connection, on the broker's clock, allowing a burst of one second's worth. Going over it ends the
    /// connection: a 5.0 client gets DISCONNECT 0x96 (Message rate too high) with a reason string naming the limit;
    /// a 3.1.1 client, which has no such code, is disconnected; the will is published. EMQX's limiter slows the
    /// socket down instead and Mosquitto has no such limit; refusing with 0x96 tells the client why. An
    /// authenticator overrides it per client (<see cref="Extensibility.ClientIdentity.MaximumPublishRate"/>).
    /// </summary>
    public int MaximumPublishRatePerConnection { get; set; }

    /// <summary>
    /// PUBLISH payload bytes per second one connection may send, or 0 for no limit (the default, as for
    /// <see cref="MaximumPublishRatePerConnection"/>, which it works like). Payload bytes, not packet bytes: what the
    /// application sends, independent of topic length and protocol version. A single payload larger than the
    /// limit passes when the bucket is full and leaves it in debt. Overridden per client by
    /// <see cref="Extensibility.ClientIdentity.MaximumPublishBytesRate"/>.
    /// </summary>
    public long MaximumPublishBytesRatePerConnection { get; set; }

    /// <summary>Topic aliases a 5.0 client may use towards the broker (Topic Alias Maximum in CONNACK). 10, as Mosquitto.</summary>
    public ushort TopicAliasMaximum { get; set; } = 10;

    /// <summary>
    /// Largest keep alive the broker accepts, in seconds. A client asking for more (or for 0, meaning none) is
    /// told this value as Server Keep Alive (5.0); a 3.1.1 client, which cannot be told, is refused with return
    /// code 2 (as Mosquitto does). 65,535 means no limit, as the protocol allows.
    /// </summary>
    public ushort MaximumKeepAlive { get; set; } = ushort.MaxValue;

    /// <summary>
    /// Session expiry for 3.1.1 clients that connect with Clean Session 0, which have no expiry of their own.
    /// Never (uint.MaxValue), as Mosquitto's default, so a persistent client can count on its session.
    /// </summary>
    public uint PersistentSessionExpiryInterval { get; set; } = uint.MaxValue;

    /// <summary>Largest Session Expiry Interval a 5.0 client may ask for; larger requests are cut to it and told in CONNACK. Never by default.</summary>
    public uint MaximumSessionExpiryInterval { get; set; } = uint.MaxValue;

    /// <summary>Seconds a connection may stay open before its CONNECT arrives. 10: a real client sends it at once; a silent socket is closed.</summary>
    public int ConnectTimeoutSeconds { get; set; } = 10;

    /// <summary>Seconds between $SYS statistics updates. 10, as Mosquitto's sys_interval; 0 turns $SYS off.</summary>
    public int SysInterval { get; set; } = 10;

    /// <summary>How often keep-alive deadlines, will delays and session and message expiry are checked. One second matches the protocol's resolution.</summary>
    public TimeSpan HousekeepingInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// With a state store registered: how often the retained messages that changed are written to it. One second:
    /// a crash loses at most the last second of retained changes (as Mosquitto, which loses everything since its
    /// last autosave), while a device that rewrites its retained status many times a second costs one write per
    /// topic per interval, and the publish itself never waits for the store. A graceful stop always writes. Looked at
    /// on the housekeeping tick, so it is rounded up to a multiple of <see cref="HousekeepingInterval"/>, and nothing
    /// wakes for it while nothing changed.
    /// </summary>
    public TimeSpan StateFlushInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// With a state store registered: how often the persistent sessions that changed (subscriptions, queued and
    /// unacknowledged messages) are written to it, as Mosquitto's autosave_interval. One minute: Mosquitto's 1800 s
    /// rewrites its whole database each time, while only sessions that changed are written here, so a shorter
    /// interval is affordable and bounds what a crash loses. A subscription change is written within
    /// <see cref="StateFlushInterval"/>, and a graceful stop always writes.
    /// </summary>
    public TimeSpan SessionSnapshotInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Whether $share/{group}/{filter} subscriptions are offered.</summary>
    public bool SharedSubscriptionsEnabled { get; set; } = true;

    /// <summary>Whether clients may publish retained messages (Retain Available in CONNACK).</summary>
    public bool RetainAvailable { get; set; } = true;

    /// <summary>Validates the options; returns an error per broken rule.</summary>
    public IEnumerable<string> Validate()
    {
        if (MaximumPacketSize < 64 || MaximumPacketSize > 268_435_460)
        {
            yield return "Broker:MaximumPacketSize must be between 64 and 268435460 bytes.";
        }

        if (MaximumConnectPacketSize < 64 || MaximumConnectPacketSize > 268_435_460)
        {
            yield return "Broker:MaximumConnectPacketSize must be between 64 and 268435460 bytes.";
        }

        if (MaximumPublishRatePerConnection < 0)
        {
            yield return "Broker:MaximumPublishRatePerConnection must not be negative (0 is no limit).";
        }

        if (MaximumPublishBytesRatePerConnection < 0)
        {
            yield return "Broker:MaximumPublishBytesRatePerConnection must not be negative (0 is no limit).";
        }

        if (MaximumInflightMessages is < 1 or > 65_535)
        {
            yield return "Broker:MaximumInflightMessages must be between 1 and 65535.";
        }

        if (MaximumQueuedMessages < 0)
        {
            yield return "Broker:MaximumQueuedMessages must not be negative.";
        }

        if (MaximumQueuedBytes < 0)
        {
            yield return "Broker:MaximumQueuedBytes must not be negative (0 is no byte limit).";
        }

        if (FullQueuePublisherWait < TimeSpan.Zero || FullQueuePublisherWait > TimeSpan.FromMinutes(10))
        {
            yield return "Broker:FullQueuePublisherWait must be between 00:00:00 (off) and 00:10:00.";
        }

        if (MaximumOutboundQueue < 16)
        {
            yield return "Broker:MaximumOutboundQueue must be at least 16.";
        }

        if (MaximumConnections < 1)
        {
            yield return "Broker:MaximumConnections must be at least 1.";
        }

        if (MaximumTopicLength is < 1 or > 65_535)
        {
            yield return "Broker:MaximumTopicLength must be between 1 and 65535.";
        }

        if (MaximumTopicLevels < 1)
        {
            yield return "Broker:MaximumTopicLevels must be at least 1.";
        }

        if (MaximumRetainedMessages < 0)
        {
            yield return "Broker:MaximumRetainedMessages must not be negative.";
        }

        if (MaximumRetainedMessageSize < 1)
        {
            yield return "Broker:MaximumRetainedMessageSize must be at least 1 byte.";
        }

        if (MaximumRetainedBytesPerNamespace < MaximumRetainedMessageSize)
        {
            yield return "Broker:MaximumRetainedBytesPerNamespace must be at least Broker:MaximumRetainedMessageSize.";
        }

        if (ConnectTimeoutSeconds < 1)
        {
            yield return "Broker:ConnectTimeoutSeconds must be at least 1.";
        }

        if (HousekeepingInterval <= TimeSpan.Zero)
        {
            yield return "Broker:HousekeepingInterval must be positive.";
        }

        if (StateFlushInterval <= TimeSpan.Zero)
        {
            yield return "Broker:StateFlushInterval must be positive.";
        }

        if (SessionSnapshotInterval <= TimeSpan.Zero)
        {
            yield return "Broker:SessionSnapshotInterval must be positive.";
        }
    }
}
