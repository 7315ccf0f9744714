using BenchmarkDotNet.Attributes;
using Taihu.Broker;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt.Topics;

namespace Taihu.Benchmarks.Broker;

/// <summary>
/// Routing one PUBLISH topic against 10,000 subscriptions, the trie against the naive scan that tests every
/// filter with <see cref="TopicMatcher"/> (the baseline). The subscriptions model 100 tenants of devices:
/// <list type="bullet">
/// <item>7,000 exact <c>tenant/{t}/device/{d}/telemetry</c> (each device's own consumer, d &lt; 70);</item>
/// <item>1,000 <c>tenant/{t}/device/{d}/+</c> (all streams of devices 0..9 of every tenant);</item>
/// <item>500 <c>tenant/{t}/device/+/telemetry</c> (five dashboards per tenant);</item>
/// <item>1,000 <c>tenant/{t}/device/{d}/#</c> (loggers for devices 10..19);</item>
/// <item>500 <c>tenant/{t}/#</c> (five archivers per tenant).</item>
/// </list>
/// The matched topic is either a busy device (<c>tenant/42/device/7/telemetry</c>: 12 subscriptions) or a device
/// with no subscription of its own (<c>tenant/42/device/999/status</c>: the 5 archivers). Both collectors reuse
/// their result lists, as the broker's publish path does.
/// </summary>
[MemoryDiagnoser]
public class SubscriptionTrieBenchmarks
{
    private const int Tenants = 100;
    private readonly List<Subscription> _matches = new(64);
    private readonly List<SharedGroup> _groups = new(4);
    private SubscriptionTrie _trie = null!;
    private Subscription[] _all = [];

    [Params("tenant/42/device/7/telemetry", "tenant/42/device/999/status")]
    public string Topic { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        var all = new List<Subscription>(10_000);
        var sessionId = 0;
        var services = new SessionServices(new BrokerOptions(), TimeProvider.System, new BrokerMetrics());
        MqttSession NewSession() => new("bench", $"client-{sessionId++}", "", services);

        for (var t = 0; t < Tenants; t++)
        {
            for (var d = 0; d < 70; d++)
            {
                all.Add(Create(NewSession(), $"tenant/{t}/device/{d}/telemetry"));
            }

            for (var d = 0; d < 10; d++)
            {
                all.Add(Create(NewSession(), $"tenant/{t}/device/{d}/+"));
            }

            for (var i = 0; i < 5; i++)
            {
                all.Add(Create(NewSession(), $"tenant/{t}/device/+/telemetry"));
            }

            for (var d = 10; d < 20; d++)
            {
                all.Add(Create(NewSession(), $"tenant/{t}/device/{d}/#"));
            }

            for (var i = 0; i < 5; i++)
            {
                all.Add(Create(NewSession(), $"tenant/{t}/#"));
            }
        }

        _all = [.. all];
        _trie = new SubscriptionTrie();
        foreach (var subscription in _all)
        {
            _trie.Add(subscription);
        }

        if (_trie.Count != 10_000 || LinearScan() != Trie())
        {
            throw new InvalidOperationException("The trie and the linear scan disagree.");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _trie.Dispose();

    private static Subscription Create(MqttSession session, string filter) =>
        new() { Session = session, Filter = filter, RawFilter = filter };

    [Benchmark(Baseline = true)]
    public int LinearScan()
    {
        _matches.Clear();
        var topic = Topic;
        foreach (var subscription in _all)
        {
            if (TopicMatcher.Matches(subscription.Filter, topic))
            {
                _matches.Add(subscription);
            }
        }

        return _matches.Count;
    }

    [Benchmark]
    public int Trie()
    {
        _matches.Clear();
        _groups.Clear();
        _trie.Match(Topic, _matches, _groups);
        return _matches.Count;
    }
}
