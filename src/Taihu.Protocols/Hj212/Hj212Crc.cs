namespace Taihu.Protocols.Hj212;

/// <summary>Which check a station computes over a frame's data segment.</summary>
public enum Hj212CrcKind
{
    /// <summary>
    /// The standard's CRC16 (HJ 212-2017 appendix; the 2005 edition's is the same): register 0xFFFF; for each byte,
    /// the register's high byte XOR the byte becomes the register, then eight shifts right with 0xA001 on a carry.
    /// </summary>
    Standard,

    /// <summary>
    /// Modbus CRC16 (the byte XORed into the whole register), which some stations send instead: accepted only for
    /// devices set to it.
    /// </summary>
    Modbus,
}

/// <summary>The two CRC16 variants HJ 212 stations send, over the data segment's bytes.</summary>
public static class Hj212Crc
{
    public static ushort Compute(ReadOnlySpan<byte> data, Hj212CrcKind kind = Hj212CrcKind.Standard)
    {
        uint crc = 0xFFFF;
        if (kind == Hj212CrcKind.Standard)
        {
            foreach (var b in data)
            {
                crc = (crc >> 8) ^ b;
                crc = Shift8(crc);
            }
        }
        else
        {
            foreach (var b in data)
            {
                crc ^= b;
                crc = Shift8(crc);
            }
        }

        return (ushort)crc;
    }

    private static uint Shift8(uint crc)
    {
        for (var i = 0; i < 8; i++)
        {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1;
        }

        return crc;
    }
}
