using System.Diagnostics.CodeAnalysis;

namespace Taihu.Mqtt;

/// <summary>
/// A frame broke the protocol. <see cref="ReasonCode"/> is what a 5.0 peer is told (in CONNACK or DISCONNECT)
/// before the connection is closed; a 3.1.1 peer is simply disconnected.
/// </summary>
public sealed class MqttProtocolException : Exception
{
    public MqttProtocolException(ReasonCode reasonCode, string message)
        : base(message)
    {
        ReasonCode = reasonCode;
    }

    public MqttProtocolException()
        : this(ReasonCode.ProtocolError, "Protocol error.")
    {
    }

    public MqttProtocolException(string message)
        : this(ReasonCode.ProtocolError, message)
    {
    }

    public MqttProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
        ReasonCode = ReasonCode.ProtocolError;
    }

    /// <summary>The reason code that describes the violation.</summary>
    public ReasonCode ReasonCode { get; }

    /// <summary>The packet type being decoded when the violation was found, when known.</summary>
    public PacketType PacketType { get; init; }

    /// <summary>
    /// Set when the violation was found inside a CONNECT whose protocol level was already read, so that the
    /// CONNACK that refuses it can be written in the client's own version.
    /// </summary>
    public ProtocolVersion ConnectVersion { get; init; }
}

/// <summary>Throw helpers, kept out of the hot methods so those stay small and inlinable.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void Malformed(string message) => throw new MqttProtocolException(ReasonCode.MalformedPacket, message);

    [DoesNotReturn]
    public static void ProtocolError(string message) => throw new MqttProtocolException(ReasonCode.ProtocolError, message);

    [DoesNotReturn]
    public static void Throw(ReasonCode code, string message) => throw new MqttProtocolException(code, message);

    [DoesNotReturn]
    public static T Malformed<T>(string message) => throw new MqttProtocolException(ReasonCode.MalformedPacket, message);
}
