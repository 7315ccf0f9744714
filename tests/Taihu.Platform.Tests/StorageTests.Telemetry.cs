using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>Time series: writes, last-write-wins, latest values, history, aggregates, deletion and retention.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Telemetry_EveryTypeRoundTrips()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var values = new Dictionary<string, KvValue>
        {
            ["on"] = KvValue.Of(true),
            ["off"] = KvValue.Of(false),
            ["count"] = KvValue.Of(42L),
            ["max"] = KvValue.Of(long.MaxValue),
            ["min"] = KvValue.Of(long.MinValue),
            ["temp"] = KvValue.Of(21.5),
            ["tiny"] = KvValue.Of(double.Epsilon),
            ["precise"] = KvValue.Of(0.1 + 0.2),
            ["whole"] = KvValue.Of(20.0),
            ["name"] = KvValue.Of("Zürich ☃ \"quoted\" 'single'"),
            ["empty"] = KvValue.Of(""),
            ["config"] = KvValue.OfJson("""{"a":[1,2,{"b":null}]}"""),
        };
        await Telemetry.WriteAsync(values.Select(kv => Point(device, kv.Key, T0, kv.Value)).ToList());

        var latest = (await Telemetry.GetLatestAsync(device.Seq, null)).ToDictionary(p => p.Key);
        Assert.Equal(values.Count, latest.Count);
        foreach (var (key, value) in values)
        {
            Assert.Equal(new TelemetryPoint(key, T0, value), latest[key]);
            var history = Assert.Single(await Telemetry.GetHistoryAsync(device.Seq, key, T0, T0, 10, SortOrder.Ascending));
            Assert.Equal(value, history.Value);
        }

        Assert.Equal(values.Keys.Order(StringComparer.Ordinal), await Telemetry.GetKeysAsync(device.Seq));
    }

    [Fact]
    public async Task Telemetry_SamePointWrittenAgain_LastWriteWins()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "temp", T0, 1L)]);
        await Telemetry.WriteAsync([Point(device, "temp", T0, KvValue.Of("text now"))]);

        var point = Assert.Single(await Telemetry.GetHistoryAsync(device.Seq, "temp", 0, long.MaxValue, 10, SortOrder.Ascending));
        Assert.Equal(KvValue.Of("text now"), point.Value);
        Assert.Equal([new TelemetryPoint("temp", T0, KvValue.Of("text now"))], await Telemetry.GetLatestAsync(device.Seq, null));
    }

    [Fact]
    public async Task Telemetry_DuplicatesInsideOneBatch_LastWriteWins()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        await Telemetry.WriteAsync(
        [
            Point(device, "temp", T0, 1L),
            Point(other, "temp", T0, 100L),
            Point(device, "temp", T0, 2.5),
            Point(device, "temp", T0 - 10, 7L),
            Point(device, "temp", T0, 3L),
            Point(device, "temp", T0 - 10, 8L),
        ]);

        var history = await Telemetry.GetHistoryAsync(device.Seq, "temp", 0, long.MaxValue, 10, SortOrder.Ascending);
        Assert.Equal([new TelemetryPoint("temp", T0 - 10, KvValue.Of(8L)), new TelemetryPoint("temp", T0, KvValue.Of(3L))], history);
        Assert.Equal([new TelemetryPoint("temp", T0, KvValue.Of(3L))], await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Equal([new TelemetryPoint("temp", T0, KvValue.Of(100L))], await Telemetry.GetLatestAsync(other.Seq, null));
    }

    [Fact]
    public async Task Telemetry_LatestOnlyMovesForward()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "temp", T0 + 200, 2L)]);
        await Telemetry.WriteAsync([Point(device, "temp", T0 + 100, 1L)]);
        Assert.Equal([new TelemetryPoint("temp", T0 + 200, KvValue.Of(2L))], await Telemetry.GetLatestAsync(device.Seq, null));

        // One batch with an old and a new point: the newest one is the latest, wherever it sits in the batch.
        await Telemetry.WriteAsync([Point(device, "temp", T0 + 400, 4L), Point(device, "temp", T0 + 300, 3L)]);
        Assert.Equal([new TelemetryPoint("temp", T0 + 400, KvValue.Of(4L))], await Telemetry.GetLatestAsync(device.Seq, null));

        // The same timestamp again is a correction of the latest point.
        await Telemetry.WriteAsync([Point(device, "temp", T0 + 400, 5L)]);
        Assert.Equal([new TelemetryPoint("temp", T0 + 400, KvValue.Of(5L))], await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Equal(4, (await Telemetry.GetHistoryAsync(device.Seq, "temp", 0, long.MaxValue, 10, SortOrder.Ascending)).Count);
    }

    [Fact]
    public async Task Telemetry_Latest_FiltersByKeys()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "a", T0, 1L), Point(device, "b", T0, 2L), Point(device, "c", T0, 3L)]);

        var some = await Telemetry.GetLatestAsync(device.Seq, ["a", "c", "missing"]);
        Assert.Equal(["a", "c"], some.Select(p => p.Key).Order(StringComparer.Ordinal));
        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, ["missing"]));
        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq + 1000, null));
    }

    [Fact]
    public async Task Telemetry_History_RangeLimitAndOrder()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        var points = Enumerable.Range(0, 10).Select(i => Point(device, "v", T0 + (i * 10), (long)i)).ToList();
        points.Add(Point(device, "w", T0 + 20, 99L));
        points.Add(Point(other, "v", T0 + 20, 99L));
        await Telemetry.WriteAsync(points);

        static long[] Values(IReadOnlyList<TelemetryPoint> history) => history.Select(p => p.Value.Long).ToArray();
        Assert.Equal(new long[] { 2L, 3, 4, 5 }, Values(await Telemetry.GetHistoryAsync(device.Seq, "v", T0 + 20, T0 + 50, 100, SortOrder.Ascending)));
        Assert.Equal(new long[] { 5L, 4, 3, 2 }, Values(await Telemetry.GetHistoryAsync(device.Seq, "v", T0 + 20, T0 + 50, 100, SortOrder.Descending)));
        Assert.Equal(new long[] { 2L, 3 }, Values(await Telemetry.GetHistoryAsync(device.Seq, "v", T0 + 20, T0 + 50, 2, SortOrder.Ascending)));
        Assert.Equal(new long[] { 9L, 8, 7 }, Values(await Telemetry.GetHistoryAsync(device.Seq, "v", 0, long.MaxValue, 3, SortOrder.Descending)));
        Assert.Equal(new long[] { 2L, 3, 4 }, Values(await Telemetry.GetHistoryAsync(device.Seq, "v", T0 + 15, T0 + 45, 100, SortOrder.Ascending)));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "v", T0 + 91, T0 + 1000, 100, SortOrder.Ascending));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "never-written", 0, long.MaxValue, 100, SortOrder.Ascending));
        // A limit of nothing is nothing, on both providers (SQLite reads LIMIT -1 as no limit, PostgreSQL refuses it).
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "v", 0, long.MaxValue, 0, SortOrder.Ascending));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "v", 0, long.MaxValue, -1, SortOrder.Ascending));
        Assert.Equal([T0 + 20], (await Telemetry.GetHistoryAsync(device.Seq, "w", 0, long.MaxValue, 100, SortOrder.Ascending)).Select(p => p.Ts));
    }

    [Fact]
    public async Task Telemetry_Aggregates_PerInterval_StampedMidInterval()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync(
        [
            Point(device, "temp", T0 - 1, 1000L),   // before the range
            Point(device, "temp", T0, 10L),
            Point(device, "temp", T0 + 500, 20L),
            Point(device, "temp", T0 + 600, KvValue.Of("n/a")),
            Point(device, "temp", T0 + 999, 30L),
            // [T0+1000, T0+2000) has no points: no row for it.
            Point(device, "temp", T0 + 2000, 1.5),
            Point(device, "temp", T0 + 2500, 4L),
            Point(device, "temp", T0 + 3000, 7L),   // the last interval is cut short by the end: [T0+3000, T0+3500)
            Point(device, "temp", T0 + 3499, 9L),
            Point(device, "temp", T0 + 3500, 100L), // the end is exclusive
        ]);

        Task<IReadOnlyList<TelemetryPoint>> Aggregate(Aggregation aggregation) =>
            Telemetry.GetAggregatesAsync(device.Seq, "temp", T0, T0 + 3500, 1000, aggregation);
        static TelemetryPoint P(long ts, KvValue value) => new("temp", ts, value);

        Assert.Equal([P(T0 + 500, KvValue.Of(20.0)), P(T0 + 2500, KvValue.Of(2.75)), P(T0 + 3250, KvValue.Of(8.0))], await Aggregate(Aggregation.Avg));
        // Integers stay integers; an interval with a double gives a double, as in ThingsBoard.
        Assert.Equal([P(T0 + 500, KvValue.Of(10L)), P(T0 + 2500, KvValue.Of(1.5)), P(T0 + 3250, KvValue.Of(7L))], await Aggregate(Aggregation.Min));
        Assert.Equal([P(T0 + 500, KvValue.Of(30L)), P(T0 + 2500, KvValue.Of(4.0)), P(T0 + 3250, KvValue.Of(9L))], await Aggregate(Aggregation.Max));
        Assert.Equal([P(T0 + 500, KvValue.Of(60L)), P(T0 + 2500, KvValue.Of(5.5)), P(T0 + 3250, KvValue.Of(16L))], await Aggregate(Aggregation.Sum));
        // COUNT counts every value, text included.
        Assert.Equal([P(T0 + 500, KvValue.Of(4L)), P(T0 + 2500, KvValue.Of(2L)), P(T0 + 3250, KvValue.Of(2L))], await Aggregate(Aggregation.Count));
    }

    [Fact]
    public async Task Telemetry_Aggregates_OneIntervalForTheWholeRange()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "v", T0 + 1, 2L), Point(device, "v", T0 + 7, 4L)]);

        var avg = Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "v", T0, T0 + 10, 10, Aggregation.Avg));
        Assert.Equal(new TelemetryPoint("v", T0 + 5, KvValue.Of(3.0)), avg);
        // An interval longer than the range: one interval, stamped in the middle of the range.
        var sum = Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "v", T0, T0 + 10, 60_000, Aggregation.Sum));
        Assert.Equal(new TelemetryPoint("v", T0 + 5, KvValue.Of(6L)), sum);
    }

    [Fact]
    public async Task Telemetry_Aggregates_OfBigIntegers_AreExact()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        const long big = (1L << 53) + 1; // the first integer a double cannot hold
        await Telemetry.WriteAsync([Point(device, "n", T0, big), Point(device, "n", T0 + 1, big + 2), Point(device, "n", T0 + 2, long.MaxValue)]);

        Assert.Equal(KvValue.Of(big), Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "n", T0, T0 + 2, 10, Aggregation.Min)).Value);
        Assert.Equal(KvValue.Of(big + 2), Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "n", T0, T0 + 2, 10, Aggregation.Max)).Value);
        Assert.Equal(KvValue.Of((2 * big) + 2), Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "n", T0, T0 + 2, 10, Aggregation.Sum)).Value);

        // A sum past the 64-bit range is a double, not an error or a wrapped number.
        var overflow = Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "n", T0, T0 + 3, 10, Aggregation.Sum)).Value;
        Assert.Equal(DataType.Double, overflow.Type);
        Assert.Equal((2.0 * big) + 2 + long.MaxValue, overflow.Double, 1e-9 * overflow.Double);
    }

    [Theory]
    [InlineData(long.MinValue)]
    [InlineData(-1_000_000_000_000_000_000)]
    [InlineData(-1)]
    public async Task Telemetry_Aggregates_FromANegativeStart_KeepTheirIntervals(long start)
    {
        // A start far below zero must neither overflow ts - start (PostgreSQL fails on it) nor move the intervals.
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "v", T0, 1L), Point(device, "v", T0 + 400, 2L), Point(device, "v", T0 + 2500, 4L)]);
        const long interval = 1000;
        // The same intervals, from the last boundary at or below the first point.
        var boundary = (long)(start + ((((Int128)T0 - start) / interval) * interval));

        var fromNegative = await Telemetry.GetAggregatesAsync(device.Seq, "v", start, T0 + 3000, interval, Aggregation.Sum);
        var fromBoundary = await Telemetry.GetAggregatesAsync(device.Seq, "v", boundary, T0 + 3000, interval, Aggregation.Sum);
        Assert.Equal(fromBoundary, fromNegative);
        Assert.Equal(7, fromNegative.Sum(p => p.Value.Long));
    }

    [Fact]
    public async Task Telemetry_Aggregates_OverTheWidestRange()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "v", 0, 1L), Point(device, "v", T0, 2L)]);

        // One interval [-1, long.MaxValue - 1), stamped in its middle although end - start does not fit in 64 bits.
        var all = Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "v", -1, long.MaxValue, long.MaxValue, Aggregation.Count));
        Assert.Equal(new TelemetryPoint("v", -1 + (long.MaxValue / 2), KvValue.Of(2L)), all);
        var fromZero = Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "v", 0, long.MaxValue, long.MaxValue, Aggregation.Sum));
        Assert.Equal(new TelemetryPoint("v", long.MaxValue / 2, KvValue.Of(3L)), fromZero);
    }

    [Fact]
    public async Task Telemetry_Aggregates_OfTextOnly_AreEmpty_ButCounted()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "s", T0, KvValue.Of("a")), Point(device, "s", T0 + 1, KvValue.Of(true))]);

        Assert.Empty(await Telemetry.GetAggregatesAsync(device.Seq, "s", T0, T0 + 10, 10, Aggregation.Avg));
        Assert.Empty(await Telemetry.GetAggregatesAsync(device.Seq, "s", T0, T0 + 10, 10, Aggregation.Max));
        Assert.Equal(KvValue.Of(2L), Assert.Single(await Telemetry.GetAggregatesAsync(device.Seq, "s", T0, T0 + 10, 10, Aggregation.Count)).Value);
        Assert.Empty(await Telemetry.GetAggregatesAsync(device.Seq, "unknown", T0, T0 + 10, 10, Aggregation.Count));
    }

    [Fact]
    public async Task Telemetry_Aggregates_RefuseANonPositiveInterval()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var e = await Assert.ThrowsAsync<PlatformException>(() => Telemetry.GetAggregatesAsync(device.Seq, "v", T0, T0 + 10, 0, Aggregation.Avg));
        Assert.Equal(400, e.Status);
    }

    [Fact]
    public async Task Telemetry_DeleteRange_RecomputesLatest()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync(
        [
            Point(device, "a", T0, 1L), Point(device, "a", T0 + 10, 2L), Point(device, "a", T0 + 20, 3L),
            Point(device, "b", T0 + 16, 1L), Point(device, "b", T0 + 30, 3L),
            Point(device, "c", T0, 1L),
        ]);

        // The newest point of "a" goes: the one before it becomes the latest. "b" loses an old point only.
        Assert.Equal(2, await Telemetry.DeleteAsync(device.Seq, ["a", "b", "never-written"], T0 + 15, T0 + 20));
        Assert.Equal(0, await Telemetry.DeleteAsync(device.Seq, ["c"], T0 + 1, T0 + 100));
        var latest = (await Telemetry.GetLatestAsync(device.Seq, null)).ToDictionary(p => p.Key);
        Assert.Equal(new TelemetryPoint("a", T0 + 10, KvValue.Of(2L)), latest["a"]);
        Assert.Equal(new TelemetryPoint("b", T0 + 30, KvValue.Of(3L)), latest["b"]);
        Assert.Equal(new TelemetryPoint("c", T0, KvValue.Of(1L)), latest["c"]);

        // Everything of a key gone: no latest value either.
        Assert.Equal(2, await Telemetry.DeleteAsync(device.Seq, ["a"], 0, long.MaxValue));
        Assert.Equal(["b", "c"], (await Telemetry.GetLatestAsync(device.Seq, null)).Select(p => p.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Telemetry_DeleteRange_LeavesOtherDevicesAlone()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        await Telemetry.WriteAsync([Point(device, "a", T0, 1L), Point(other, "a", T0, 2L)]);

        Assert.Equal(1, await Telemetry.DeleteAsync(device.Seq, ["a"], 0, long.MaxValue));
        Assert.Equal([new TelemetryPoint("a", T0, KvValue.Of(2L))], await Telemetry.GetLatestAsync(other.Seq, null));
        Assert.Single(await Telemetry.GetHistoryAsync(other.Seq, "a", 0, long.MaxValue, 10, SortOrder.Ascending));
    }

    [Fact]
    public async Task Telemetry_Retention_DeletesOldPointsOfOneTenant_KeepsLatest()
    {
        var (tenant, profile, device) = await NewTenantWithDeviceAsync();
        var second = await NewDeviceAsync(tenant.Id, profile.Id);
        var (_, _, foreign) = await NewTenantWithDeviceAsync();
        // Retention deletes whole minutes (a minute's rollup goes with its points): cut on a minute boundary.
        const long Cut = T0 - (T0 % 60_000);
        await Telemetry.WriteAsync(
        [
            Point(device, "v", Cut - 2000, 1L), Point(device, "v", Cut - 1000, 2L),
            Point(device, "v", Cut, 3L), Point(device, "v", Cut + 1000, 4L),
            Point(second, "w", Cut - 5000, 5L),
            Point(foreign, "v", Cut - 5000, 6L),
        ]);

        Assert.Equal(3, await Telemetry.DeleteOlderThanAsync(tenant.Id, Cut));

        Assert.Equal([Cut, Cut + 1000], (await Telemetry.GetHistoryAsync(device.Seq, "v", 0, long.MaxValue, 10, SortOrder.Ascending)).Select(p => p.Ts));
        Assert.Empty(await Telemetry.GetHistoryAsync(second.Seq, "w", 0, long.MaxValue, 10, SortOrder.Ascending));
        // ThingsBoard keeps the last known value after its history expires.
        Assert.Equal([new TelemetryPoint("w", Cut - 5000, KvValue.Of(5L))], await Telemetry.GetLatestAsync(second.Seq, null));
        Assert.Single(await Telemetry.GetHistoryAsync(foreign.Seq, "v", 0, long.MaxValue, 10, SortOrder.Ascending));
    }

    [Fact]
    public async Task Telemetry_LargeBatchAcrossDevices()
    {
        var (_, profile, first) = await NewTenantWithDeviceAsync();
        var devices = new List<Device> { first };
        for (var i = 0; i < 4; i++)
        {
            devices.Add(await NewDeviceAsync(first.TenantId, profile.Id));
        }

        var points = new List<DevicePoint>();
        for (var i = 0; i < 5_000; i++)
        {
            var device = devices[i % devices.Count];
            points.Add(Point(device, "k" + (i % 7), T0 + (i / 35), (long)i));
        }

        await Telemetry.WriteAsync(points);

        var expectedRows = points.Select(p => (p.DeviceSeq, p.Point.Key, p.Point.Ts)).Distinct().Count();
        var rows = 0;
        foreach (var device in devices)
        {
            foreach (var key in await Telemetry.GetKeysAsync(device.Seq))
            {
                rows += (await Telemetry.GetHistoryAsync(device.Seq, key, 0, long.MaxValue, 10_000, SortOrder.Ascending)).Count;
            }
        }

        Assert.Equal(expectedRows, rows);
        var last = points.Where(p => p.DeviceSeq == first.Seq && p.Point.Key == "k0").MaxBy(p => (p.Point.Ts, p.Point.Value.Long));
        Assert.Equal(last.Point, (await Telemetry.GetLatestAsync(first.Seq, ["k0"]))[0]);
    }

    [Fact]
    public async Task Telemetry_KeysAreSharedBetweenStoreInstances()
    {
        // Two nodes (or a restart) each with their own key cache, writing the same new key.
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var node1 = new SqlTelemetryStore(Database);
        var node2 = new SqlTelemetryStore(Database);
        await Task.WhenAll(node1.WriteAsync([Point(device, "shared", T0, 1L)]), node2.WriteAsync([Point(device, "shared", T0 + 1, 2L)]));

        var fresh = new SqlTelemetryStore(Database);
        Assert.Equal([T0, T0 + 1], (await fresh.GetHistoryAsync(device.Seq, "shared", 0, long.MaxValue, 10, SortOrder.Ascending)).Select(p => p.Ts));
        Assert.Equal([new TelemetryPoint("shared", T0 + 1, KvValue.Of(2L))], await new SqlTelemetryStore(Database).GetLatestAsync(device.Seq, null));
    }

    [Fact]
    public async Task Telemetry_AnotherInstance_ReadsWhatWasStored_SoItsMinutesCountEachPointOnce()
    {
        // A device moved to another node (or the node restarted): the new store instance has not seen its points,
        // and must read the newest stored per key to tell a resent or late point from a new one.
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        var minute = T0 - (T0 % 60_000);
        await Telemetry.WriteAsync([Point(device, "temp", minute + 1, 1L), Point(device, "temp", minute + 10, 2L), Point(device, "hum", minute + 10, 50L)]);

        var moved = new SqlTelemetryStore(Database);
        await moved.WriteAsync(
        [
            Point(device, "temp", minute + 10, 2L),  // sent again: no second count
            Point(device, "temp", minute + 5, 3L),   // late
            Point(device, "hum", minute + 20, 60L),  // newer
            Point(other, "temp", minute + 1, 7L),    // never stored before
        ]);

        Task<IReadOnlyList<TelemetryPoint>> Minute(SqlTelemetryStore store, Device d, string key, Aggregation aggregation) =>
            store.GetAggregatesAsync(d.Seq, key, minute, minute + 60_000, 60_000, aggregation);
        var fresh = new SqlTelemetryStore(Database);
        Assert.Equal(KvValue.Of(3L), Assert.Single(await Minute(fresh, device, "temp", Aggregation.Count)).Value);
        Assert.Equal(KvValue.Of(6L), Assert.Single(await Minute(fresh, device, "temp", Aggregation.Sum)).Value);
        Assert.Equal(KvValue.Of(2L), Assert.Single(await Minute(fresh, device, "hum", Aggregation.Count)).Value);
        Assert.Equal(KvValue.Of(7L), Assert.Single(await Minute(fresh, other, "temp", Aggregation.Sum)).Value);
        Assert.Equal(new TelemetryPoint("hum", minute + 20, KvValue.Of(60L)), (await fresh.GetLatestAsync(device.Seq, ["hum"]))[0]);
    }

    [Fact]
    public async Task Telemetry_EmptyBatch_IsNothing()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([]);
        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, null));
    }
}
