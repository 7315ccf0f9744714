using Taihu.Bench.Measurement;

namespace Taihu.Bench.Tests;

public class ProcessSamplerTests
{
    [Fact]
    public void Parses_cpu_time_and_resident_memory_from_proc_text()
    {
        // A command name with spaces and parentheses must not shift the fields.
        const string stat = "1234 (dotnet (x) y) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 10 0 123 456 789";
        const string status = "Name:\tdotnet\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\nThreads:\t10\n";
        var sample = ProcessSampler.Parse(stat, status, timestamp: 42);
        Assert.Equal(TimeSpan.FromSeconds(3), sample.CpuTime); // (250 + 50) ticks at 100 Hz
        Assert.Equal(2048 * 1024, sample.ResidentBytes);
        Assert.Equal(42, sample.WallTimestamp);
    }

    [Fact]
    public void Reads_this_process()
    {
        var sample = ProcessSampler.Sample(Environment.ProcessId);
        Assert.NotNull(sample);
        Assert.True(sample.Value.ResidentBytes > 0);
        Assert.True(sample.Value.CpuTime > TimeSpan.Zero);
    }

    [Fact]
    public void A_missing_process_gives_no_sample()
    {
        Assert.Null(ProcessSampler.Sample(int.MaxValue));
    }

    [Fact]
    public void Cpu_percent_is_cpu_time_over_wall_time()
    {
        var frequency = System.Diagnostics.Stopwatch.Frequency;
        var from = new ProcessSample(TimeSpan.FromSeconds(1), 0, 0);
        var to = new ProcessSample(TimeSpan.FromSeconds(1.5), 0, frequency); // one second later
        Assert.Equal(50, ProcessSampler.CpuPercent(from, to), precision: 6);
    }
}

public class MetricsScraperTests
{
    [Fact]
    public void Finds_a_counter_with_labels_and_ignores_longer_names_and_comments()
    {
        const string text = """
            # HELP dotnet_gc_heap_total_allocated_bytes_total The approximate number of bytes
            # TYPE dotnet_gc_heap_total_allocated_bytes_total counter
            dotnet_gc_heap_total_allocated_bytes_total_other 5
            dotnet_gc_heap_total_allocated_bytes_total{otel_scope_name="System.Runtime"} 8798296
            """;
        Assert.Equal(8_798_296, Taihu.Bench.Measurement.MetricsScraper.Find(text, Taihu.Bench.Measurement.MetricsScraper.AllocatedBytesMetric));
    }

    [Fact]
    public void Histogram_percentiles_come_from_the_buckets_counted_between_two_readings()
    {
        const string before = """
            # TYPE taihu_live_commit_to_frame_milliseconds histogram
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="5"} 10
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="50"} 10
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="+Inf"} 10
            taihu_live_commit_to_frame_milliseconds_count{otel_scope_name="Taihu.Platform"} 10
            """;
        // 100 more: 50 within 1 ms (a bound the first reading did not have), 90 within 5 ms, 99 within 50 ms, 1 past
        // the last bound;
        // the buckets come in any order, and a line with no bound, a bad bound or a value that is not a number is
        // passed over.
        const string after = """
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="+Inf"} 110
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="50"} 109
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform"} 7
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="5"} 100
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="20"} nonsense
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="abc"} 3
            taihu_live_commit_to_frame_milliseconds_bucket{otel_scope_name="Taihu.Platform",le="7} 3
            taihu_live_commit_to_frame_milliseconds_bucket{le="1",otel_scope_name="Taihu.Platform"} 50
            """;
        var start = Taihu.Bench.Measurement.MetricsScraper.Buckets(before, "taihu_live_commit_to_frame_milliseconds");
        var end = Taihu.Bench.Measurement.MetricsScraper.Buckets(after, "taihu_live_commit_to_frame_milliseconds");
        Assert.Equal(1, Taihu.Bench.Measurement.MetricsScraper.Percentile(start, end, 50));
        Assert.Equal(5, Taihu.Bench.Measurement.MetricsScraper.Percentile(start, end, 90));
        Assert.Equal(50, Taihu.Bench.Measurement.MetricsScraper.Percentile(start, end, 99));
        Assert.Equal(double.PositiveInfinity, Taihu.Bench.Measurement.MetricsScraper.Percentile(start, end, 99.5));
        Assert.Null(Taihu.Bench.Measurement.MetricsScraper.Percentile(start, start, 99));
        Assert.Null(Taihu.Bench.Measurement.MetricsScraper.Percentile([], [], 99));
    }

    [Fact]
    public void A_missing_counter_is_null()
    {
        Assert.Null(Taihu.Bench.Measurement.MetricsScraper.Find("other_metric 1\n", "dotnet_gc_heap_total_allocated_bytes_total"));
    }
}
