using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Taihu.Platform.Alarms;
using Taihu.Platform.Rules;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// The owner of a device's rule state: work is done in the order it was handed over, the periodic recheck runs on
/// the injected clock, a change of rules keeps the progress, and a failing item does not stop the device's rules.
/// Sync points are the owner's own snapshot (taken in turn) and the sink's signal; no sleeps.
/// </summary>
public sealed class DeviceAlarmRulesOwnerTests
{
    private static readonly DateTimeOffset s_start = new(2026, 1, 5, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan s_guard = TimeSpan.FromSeconds(30);
    private const long Minute = 60_000;

    private readonly FakeTimeProvider _time = new(s_start);

    private static long T0 => s_start.ToUnixTimeMilliseconds();

    private const string Pm25 = """
        {"id": "pm25", "alarmType": "High PM2.5", "createRules": {"MAJOR": {"condition": {
          "condition": [{"key": {"type": "TIME_SERIES", "key": "pm25"}, "valueType": "NUMERIC",
                         "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 75}}}],
          "spec": {"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 10}}}}}}
        """;

    private const string Hot = """
        {"id": "hot", "alarmType": "Hot", "createRules": {"MAJOR": {"condition": {
          "condition": [{"key": {"type": "TIME_SERIES", "key": "t"}, "valueType": "NUMERIC",
                         "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 30}}}]}}}}
        """;

    private static CompiledAlarmRules Compile(params string[] alarms)
    {
        using var document = JsonDocument.Parse("[" + string.Join(',', alarms) + "]");
        return new CompiledAlarmRules(AlarmRuleParser.Parse(document.RootElement));
    }

    private static TelemetryPoint[] Points(string key, params (long Ts, double Value)[] points) =>
        points.Select(p => new TelemetryPoint(key, p.Ts, KvValue.Of(p.Value))).ToArray();

    private sealed class Sink : IAlarmDecisionSink
    {
        private TaskCompletionSource<AlarmDecision> _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool ThrowOnce { get; set; }

        public List<AlarmDecision> All { get; } = [];

        public Task<AlarmDecision> Next => _next.Task;

        public void OnDecisions(Guid deviceId, IReadOnlyList<AlarmDecision> decisions)
        {
            if (ThrowOnce)
            {
                ThrowOnce = false;
                throw new InvalidOperationException("sink failed");
            }

            lock (All)
            {
                All.AddRange(decisions);
            }

            var signal = _next;
            _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
            signal.TrySetResult(decisions[0]);
        }
    }

    [Fact]
    public async Task The_periodic_recheck_on_the_injected_clock_raises_a_duration_alarm_without_a_new_point()
    {
        var sink = new Sink();
        var rules = Compile(Pm25);
        await using var owner = new DeviceAlarmRulesOwner(Guid.NewGuid(), new DeviceRuleState(rules), new AlarmRuleEvaluator(_time), _time, TimeSpan.FromMinutes(1), sink);

        owner.PostTelemetry(Points("pm25", (T0, 80), (T0 + 2 * Minute, 90)));
        await owner.SnapshotAsync().WaitAsync(s_guard);
        _time.Advance(TimeSpan.FromMinutes(10));
        await owner.SnapshotAsync().WaitAsync(s_guard);
        Assert.Empty(sink.All);

        var next = sink.Next;
        _time.Advance(TimeSpan.FromMinutes(1));
        var decision = await next.WaitAsync(s_guard);
        Assert.Equal((AlarmDecisionKind.Create, "High PM2.5", T0 + 11 * Minute), (decision.Kind, decision.AlarmType, decision.Ts));
    }

    [Fact]
    public async Task New_rules_keep_the_progress_and_a_failed_item_does_not_stop_the_owner()
    {
        var sink = new Sink { ThrowOnce = true };
        await using var owner = new DeviceAlarmRulesOwner(Guid.NewGuid(), new DeviceRuleState(Compile(Hot)), new AlarmRuleEvaluator(_time), _time, TimeSpan.FromHours(1), sink);

        owner.PostTelemetry(Points("t", (T0, 40)));
        owner.PostRules(Compile(Hot, Pm25));
        owner.PostTelemetry(Points("pm25", (T0, 80), (T0 + 6 * Minute, 80)));
        var snapshot = await owner.SnapshotAsync().WaitAsync(s_guard);
        Assert.Equal(1, owner.Failures);
        Assert.Empty(sink.All);

        // The Hot alarm was raised before the rules changed (its decision hit the failing sink) and is still raised.
        var restored = DeviceRuleState.Restore(Compile(Hot, Pm25), snapshot);
        Assert.Equal(AlarmSeverity.Major, restored.ActiveSeverity("Hot"));

        var next = sink.Next;
        owner.PostTelemetry(Points("pm25", (T0 + 10 * Minute + 1, 80)));
        Assert.Equal("High PM2.5", (await next.WaitAsync(s_guard)).AlarmType);
    }
}
