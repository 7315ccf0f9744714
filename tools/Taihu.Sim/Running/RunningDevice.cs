using System.Buffers;
using System.Text.Json;
using Taihu.Sim.Scenarios;
using Taihu.Sim.Values;

namespace Taihu.Sim.Running;

/// <summary>A device during the run: its values' sources, its random numbers, and its counts.</summary>
public sealed class RunningDevice
{
    private readonly IValueSource[] _sources;
    private readonly (EventDefinition Event, Dictionary<int, IValueSource> Sources)[] _events;

    public RunningDevice(ProvisionedDevice provisioned, int seed, int fleetSize)
    {
        Provisioned = provisioned;
        Random = new Random(HashCode.Combine(seed, provisioned.FleetIndex, provisioned.Number));
        var fleet = provisioned.Fleet;
        Keys = [.. fleet.Telemetry.Keys];
        _sources = [.. fleet.Telemetry.Values.Select(m => m.Start(Random))];
        var events = new List<(EventDefinition, Dictionary<int, IValueSource>)>();
        foreach (var e in fleet.Events)
        {
            // The first devices of the fleet (by number) are the event's share, at least one when the share is above zero.
            var affected = SimRunner.Affected(e.Share, fleetSize);
            if (provisioned.Number <= affected)
            {
                var sources = new Dictionary<int, IValueSource>();
                foreach (var (key, model) in e.Telemetry)
                {
                    sources[Array.IndexOf(Keys, key)] = model.Start(Random);
                }

                events.Add((e, sources));
            }
        }

        _events = [.. events];
        if (fleet.Route is { } route)
        {
            Vehicle = new VehicleMotion(route, fleet, provisioned.Number, fleetSize, Random);
        }
    }

    /// <summary>A vehicle's place on its route, when its fleet drives one.</summary>
    public VehicleMotion? Vehicle { get; }

    public ProvisionedDevice Provisioned { get; }

    public ISimDevice Connection { get; set; } = null!;

    /// <summary>The MQTT client id of a device with its own connection.</summary>
    public string? ClientId { get; set; }

    /// <summary>The faults that touch this device.</summary>
    public IReadOnlyList<FaultDefinition> Faults { get; set; } = [];

    public Random Random { get; }

    public string[] Keys { get; }

    private long _sent;
    private long _acknowledged;

    public long Sent => Volatile.Read(ref _sent);

    public long Acknowledged => Volatile.Read(ref _acknowledged);

    public void CountSent() => Interlocked.Increment(ref _sent);

    public void CountAcknowledged() => Interlocked.Increment(ref _acknowledged);

    /// <summary>A real device's counts, as its proxy saw them.</summary>
    public void SetCounts(long sent, long acknowledged)
    {
        Volatile.Write(ref _sent, sent);
        Volatile.Write(ref _acknowledged, acknowledged);
    }

    private long _missedOffline;
    private long _storedTs;
    private long _minTs = long.MaxValue;
    private long _maxTs = long.MinValue;

    /// <summary>Reports not sent because the device was offline (after a fault, waiting to reconnect).</summary>
    public long MissedOffline => Volatile.Read(ref _missedOffline);

    public void CountMissedOffline() => Interlocked.Increment(ref _missedOffline);

    /// <summary>Acknowledged points with distinct timestamps: what the server must hold afterwards.</summary>
    public long StoredTsCount => Volatile.Read(ref _storedTs);

    public long MinTs => Volatile.Read(ref _minTs);

    public long MaxTs => Volatile.Read(ref _maxTs);

    // The last stamps counted: a stamp acknowledged twice (two reports of a station or terminal in one second) is one point.
    private readonly long[] _recentTs = new long[8];
    private int _recentAt;

    public void CountStoredTs(long ts)
    {
        lock (Keys)
        {
            if (Array.IndexOf(_recentTs, ts) < 0)
            {
                _recentTs[_recentAt++ % _recentTs.Length] = ts;
                _storedTs++;
            }

            _minTs = Math.Min(_minTs, ts);
            _maxTs = Math.Max(_maxTs, ts);
        }
    }

    private long _lastTs;

    /// <summary>
    /// <c>{"ts":..,"values":{..}}</c> at scenario time <paramref name="t"/>, stamped <paramref name="ts"/> or, when
    /// the device already reported in that millisecond, the next free one: a point is keyed by its timestamp, and
    /// two in one millisecond would be one stored point.
    /// </summary>
    public (byte[] Payload, long Ts) Payload(TimeSpan t, long ts)
    {
        lock (Keys)
        {
            // Two reports within a millisecond (or a clock that stepped back a little) get the next free stamp; a
            // clock set far back on purpose (a skew fault) keeps its stamp.
            if (Provisioned.Fleet.Protocol is DeviceProtocol.Hj212 or DeviceProtocol.Jt808)
            {
                // HJ 212's DataTime and JT/T 808's fix time have whole seconds: reports within one second (faster
                // than one a second after --speed) are one point, the last one's values.
                ts -= ts % 1000;
            }
            else if (ts <= _lastTs && _lastTs - ts < 1_000)
            {
                ts = _lastTs + 1;
            }

            _lastTs = ts;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("ts", ts);
            writer.WritePropertyName("values");
            writer.WriteStartObject();
            double? speed = null;
            for (var k = 0; k < Keys.Length; k++)
            {
                var source = _sources[k];
                foreach (var (e, sources) in _events)
                {
                    if (e.IsActive(t) && sources.TryGetValue(k, out var replacement))
                    {
                        source = replacement;
                    }
                }

                var value = source.Next(t);
                if (value.Text is { } text)
                {
                    writer.WriteString(Keys[k], text);
                }
                else if (value.Flag is { } flag)
                {
                    writer.WriteBoolean(Keys[k], flag);
                }
                else
                {
                    writer.WriteNumber(Keys[k], value.Number);
                    if (Keys[k] == "speed")
                    {
                        speed = value.Number;
                    }
                }
            }

            Vehicle?.Write(writer, t, speed);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return (buffer.WrittenSpan.ToArray(), ts);
    }
}
