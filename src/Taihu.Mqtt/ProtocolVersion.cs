namespace Taihu.Mqtt;

/// <summary>The protocol level byte of CONNECT.</summary>
public enum ProtocolVersion : byte
{
    /// <summary>Not yet known: nothing but CONNECT has been read.</summary>
    Unknown = 0,
    /// <summary>MQTT 3.1 (protocol name "MQIsdp").</summary>
    V310 = 3,
    /// <summary>MQTT 3.1.1.</summary>
    V311 = 4,
    /// <summary>MQTT 5.0.</summary>
    V500 = 5,
}

/// <summary>Control packet types (the high nibble of the fixed header).</summary>
public enum PacketType : byte
{
    Reserved = 0,
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

/// <summary>Quality of service levels.</summary>
public enum QoS : byte
{
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}
