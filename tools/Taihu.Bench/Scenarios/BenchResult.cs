namespace Taihu.Bench.Scenarios;

/// <summary>What a run measured; written as JSON with --json.</summary>
public sealed record BenchResult
{
    public required string Scenario { get; init; }
    public required string Target { get; init; }
    public required string Protocol { get; init; }
    /// <summary>The client implementation that drove the run: taihu or mqttnet.</summary>
    public string Client { get; init; } = "taihu";
    public int QoS { get; init; }
    public int PayloadSize { get; init; }
    public double OfferedRate { get; init; }
    public double DurationSeconds { get; init; }
    public int Publishers { get; init; }
    public int Subscribers { get; init; }
    public long Sent { get; init; }
    public long Expected { get; init; }
    public long Delivered { get; init; }
    public long Lost { get; init; }
    public long Duplicates { get; init; }
    public double DeliveredPerSecond { get; init; }

    /// <summary>live: messages the devices had acknowledged per second over the window (each carries --keys points).</summary>
    public double? AcknowledgedPerSecond { get; init; }
    public double LatencyP50Ms { get; init; }
    public double LatencyP90Ms { get; init; }
    public double LatencyP99Ms { get; init; }
    public double LatencyP999Ms { get; init; }
    public double LatencyMaxMs { get; init; }
    public double? BrokerCpuPercent { get; init; }
    public double? BrokerCpuSecondsPerMillion { get; init; }
    public long? BrokerResidentBytes { get; init; }

    /// <summary>live: the broker's resident memory at the first sample of the run (BrokerResidentBytes is the last).</summary>
    public long? BrokerResidentStartBytes { get; init; }

    /// <summary>live: the largest resident memory sampled over the run.</summary>
    public long? BrokerResidentMaxBytes { get; init; }
    public double? BrokerBytesPerConnection { get; init; }
    public double? BrokerAllocatedBytesPerDelivered { get; init; }

    /// <summary>Messages the broker counted as dropped (any reason) over the window and the drain; null without --metrics-url.</summary>
    public long? BrokerDropped { get; init; }
    public double GeneratorCpuPercent { get; init; }
    public long GeneratorAllocatedBytes { get; init; }
    public long PacedMessagesSkipped { get; init; }
    public int ConnectFailures { get; init; }
    public double? ConnectP50Ms { get; init; }
    public double? ConnectP99Ms { get; init; }
    public int Connections { get; init; }
    public string? Note { get; init; }
}
