using System.Collections;
using System.Reflection;
using Taihu.Mqtt.Buffers;
using Taihu.Mqtt.Packets;

namespace Taihu.Mqtt.Tests.Support;

/// <summary>
/// Structural equality for decoded packets. It walks every public property by reflection, so a field added to a
/// packet or to <see cref="MqttProperties"/> is compared without anyone remembering to add it here; a type it does
/// not know makes it throw rather than silently pass. <see cref="PooledBuffer"/> owners are skipped: they hold
/// the payload, they are not part of it.
/// </summary>
internal static class PacketComparer
{
    /// <summary>Every difference as "path: expected X, actual Y"; empty when the two are equal.</summary>
    public static List<string> Differences(object? expected, object? actual)
    {
        var differences = new List<string>();
        Compare(expected, actual, "packet", differences);
        return differences;
    }

    private static void Compare(object? expected, object? actual, string path, List<string> differences)
    {
        if (expected is null || actual is null)
        {
            if (expected is not null || actual is not null)
            {
                differences.Add($"{path}: expected {Describe(expected)}, actual {Describe(actual)}");
            }

            return;
        }

        if (expected.GetType() != actual.GetType())
        {
            differences.Add($"{path}: expected a {expected.GetType().Name}, actual a {actual.GetType().Name}");
            return;
        }

        switch (expected)
        {
            case string or bool or byte or ushort or uint or int or Enum or UserProperty:
                if (!expected.Equals(actual))
                {
                    differences.Add($"{path}: expected {Describe(expected)}, actual {Describe(actual)}");
                }

                return;
            case ReadOnlyMemory<byte> expectedBytes:
                if (!expectedBytes.Span.SequenceEqual(((ReadOnlyMemory<byte>)actual).Span))
                {
                    differences.Add($"{path}: expected {Describe(expected)}, actual {Describe(actual)}");
                }

                return;
            case IList expectedList:
                var actualList = (IList)actual;
                if (expectedList.Count != actualList.Count)
                {
                    differences.Add($"{path}: expected {expectedList.Count} items, actual {actualList.Count}");
                    return;
                }

                for (var i = 0; i < expectedList.Count; i++)
                {
                    Compare(expectedList[i], actualList[i], $"{path}[{i}]", differences);
                }

                return;
        }

        var type = expected.GetType();
        if (!type.IsClass || type.Assembly != typeof(MqttPacket).Assembly)
        {
            throw new InvalidOperationException($"The comparer does not know how to compare a {type} at {path}.");
        }

        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.PropertyType == typeof(PooledBuffer))
            {
                continue;
            }

            Compare(property.GetValue(expected), property.GetValue(actual), $"{path}.{property.Name}", differences);
        }
    }

    private static string Describe(object? value) => value switch
    {
        null => "null",
        string s => $"\"{s}\" ({s.Length} chars)",
        ReadOnlyMemory<byte> m => m.Length <= 32 ? $"[{Hex.Format(m.Span)}]" : $"[{m.Length} bytes]",
        Enum e => $"{e} (0x{Convert.ToByte(e, null):X2})",
        _ => value.ToString() ?? "?",
    };
}
