using System.Buffers.Binary;

namespace Taihu.Mqtt.Packets;

/// <summary>
/// Reads the variable header and payload of one complete packet. Every read checks the bounds and reports a
/// short body as a malformed packet, never as "need more bytes": the frame's remaining length said how long it is.
/// </summary>
internal ref struct BodyReader
{
    private readonly ReadOnlySpan<byte> _span;
    private int _position;

    public BodyReader(ReadOnlySpan<byte> span)
    {
        _span = span;
        _position = 0;
    }

    public readonly int Remaining => _span.Length - _position;

    public readonly int Position => _position;

    public readonly bool End => _position >= _span.Length;

    public byte ReadByte()
    {
        if (_position >= _span.Length)
        {
            ThrowHelper.Malformed("The packet ends inside a field.");
        }

        return _span[_position++];
    }

    public ushort ReadUInt16()
    {
        if (_span.Length - _position < 2)
        {
            ThrowHelper.Malformed("The packet ends inside a two-byte integer.");
        }

        var value = BinaryPrimitives.ReadUInt16BigEndian(_span.Slice(_position));
        _position += 2;
        return value;
    }

    public uint ReadUInt32()
    {
        if (_span.Length - _position < 4)
        {
            ThrowHelper.Malformed("The packet ends inside a four-byte integer.");
        }

        var value = BinaryPrimitives.ReadUInt32BigEndian(_span.Slice(_position));
        _position += 4;
        return value;
    }

    public uint ReadVariableByteInteger()
    {
        uint value = 0;
        var shift = 0;
        for (var i = 0; i < 4; i++)
        {
            var b = ReadByte();
            value |= (uint)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                if (b == 0 && i > 0)
                {
                    // [MQTT-1.5.5-1]: the encoding must use the fewest bytes; a trailing zero byte is over-long.
                    ThrowHelper.Malformed("A variable byte integer is not minimally encoded.");
                }

                return value;
            }

            shift += 7;
        }

        return ThrowHelper.Malformed<uint>("A variable byte integer is longer than four bytes.");
    }

    public ReadOnlySpan<byte> ReadBinarySpan()
    {
        int length = ReadUInt16();
        if (_span.Length - _position < length)
        {
            ThrowHelper.Malformed("A length-prefixed field runs past the end of the packet.");
        }

        var slice = _span.Slice(_position, length);
        _position += length;
        return slice;
    }

    /// <summary>A UTF-8 string field, checked against the spec's rules, still encoded.</summary>
    public ReadOnlySpan<byte> ReadStringSpan()
    {
        var bytes = ReadBinarySpan();
        if (!Utf8Validation.IsValidMqttString(bytes))
        {
            ThrowHelper.Malformed("A string is not well-formed UTF-8 or contains U+0000.");
        }

        return bytes;
    }

    public string ReadString()
    {
        var bytes = ReadStringSpan();
        return bytes.Length == 0 ? "" : Utf8Validation.Strict.GetString(bytes);
    }

    public byte[] ReadBinary() => ReadBinarySpan().ToArray();

    public ReadOnlySpan<byte> ReadRest()
    {
        var rest = _span.Slice(_position);
        _position = _span.Length;
        return rest;
    }

    public ReadOnlySpan<byte> ReadSpan(int length)
    {
        if (_span.Length - _position < length)
        {
            ThrowHelper.Malformed("A field runs past the end of the packet.");
        }

        var slice = _span.Slice(_position, length);
        _position += length;
        return slice;
    }
}
