using Microsoft.Extensions.Logging.Abstractions;
using Taihu.Platform.Alarms;
using Taihu.Platform.Events;
using Taihu.Platform.Rules;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// The event log on both databases: what a commit wrote is in the log, in the same transaction, in order; consumers
/// read it from their durable positions, at least once (a failing consumer gets the same events, with the same ids,
/// again); pruning keeps what some consumer still needs and never lets a position be handed out twice. And the alarm
/// rules running over it, with a DURATION rule fired by the periodic recheck on the fake clock.
/// </summary>
public abstract partial class StorageTests
{
    private const string DurationRule = """
        [{"id": "pm25", "alarmType": "High PM2.5", "createRules": {"MAJOR": {"condition": {
          "condition": [{"key": {"type": "TIME_SERIES", "key": "pm25"}, "valueType": "NUMERIC",
                         "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 75}}}],
          "spec": {"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 10}}}, "alarmDetails": "PM2.5 ${pm25}"}},
          "clearRule": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "pm25"}, "valueType": "NUMERIC",
                         "predicate": {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 35}}}], "spec": {"type": "SIMPLE"}}}}]
        """;

    private sealed class Recorder(string name) : IEventConsumer
    {
        public string Name => name;

        public List<PlatformEvent> Events { get; } = [];

        public int FailNext { get; set; }

        public Task ConsumeAsync(IReadOnlyList<PlatformEvent> events, long position, CancellationToken cancellationToken)
        {
            lock (Events)
            {
                Events.AddRange(events);
            }

            if (FailNext > 0)
            {
                FailNext--;
                throw new InvalidOperationException("not now");
            }

            return Task.CompletedTask;
        }
    }

    private sealed class AlarmListener(Guid tenantId) : IAlarmSubscriber
    {
        private readonly TaskCompletionSource<AlarmEvent> _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Guid TenantId => tenantId;

        public Task<AlarmEvent> First => _next.Task;

        public void OnAlarm(AlarmEvent change) => _next.TrySetResult(change);
    }

    [Fact]
    public async Task EventLog_HoldsEachCommit_InOrder_AndDecodesToWhatWasWritten()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var first = await Telemetry.WriteAsync([Point(device, "t", T0, 21.5), Point(device, "n", T0, 7), Point(device, "s", T0 + 1, KvValue.Of("on"))]);
        await Attributes.SaveManyAsync([new AttributeChange(device.Seq, AttributeScope.Server, [new AttributeEntry("active", T0 + 2, KvValue.Of(true))])],
            [new DeviceEventRecord(device.Seq, PlatformEventType.Connect, T0 + 2)]);
        var second = await Telemetry.WriteAsync([Point(device, "j", T0 + 3, KvValue.OfJson("""{"a":[1,2]}"""))]);
        Assert.True(second > first);

        var rows = await EventLog.ReadAsync(Database, first - 1, 10, default);
        Assert.Equal([EventLogKind.Telemetry, EventLogKind.Attributes, EventLogKind.Telemetry], rows.Select(r => r.Kind));
        Assert.Equal(first, rows[0].Position);
        var decoded = new DecodedRow();
        EventCodec.Decode(rows[0].Kind, rows[0].Body, decoded);
        Assert.Equal([Point(device, "t", T0, 21.5), Point(device, "n", T0, 7), Point(device, "s", T0 + 1, KvValue.Of("on"))], decoded.Points);
        decoded = new DecodedRow();
        EventCodec.Decode(rows[1].Kind, rows[1].Body, decoded);
        Assert.Equal(("active", true, AttributeScope.Server), (decoded.Changes[0].Entries[0].Key, decoded.Changes[0].Entries[0].Value.Boolean, decoded.Changes[0].Scope));
        Assert.Equal(new DeviceEventRecord(device.Seq, PlatformEventType.Connect, T0 + 2), Assert.Single(decoded.Events));
    }

    [Fact]
    public async Task EventLog_Pruning_KeepsWhatAConsumerStillNeeds_AndNeverReusesAPosition()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var positions = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            positions.Add(await Telemetry.WriteAsync([Point(device, "t", T0 + i, i)]));
        }

        await using (var connection = await Database.OpenAsync())
        {
            await EventLog.SaveCursorAsync(connection, null, "a", positions[4], default);
            await EventLog.SaveCursorAsync(connection, null, "b", positions[2], default);
        }

        // "c" has no position yet: nothing goes.
        Assert.Equal(0, await EventLog.PruneAsync(Database, ["a", "b", "c"], default));
        Assert.Equal(2, await EventLog.PruneAsync(Database, ["a", "b"], default));
        Assert.Equal(positions[2..], (await EventLog.ReadAsync(Database, 0, 10, default)).Select(r => r.Position));

        await using (var connection = await Database.OpenAsync())
        {
            await EventLog.SaveCursorAsync(connection, null, "b", positions[4], default);
        }

        // Everything read by both: all but the newest goes, and the next position is still a new one.
        Assert.Equal(2, await EventLog.PruneAsync(Database, ["a", "b"], default));
        Assert.Equal([positions[4]], (await EventLog.ReadAsync(Database, 0, 10, default)).Select(r => r.Position));
        Assert.True(await Telemetry.WriteAsync([Point(device, "t", T0 + 9, 9)]) > positions[4]);
        Assert.Equal((long?)positions[4], await EventLog.LoadCursorAsync(Database, "a", default));
    }

    [Fact]
    public async Task EventDispatcher_GivesEachConsumerEveryEvent_AgainAfterAFailure_WithTheSameIds()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync("station-7");
        var signal = new EventSignal();
        var telemetry = new SqlTelemetryStore(Database, signal);
        var steady = new Recorder("steady");
        var flaky = new Recorder("flaky") { FailNext = 1 };
        await using (var connection = await Database.OpenAsync())
        {
            await EventLog.SaveCursorAsync(connection, null, "steady", 0, default);
            await EventLog.SaveCursorAsync(connection, null, "flaky", 0, default);
        }

        using var dispatcher = new EventDispatcher(Database, new DeviceDirectory(Devices, Time, signal), [steady, flaky], Time, NullLogger<EventDispatcher>.Instance, signal);
        await dispatcher.StartAsync(default);
        try
        {
            await telemetry.WriteAsync([Point(device, "t", T0, 1), Point(device, "t", T0 + 1, 2)]);
            var failed = Task.Run(async () =>
            {
                // The flaky consumer's retry waits on the fake clock.
                while (!dispatcher.WaitForAsync("flaky", 1).IsCompleted)
                {
                    Time.Advance(TimeSpan.FromSeconds(1));
                    await Task.Yield();
                }
            });
            await dispatcher.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await failed.WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await dispatcher.StopAsync(default);
        }

        var one = Assert.Single(steady.Events);
        Assert.Equal((PlatformEventType.Telemetry, "station-7", T0 + 1, 2), (one.Type, one.Device.Name, one.Ts, one.Points.Count));
        Assert.Equal(2, flaky.Events.Count);
        Assert.Equal(one.Id, flaky.Events[0].Id);
        Assert.Equal(one.Id, flaky.Events[1].Id);
    }

    [Fact]
    public async Task EventDispatcher_FromMemoryOrFromTheTable_GivesTheSameEvents()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync("station-9");
        var signal = new EventSignal();
        var telemetry = new SqlTelemetryStore(Database, signal);
        var attributes = new SqlAttributeStore(Database, null, signal);
        var fromMemory = new Recorder("memory");
        var fromTable = new Recorder("table");
        await using (var connection = await Database.OpenAsync())
        {
            await EventLog.SaveCursorAsync(connection, null, "memory", 0, default);
            await EventLog.SaveCursorAsync(connection, null, "table", 0, default);
        }

        await telemetry.WriteAsync([Point(device, "t", T0, 1.5), Point(device, "n", T0, 2), Point(device, "t", T0 + 5, KvValue.Of("x"))]);
        await attributes.SaveManyAsync([new AttributeChange(device.Seq, AttributeScope.Shared, [new AttributeEntry("mode", T0 + 6, KvValue.Of("eco"))])],
            [new DeviceEventRecord(device.Seq, PlatformEventType.Disconnect, T0 + 7)]);

        // The first reads this process's rows from memory; the second has no signal, as another process would not.
        using var memory = new EventDispatcher(Database, new DeviceDirectory(Devices, Time, signal), [fromMemory], Time, NullLogger<EventDispatcher>.Instance, signal);
        using var table = new EventDispatcher(Database, new DeviceDirectory(Devices, Time), [fromTable], Time, NullLogger<EventDispatcher>.Instance);
        await memory.StartAsync(default);
        await table.StartAsync(default);
        try
        {
            await memory.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await table.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await memory.StopAsync(default);
            await table.StopAsync(default);
        }

        static string Describe(PlatformEvent e) =>
            $"{e.Id} {e.Type} {e.Device.Name} {e.Ts} {e.Committed > 0} {string.Join(',', e.Points)} {e.Scope} {string.Join(',', e.Attributes)} {e.DataJson}";
        Assert.Equal(3, fromTable.Events.Count);
        Assert.Equal(fromTable.Events.Select(Describe), fromMemory.Events.Select(Describe));
        Assert.Equal([PlatformEventType.Telemetry, PlatformEventType.Attributes, PlatformEventType.Disconnect], fromTable.Events.Select(e => e.Type));
    }

    [Fact]
    public async Task AlarmRules_ADurationRule_FiresOnTheRecheck_OnTheFakeClock_AndTheStateSurvivesANewEngine()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        Assert.True(await Devices.UpdateProfileAsync(profile with { AlarmsJson = DurationRule }));
        var feed = new AlarmFeed();
        var heard = new AlarmListener(tenant.Id);
        feed.Add(heard);
        var alarms = new AlarmService(new SqlAlarmStore(Database), Devices, Tenants, Audit, feed, Time, NullLogger<AlarmService>.Instance);
        var signal = new EventSignal();
        var telemetry = new SqlTelemetryStore(Database, signal);
        await using (var connection = await Database.OpenAsync())
        {
            await EventLog.SaveCursorAsync(connection, null, AlarmRulesEngine.ConsumerName, 0, default);
        }

        AlarmRulesEngine NewEngine() => new(Database, Devices, Attributes, telemetry, alarms, Time, NullLogger<AlarmRulesEngine>.Instance, signal)
        {
            RecheckPeriod = TimeSpan.FromMinutes(1),
        };

        // Over the threshold for 4 minutes of data, then the engine is replaced (as by a restart) after writing its state.
        var engine = NewEngine();
        using (var dispatcher = new EventDispatcher(Database, new DeviceDirectory(Devices, Time, signal), [engine], Time, NullLogger<EventDispatcher>.Instance, signal))
        {
            await dispatcher.StartAsync(default);
            await telemetry.WriteAsync([Point(device, "pm25", T0, 90.0)]);
            await telemetry.WriteAsync([Point(device, "pm25", T0 + (4 * 60_000), 91.0)]);
            await dispatcher.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await engine.FlushAsync();
            await dispatcher.StopAsync(default);
        }

        await engine.DisposeAsync();
        Assert.False(heard.First.IsCompleted);

        engine = NewEngine();
        using (var dispatcher = new EventDispatcher(Database, new DeviceDirectory(Devices, Time, signal), [engine], Time, NullLogger<EventDispatcher>.Instance, signal))
        {
            await dispatcher.StartAsync(default);
            // One more point 5 minutes later: 9 minutes held, no alarm yet. The owner exists again from the saved state.
            Time.Advance(TimeSpan.FromMinutes(9));
            await telemetry.WriteAsync([Point(device, "pm25", T0 + (9 * 60_000), 92.0)]);
            await dispatcher.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await engine.FlushAsync();
            Assert.False(heard.First.IsCompleted);

            // No new point: the recheck on server time sees 9 minutes plus the 2 since, and raises it.
            Time.Advance(TimeSpan.FromMinutes(2));
            var raised = await heard.First.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal((AlarmChangeKind.Created, "High PM2.5", AlarmSeverity.Major), (raised.Kind, raised.Info.Alarm.Type, raised.Info.Alarm.Severity));
            Assert.Equal("""{"data":"PM2.5 92"}""", raised.Info.Alarm.DetailsJson);
            await dispatcher.StopAsync(default);
        }

        await engine.DisposeAsync();
    }

    [Fact]
    public async Task AlarmRules_TheRulesLoop_GoesOnWhileTheStatesWaitForTheWriteLock_AndFlushWritesThem()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        Assert.True(await Devices.UpdateProfileAsync(profile with { AlarmsJson = DurationRule }));
        var alarms = new AlarmService(new SqlAlarmStore(Database), Devices, Tenants, Audit, new AlarmFeed(), Time, NullLogger<AlarmService>.Instance);
        var telemetry = new SqlTelemetryStore(Database);
        await using var engine = new AlarmRulesEngine(Database, Devices, Attributes, telemetry, alarms, Time, NullLogger<AlarmRulesEngine>.Instance)
        {
            SnapshotInterval = TimeSpan.FromSeconds(5),
        };
        PlatformEvent Event(long position, long ts, double pm25) => new()
        {
            Position = position, Index = 0, Type = PlatformEventType.Telemetry, Device = device, Ts = ts, Points = [new TelemetryPoint("pm25", ts, KvValue.Of(pm25))],
        };

        // A DURATION under way: progress that the state write keeps.
        await engine.ConsumeAsync([Event(1, T0, 90.0)], 1, default);

        // Every other writer holds the write lock (ingest's commit, an alarm batch): the state write has to wait, but
        // the rules loop takes the next events meanwhile (it used to wait, and every alarm decided meanwhile with it).
        await using (var blocker = await Database.OpenAsync())
        {
            using var turn = Database.Provider == StorageProvider.Sqlite ? await Database.TakeWriteTurnAsync() : default;
            await using var transaction = Database.Provider == StorageProvider.Sqlite ? null : await blocker.BeginTransactionAsync();
            if (transaction is not null)
            {
                using var lockTable = blocker.CreateCommand();
                lockTable.Transaction = transaction;
                lockTable.CommandText = "LOCK TABLE rule_states IN EXCLUSIVE MODE";
                await lockTable.ExecuteNonQueryAsync();
            }

            Time.Advance(TimeSpan.FromSeconds(5));
            await engine.ConsumeAsync([Event(2, T0 + 60_000, 91.0)], 2, default).WaitAsync(TimeSpan.FromSeconds(30));
            await engine.ConsumeAsync([Event(3, T0 + 120_000, 92.0)], 3, default).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0L, await CountAsync("SELECT COUNT(*) FROM rule_states"));
        }

        // The lock released, a flush writes the states at the last position taken.
        await engine.FlushAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1L, await CountAsync("SELECT COUNT(*) FROM rule_states"));
        Assert.Equal(3L, await EventLog.LoadCursorAsync(Database, AlarmRulesEngine.ConsumerName, default));

        async Task<long> CountAsync(string sql)
        {
            await using var connection = await Database.OpenAsync();
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    [Fact]
    public async Task AlarmRules_ADeletedDevice_LosesItsOwner()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(tenant.Id, profile.Id);
        Assert.True(await Devices.UpdateProfileAsync(profile with { AlarmsJson = DurationRule }));
        var alarms = new AlarmService(new SqlAlarmStore(Database), Devices, Tenants, Audit, new AlarmFeed(), Time, NullLogger<AlarmService>.Instance);
        var signal = new EventSignal();
        var telemetry = new SqlTelemetryStore(Database, signal);
        await using (var connection = await Database.OpenAsync())
        {
            await EventLog.SaveCursorAsync(connection, null, AlarmRulesEngine.ConsumerName, 0, default);
        }

        await using var engine = new AlarmRulesEngine(Database, Devices, Attributes, telemetry, alarms, Time, NullLogger<AlarmRulesEngine>.Instance, signal);
        using var dispatcher = new EventDispatcher(Database, new DeviceDirectory(Devices, Time, signal), [engine], Time, NullLogger<EventDispatcher>.Instance, signal);
        await dispatcher.StartAsync(default);
        try
        {
            await telemetry.WriteAsync([Point(device, "pm25", T0, 90.0), Point(other, "pm25", T0, 91.0)]);
            await dispatcher.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(2, engine.DeviceCount);

            Assert.True(await Devices.DeleteDeviceAsync(tenant.Id, device.Id));
            signal.NotifyDeviceChanged(device.Seq);
            await telemetry.WriteAsync([Point(other, "pm25", T0 + 1000, 92.0)]);
            await dispatcher.WaitForAllAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(1, engine.DeviceCount);
        }
        finally
        {
            await dispatcher.StopAsync(default);
        }
    }
}
