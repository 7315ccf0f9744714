using System.Text.Json;
using Taihu.Bench.Scenarios;

namespace Taihu.Bench.Tests;

/// <summary>The node-kill scenario's telemetry: every message its own point, at its own timestamp, with its sequence in k0.</summary>
public sealed class NodeKillPayloadTests
{
    [Theory]
    [InlineData(1, 0L)]
    [InlineData(5, 41L)]
    [InlineData(100, 1_234_567L)]
    public void Payload_IsThingsBoardTelemetryWithItsOwnTimestamp(int keys, long sequence)
    {
        const long baseTs = 1_765_000_000_000;
        var buffer = new byte[32 + (keys * 32)];
        var length = NodeKillScenario.WritePayload(buffer, keys, baseTs, sequence);

        using var json = JsonDocument.Parse(buffer.AsMemory(0, length));
        Assert.Equal(baseTs + sequence, json.RootElement.GetProperty("ts").GetInt64());
        var values = json.RootElement.GetProperty("values");
        Assert.Equal(keys, values.EnumerateObject().Count());
        Assert.Equal(sequence, values.GetProperty("k0").GetInt64());
    }
}
