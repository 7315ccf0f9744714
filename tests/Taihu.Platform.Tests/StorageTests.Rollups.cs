using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// Aggregates over whole minutes come from the per-minute rollups; they must always equal the aggregates of the
/// points themselves, whatever order points arrive in, when they are rewritten, and after deletions.
/// </summary>
public abstract partial class StorageTests
{
    private const long Minute0 = T0 - (T0 % 60_000);

    [Theory]
    [InlineData(Aggregation.Avg)]
    [InlineData(Aggregation.Min)]
    [InlineData(Aggregation.Max)]
    [InlineData(Aggregation.Sum)]
    [InlineData(Aggregation.Count)]
    public async Task Rollups_MatchTheAggregatesOfThePoints_ThroughLateWritesRewritesAndDeletes(Aggregation aggregation)
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var random = new Random(7);
        var stored = new Dictionary<long, KvValue>();
        // Ten batches over ten minutes: mostly in order, some late, some rewriting a point, integers and doubles
        // mixed, and now and then a string (counted, not summed).
        for (var batch = 0; batch < 10; batch++)
        {
            var points = new List<DevicePoint>();
            for (var i = 0; i < 40; i++)
            {
                var ts = batch % 3 == 2 || i % 7 == 0
                    ? Minute0 + random.Next(0, 600_000)                       // late, or a rewrite
                    : Minute0 + (batch * 60_000) + (i * 1_400);                 // in order
                var value = (i % 11) switch
                {
                    0 => KvValue.Of("text"),
                    1 or 2 or 3 => KvValue.Of(random.NextDouble() * 100),
                    _ => KvValue.Of((long)random.Next(-1000, 1000)),
                };
                points.Add(Point(device, "v", ts, value));
                stored[ts] = value;
            }

            await Telemetry.WriteAsync(points);
        }

        await Telemetry.DeleteAsync(device.Seq, ["v"], Minute0 + 125_000, Minute0 + 190_500);
        foreach (var ts in stored.Keys.Where(ts => ts >= Minute0 + 125_000 && ts <= Minute0 + 190_500).ToList())
        {
            stored.Remove(ts);
        }

        // Whole minutes, 2-minute and 5-minute intervals: the rollup path.
        foreach (var interval in new[] { 60_000L, 120_000L, 300_000L })
        {
            var actual = await Telemetry.GetAggregatesAsync(device.Seq, "v", Minute0, Minute0 + 600_000, interval, aggregation);
            var expected = Expected(stored, Minute0, Minute0 + 600_000, interval, aggregation);
            Assert.Equal(expected.Count, actual.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                Assert.Equal(expected[i].Ts, actual[i].Ts);
                Assert.Equal(expected[i].Value.Type, actual[i].Value.Type);
                Assert.Equal(expected[i].Value.AsNumber!.Value, actual[i].Value.AsNumber!.Value, 6);
            }
        }
    }

    [Fact]
    public async Task Rollups_AMinuteOfStringsOnly_HasNoNumericAggregate_ButCounts()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Telemetry.WriteAsync([Point(device, "s", Minute0 + 1000, KvValue.Of("a")), Point(device, "s", Minute0 + 61_000, 5L)]);
        var avg = await Telemetry.GetAggregatesAsync(device.Seq, "s", Minute0, Minute0 + 120_000, 60_000, Aggregation.Avg);
        Assert.Equal([Minute0 + 90_000], avg.Select(p => p.Ts));
        var count = await Telemetry.GetAggregatesAsync(device.Seq, "s", Minute0, Minute0 + 120_000, 60_000, Aggregation.Count);
        Assert.Equal([1L, 1L], count.Select(p => p.Value.Long));
    }

    [Fact]
    public async Task Rollups_StayRight_AfterABatchLargerThanTheWriterKeepsItsWorkingSetsFor()
    {
        // The writer keeps a batch's working sets for the next batch and shrinks them after a very large one: the
        // batches after it (in order, then late and rewriting) must still count every point once.
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var stored = new Dictionary<long, KvValue>();
        var large = new List<DevicePoint>();
        for (var i = 0; i < 20_000; i++)
        {
            large.Add(Point(device, "v", Minute0 + (i * 20), (long)i));
            stored[Minute0 + (i * 20)] = KvValue.Of((long)i);
        }

        await Telemetry.WriteAsync(large);
        await Telemetry.WriteAsync([Point(device, "v", Minute0 + 400_001, 5L), Point(device, "v", Minute0 + 400_021, 6L)]);
        await Telemetry.WriteAsync([Point(device, "v", Minute0 + 30, -3L), Point(device, "v", Minute0 + 40, 1_000_000L)]);
        stored[Minute0 + 400_001] = KvValue.Of(5L);
        stored[Minute0 + 400_021] = KvValue.Of(6L);
        stored[Minute0 + 30] = KvValue.Of(-3L);
        stored[Minute0 + 40] = KvValue.Of(1_000_000L);

        foreach (var aggregation in new[] { Aggregation.Count, Aggregation.Sum })
        {
            var actual = await Telemetry.GetAggregatesAsync(device.Seq, "v", Minute0, Minute0 + 480_000, 60_000, aggregation);
            var expected = Expected(stored, Minute0, Minute0 + 480_000, 60_000, aggregation);
            Assert.Equal(expected.Select(p => (p.Ts, p.Value.Long)), actual.Select(p => (p.Ts, p.Value.Long)));
        }
    }

    private static List<TelemetryPoint> Expected(Dictionary<long, KvValue> stored, long start, long end, long interval, Aggregation aggregation)
    {
        var result = new List<TelemetryPoint>();
        foreach (var bucket in stored.Where(p => p.Key >= start && p.Key < end).GroupBy(p => (p.Key - start) / interval).OrderBy(g => g.Key))
        {
            var stamp = start + (bucket.Key * interval) + (interval / 2);
            if (aggregation == Aggregation.Count)
            {
                result.Add(new TelemetryPoint("v", stamp, KvValue.Of((long)bucket.Count())));
                continue;
            }

            var numbers = bucket.Select(p => p.Value).Where(v => v.Type is DataType.Long or DataType.Double).ToList();
            if (numbers.Count == 0)
            {
                continue;
            }

            var allLong = numbers.All(v => v.Type == DataType.Long);
            var value = aggregation switch
            {
                Aggregation.Min when allLong => KvValue.Of(numbers.Min(v => v.Long)),
                Aggregation.Max when allLong => KvValue.Of(numbers.Max(v => v.Long)),
                Aggregation.Sum when allLong => KvValue.Of(numbers.Sum(v => v.Long)),
                Aggregation.Min => KvValue.Of(numbers.Min(v => v.AsNumber!.Value)),
                Aggregation.Max => KvValue.Of(numbers.Max(v => v.AsNumber!.Value)),
                Aggregation.Sum => KvValue.Of(numbers.Sum(v => v.AsNumber!.Value)),
                _ => KvValue.Of(numbers.Average(v => v.AsNumber!.Value)),
            };
            result.Add(new TelemetryPoint("v", stamp, value));
        }

        return result;
    }
}

/// <summary>Purging a device's data a slice at a time.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Purge_DeletesEveryPointRollupAndLatestValueOfTheDevice_InSlices_AndNothingElse()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        var points = new List<DevicePoint>();
        for (var i = 0; i < 45_000; i++)
        {
            points.Add(Point(device, "a", Minute0 + i, (long)i));
        }

        points.Add(Point(device, "b", Minute0, 1.5));
        points.Add(Point(other, "a", Minute0, 7L));
        await Telemetry.WriteAsync(points);

        Assert.Equal(45_001, await Telemetry.PurgeDeviceAsync(device.Seq));

        Assert.Empty(await Telemetry.GetLatestAsync(device.Seq, null));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "a", 0, long.MaxValue, 10, SortOrder.Ascending));
        Assert.Empty(await Telemetry.GetAggregatesAsync(device.Seq, "a", Minute0, Minute0 + 60_000, 60_000, Aggregation.Count));
        Assert.Equal([new TelemetryPoint("a", Minute0, KvValue.Of(7L))], await Telemetry.GetLatestAsync(other.Seq, null));
        Assert.Equal(1L, (await Telemetry.GetAggregatesAsync(other.Seq, "a", Minute0, Minute0 + 60_000, 60_000, Aggregation.Count)).Single().Value.Long);

        // Written again afterwards, the device's rollups start from nothing.
        await Telemetry.WriteAsync([Point(device, "a", Minute0 + 5, 3L)]);
        Assert.Equal(1L, (await Telemetry.GetAggregatesAsync(device.Seq, "a", Minute0, Minute0 + 60_000, 60_000, Aggregation.Count)).Single().Value.Long);
    }
}

/// <summary>Latest values: the newest point wins whatever order batches come in, and outlives its history.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Latest_IsTheNewestPoint_AcrossBatches_AndSurvivesRetention()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        // Three batches, the last one late.
        await Telemetry.WriteAsync([Point(device, "v", Minute0 + 1000, 1L)]);
        await Telemetry.WriteAsync([Point(device, "v", Minute0 + 2000, 2L)]);
        await Telemetry.WriteAsync([Point(device, "v", Minute0 + 1500, 9L)]);
        Assert.Equal([new TelemetryPoint("v", Minute0 + 2000, KvValue.Of(2L))], await Telemetry.GetLatestAsync(device.Seq, null));

        // History expires; the last value stored stays the latest.
        Assert.Equal(3, await Telemetry.DeleteOlderThanAsync(tenant.Id, Minute0 + 60_000));
        Assert.Empty(await Telemetry.GetHistoryAsync(device.Seq, "v", 0, long.MaxValue, 10, SortOrder.Ascending));
        Assert.Equal([new TelemetryPoint("v", Minute0 + 2000, KvValue.Of(2L))], await Telemetry.GetLatestAsync(device.Seq, null));
    }
}
