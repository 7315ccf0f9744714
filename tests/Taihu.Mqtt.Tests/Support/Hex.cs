namespace Taihu.Mqtt.Tests.Support;

/// <summary>Hex strings with optional spaces, so a frame can be written field by field.</summary>
internal static class Hex
{
    public static byte[] Parse(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    public static string Format(ReadOnlySpan<byte> bytes) => Convert.ToHexString(bytes);
}
