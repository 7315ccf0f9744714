using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Taihu.Platform.Rules;
using Taihu.Platform.Telemetry;

namespace Taihu.Benchmarks.Platform;

/// <summary>
/// Evaluating one device's batch of 1,000 points (pm25 and temperature alternating, each its own ts) against a
/// profile of three alarms: pm25 DURATION, temperature CRITICAL/MAJOR with a clear rule, and the inactivity rule on
/// an attribute. <c>Quiet</c>: no rule holds, no decision. <c>AlarmHeld</c>: the temperature alarm stays raised,
/// so every temperature point is TRUE and the batch ends in one coalesced update decision.
/// </summary>
[MemoryDiagnoser]
public class AlarmRuleEvaluatorBenchmarks
{
    private const string Alarms = """
        [
          {"id": "pm25", "alarmType": "High PM2.5", "createRules": {"MAJOR": {"condition": {
            "condition": [{"key": {"type": "TIME_SERIES", "key": "pm25"}, "valueType": "NUMERIC",
                           "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 75}}}],
            "spec": {"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 10}}}}}},
          {"id": "temp", "alarmType": "Temperature", "createRules": {
            "CRITICAL": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "temperature"}, "valueType": "NUMERIC",
                           "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 50}}}]}},
            "MAJOR": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "temperature"}, "valueType": "NUMERIC",
                           "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 30}}}]}}},
           "clearRule": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "temperature"}, "valueType": "NUMERIC",
                           "predicate": {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 25}}}]}}},
          {"id": "inactive", "alarmType": "Inactivity", "createRules": {"MINOR": {"condition": {
            "condition": [{"key": {"type": "ATTRIBUTE", "key": "active"}, "valueType": "BOOLEAN",
                           "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": false}}}]}}}}
        ]
        """;

    private readonly AlarmRuleEvaluator _evaluator = new(TimeProvider.System);
    private readonly List<AlarmDecision> _decisions = new(16);
    private DeviceRuleState _state = null!;
    private TelemetryPoint[] _batch = [];

    [Params("Quiet", "AlarmHeld")]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        using var document = JsonDocument.Parse(Alarms);
        _state = new DeviceRuleState(new CompiledAlarmRules(AlarmRuleParser.Parse(document.RootElement)));
        var temperature = Case == "Quiet" ? 27d : 35d;
        _batch = new TelemetryPoint[1000];
        for (var i = 0; i < _batch.Length; i++)
        {
            _batch[i] = i % 2 == 0
                ? new TelemetryPoint("pm25", 1_700_000_000_000 + i, KvValue.Of(40L))
                : new TelemetryPoint("temperature", 1_700_000_000_000 + i, KvValue.Of(temperature));
        }

        _evaluator.EvaluateTelemetry(_state, _batch, default, _decisions);
    }

    [Benchmark(OperationsPerInvoke = 1000)]
    public int EvaluateBatch()
    {
        _decisions.Clear();
        _evaluator.EvaluateTelemetry(_state, _batch, default, _decisions);
        return _decisions.Count;
    }
}
