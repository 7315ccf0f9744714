using Taihu.Bench.Measurement;

namespace Taihu.Bench.Tests;

public class RuntimeCountersTests
{
    // As Taihu's /metrics (OpenTelemetry's Prometheus exporter, .NET's System.Runtime meter) writes them.
    private const string Before = """
        # TYPE dotnet_gc_heap_total_allocated_bytes_total counter
        dotnet_gc_heap_total_allocated_bytes_total 1000000 1733350000000
        # TYPE dotnet_gc_collections_total counter
        dotnet_gc_collections_total{gc_heap_generation="gen0"} 10 1733350000000
        dotnet_gc_collections_total{gc_heap_generation="gen1"} 2 1733350000000
        dotnet_gc_collections_total{gc_heap_generation="gen2"} 1 1733350000000
        dotnet_gc_pause_time_seconds_total 0.5 1733350000000
        dotnet_process_cpu_time_seconds_total{cpu_mode="system"} 4 1733350000000
        dotnet_process_cpu_time_seconds_total{cpu_mode="user"} 6 1733350000000
        dotnet_thread_pool_thread_count_total{otel_scope_name="System.Runtime"} 3 1733350000000
        dotnet_monitor_lock_contentions_total 7 1733350000000
        dotnet_exceptions_total{error_type="System.TimeoutException"} 1 1733350000000
        """;

    private const string After = """
        dotnet_gc_heap_total_allocated_bytes_total 21000000 1733350030000
        dotnet_gc_collections_total{gc_heap_generation="gen0"} 30 1733350030000
        dotnet_gc_collections_total{gc_heap_generation="gen1"} 5 1733350030000
        dotnet_gc_collections_total{gc_heap_generation="gen2"} 1 1733350030000
        dotnet_gc_pause_time_seconds_total 0.75 1733350030000
        dotnet_process_cpu_time_seconds_total{cpu_mode="system"} 6 1733350030000
        dotnet_process_cpu_time_seconds_total{cpu_mode="user"} 9 1733350030000
        dotnet_thread_pool_thread_count_total{otel_scope_name="System.Runtime"} 5 1733350030000
        dotnet_monitor_lock_contentions_total 9 1733350030000
        dotnet_exceptions_total{error_type="System.TimeoutException"} 2 1733350030000
        dotnet_exceptions_total{error_type="System.OperationCanceledException"} 3 1733350030000
        """;

    [Fact]
    public void Reads_the_counters_by_generation_and_cpu_mode()
    {
        var counters = RuntimeCounters.Parse(Before);
        Assert.Equal(new RuntimeCounters(1_000_000, 10, 2, 1, 0.5, 6, 4, 3, 7, 1), counters);
    }

    [Fact]
    public void Describes_a_window_per_operation()
    {
        var text = RuntimeCounters.Parse(After)!.Value.Describe(RuntimeCounters.Parse(Before)!.Value, 10_000, "call");
        Assert.Equal("server per call: 2000 B allocated, 500 µs CPU (300 user, 200 system); collections gen0 20, gen1 3, gen2 0, paused 250 ms in all; "
            + "thread pool 5 threads at the end; 2 lock contentions, 4 exceptions thrown", text);
    }

    [Fact]
    public void Text_without_the_allocation_counter_gives_nothing()
    {
        Assert.Null(RuntimeCounters.Parse("# nothing here\nother_metric 1\n"));
        Assert.Null(RuntimeCounters.Parse(null));
    }
}
