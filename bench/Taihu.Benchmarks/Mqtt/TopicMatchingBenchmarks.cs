using BenchmarkDotNet.Attributes;
using Taihu.Mqtt.Topics;

namespace Taihu.Benchmarks.Mqtt;

/// <summary>
/// One topic against one filter with <see cref="TopicMatcher.Matches"/>: the cost the linear scan in
/// SubscriptionTrieBenchmarks pays per subscription. The exact match of a five-level device topic is the baseline.
/// </summary>
[MemoryDiagnoser]
public class TopicMatchingBenchmarks
{
    private const string Topic = "tenant/42/device/1234/telemetry";

    [Benchmark(Baseline = true)]
    public bool Exact() => TopicMatcher.Matches("tenant/42/device/1234/telemetry", Topic);

    [Benchmark]
    public bool SingleLevelWildcard() => TopicMatcher.Matches("tenant/42/device/+/telemetry", Topic);

    [Benchmark]
    public bool MultiLevelWildcard() => TopicMatcher.Matches("tenant/42/#", Topic);

    [Benchmark]
    public bool MismatchAtLastLevel() => TopicMatcher.Matches("tenant/42/device/1234/status", Topic);

    [Benchmark]
    public bool MismatchAtSecondLevel() => TopicMatcher.Matches("tenant/7/device/1234/telemetry", Topic);
}
