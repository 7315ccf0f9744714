using System.Collections.Concurrent;
using HdrHistogram;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>A fault as the run applied it: the devices it touched and what the server made of each injection.</summary>
public sealed class FaultRun(FaultDefinition definition, List<RunningDevice> devices)
{
    private readonly ConcurrentDictionary<string, int> _outcomes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<RunningDevice, int> _reconnectsBefore = new();
    private readonly ConcurrentBag<FaultProxy.Link> _links = [];

    /// <summary>A connection the proxy paused or made half-open, whose end is read when the run is over.</summary>
    public void AddLink(FaultProxy.Link link) => _links.Add(link);

    public FaultDefinition Definition { get; } = definition;

    public List<RunningDevice> Devices { get; } = devices;

    public void Record(string outcome, int count = 1) => _outcomes.AddOrUpdate(outcome, count, (_, n) => n + count);

    /// <summary>Remembers how often the device had reconnected before it was dropped, to tell at the end whether it came back.</summary>
    public void TrackReconnect(RunningDevice device, int reconnectsBefore) => _reconnectsBefore[device] = reconnectsBefore;

    /// <summary>Outcomes by count, the most frequent first; reconnects counted at the end of the run.</summary>
    public IReadOnlyList<(string Outcome, int Count)> Outcomes()
    {
        var outcomes = new Dictionary<string, int>(_outcomes, StringComparer.Ordinal);
        if (Definition.Kind is FaultKind.Disconnect or FaultKind.HalfOpen || !_reconnectsBefore.IsEmpty)
        {
            var back = _reconnectsBefore.Count(pair => pair.Key.Connection.Reconnects > pair.Value);
            outcomes[Definition.Kind == FaultKind.HalfOpen ? "device found out and reconnected" : "reconnected with back-off"] = back;
            if (back < _reconnectsBefore.Count)
            {
                outcomes["not reconnected by the end"] = _reconnectsBefore.Count - back;
            }
        }

        foreach (var link in _links)
        {
            // Real time: the server's keep-alive is in real seconds, whatever the run's speed.
            var outcome = link.ServerClosedAfter is { } after
                ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"server closed the half-open connection after {after.TotalSeconds:0.0} s (real time)")
                : "server kept the half-open connection to the end";
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }

        return [.. outcomes.OrderByDescending(o => o.Value).Select(o => (o.Key, o.Value))];
    }

    /// <summary>
    /// Whether every injection got the server's clear answer: garbage and oversized payloads refused (a reason code,
    /// an HTTP status, or the connection closed), never acknowledged; duplicates and bursts acknowledged; dropped
    /// devices back; skewed points either stored or refused with a reason. A plain MQTT server does not read
    /// payloads, so there garbage and large payloads may be acknowledged (<paramref name="plainMqtt"/>).
    /// </summary>
    public bool Handled(bool plainMqtt, out string why)
    {
        var outcomes = Outcomes();
        bool Any(Func<string, bool> bad, out string found)
        {
            foreach (var (outcome, count) in outcomes)
            {
                if (bad(outcome) && count > 0)
                {
                    found = $"{count} × {outcome}";
                    return true;
                }
            }

            found = "";
            return false;
        }

        switch (Definition.Kind)
        {
            case FaultKind.Malformed or FaultKind.Oversized:
                if (!plainMqtt && Any(o => o == "acknowledged", out why))
                {
                    why = "the server acknowledged what it should have refused: " + why;
                    return false;
                }

                if (Any(o => o.StartsWith("not connected", StringComparison.Ordinal) || o.StartsWith("connection failed", StringComparison.Ordinal), out why))
                {
                    why = "could not be injected: " + why;
                    return false;
                }

                break;
            case FaultKind.Duplicate or FaultKind.Burst or FaultKind.ClockSkew:
                if (Any(o => o.StartsWith("connection", StringComparison.Ordinal) || o == "not connected", out why))
                {
                    why = "lost without an answer: " + why;
                    return false;
                }

                break;
            case FaultKind.Disconnect or FaultKind.Flood:
                if (Any(o => o.StartsWith("not reconnected", StringComparison.Ordinal) || o.StartsWith("connection failed", StringComparison.Ordinal), out why))
                {
                    return false;
                }

                break;
            case FaultKind.HalfOpen:
                if (Any(o => o.StartsWith("server kept", StringComparison.Ordinal) || o.StartsWith("not", StringComparison.Ordinal), out why))
                {
                    return false;
                }

                break;
            case FaultKind.Pause:
                if (Any(o => o.StartsWith("not connected", StringComparison.Ordinal), out why))
                {
                    why = "could not be injected: " + why;
                    return false;
                }

                break;
        }

        why = "";
        return true;
    }
}

/// <summary>The calls made for one RPC definition and how they ended.</summary>
public sealed class RpcCallRun(RpcCallDefinition definition)
{
    private readonly Lock _gate = new();
    private readonly LongHistogram _latency = new(TimeSpan.FromMinutes(5).Ticks, 2);

    public RpcCallDefinition Definition { get; } = definition;

    public int Calls { get; private set; }

    /// <summary>Answered by the device (200), errors included.</summary>
    public int Answered { get; private set; }

    /// <summary>Answered with an error the device reported.</summary>
    public int AnsweredWithError { get; private set; }

    /// <summary>No answer in time (504), or the device was not connected.</summary>
    public int TimedOut { get; private set; }

    public int Failed { get; private set; }

    /// <summary>Not made: the call fell while the run held a real device offline (a drop it injected), so it says nothing of the device.</summary>
    public int Offline { get; private set; }

    public string? FirstFailure { get; private set; }

    public void RecordOffline()
    {
        lock (_gate)
        {
            Offline++;
        }
    }

    public void Record(int status, string body, TimeSpan latency)
    {
        lock (_gate)
        {
            Calls++;
            if (status == 200)
            {
                Answered++;
                if (body.Contains("\"error\"", StringComparison.Ordinal))
                {
                    AnsweredWithError++;
                }

                _latency.RecordValue(Math.Min(Math.Max(1, latency.Ticks), _latency.HighestTrackableValue));
            }
            else if (status is 504 or 408 or 409)
            {
                TimedOut++;
            }
            else
            {
                Failed++;
                FirstFailure ??= $"{status} {body}";
            }
        }
    }

    public TimeSpan P99
    {
        get
        {
            lock (_gate)
            {
                return _latency.TotalCount == 0 ? TimeSpan.Zero : TimeSpan.FromTicks(_latency.GetValueAtPercentile(99));
            }
        }
    }
}
