using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Mqtt.Buffers;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// One message's points on their way to the store. Pooled: the parse fills <see cref="Points"/>, the writer takes
/// it, and it doubles as the awaitable that completes when its batch has committed, so acknowledging after the
/// commit costs no allocation per message.
/// </summary>
public sealed class IngestRequest : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private TelemetryIngest? _owner;

    public long DeviceSeq { get; set; }

    /// <summary>The device's tenant, for the tenant's count of points stored (Guid.Empty: not counted for a tenant).</summary>
    public Guid TenantId { get; set; }

    public List<TelemetryPoint> Points { get; } = [];

    internal bool Waiting { get; set; }

    internal void Attach(TelemetryIngest owner) => _owner = owner;

    internal ValueTask AsValueTask() => new(this, _core.Version);

    internal void Complete(Exception? error)
    {
        if (error is null)
        {
            _core.SetResult(true);
        }
        else
        {
            _core.SetException(error);
        }
    }

    internal void Reset()
    {
        Points.Clear();
        DeviceSeq = 0;
        TenantId = Guid.Empty;
        Waiting = false;
        _core.Reset();
    }

    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            _owner?.Return(this);
        }
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>
/// The telemetry pipeline: a bounded queue drained by one writer, one transaction per batch. A publisher whose
/// message is queued waits (with <c>Ingest:AckAfterCommit</c>) until the batch holding it has committed; when the
/// queue is full, publishers wait for room, which slows the devices rather than losing their data.
/// </summary>
public sealed partial class TelemetryIngest : IAsyncDisposable
{
    private readonly Channel<IngestRequest> _queue;
    private readonly ITelemetryStore _store;
    private readonly IngestOptions _options;
    private readonly ILogger<TelemetryIngest> _logger;
    private readonly LiveFeed? _feed;
    private readonly BoundedPool<IngestRequest> _pool = new(4096);
    private readonly List<IngestRequest> _batch = [];
    private readonly List<DevicePoint> _points = [];
    private readonly Task _writer;
    private readonly Histogram<int> _batchSize;
    private readonly Histogram<double> _commitLatency;
    private readonly Counter<long> _pointsStored;
    private long _totalPointsStored;

    // Each tenant's points committed since the process started, written by the one writer and read by the console's
    // Home. An entry is made the first time a tenant's points are stored and stays (a few bytes per tenant).
    private readonly ConcurrentDictionary<Guid, StrongBox<long>> _tenantPointsStored = new();
    private int _depth;

    public TelemetryIngest(ITelemetryStore store, IOptions<IngestOptions> options, ILogger<TelemetryIngest> logger, IMeterFactory? meters = null, LiveFeed? feed = null)
    {
        _store = store;
        _feed = feed;
        _options = options.Value;
        _logger = logger;
        _queue = Channel.CreateBounded<IngestRequest>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var meter = meters?.Create(PlatformMetrics.MeterName) ?? new Meter(PlatformMetrics.MeterName);
        meter.CreateObservableGauge("taihu.ingest.queue.depth", () => Volatile.Read(ref _depth), "{message}", "Telemetry messages waiting for the writer.");
        _batchSize = meter.CreateHistogram<int>("taihu.ingest.batch.size", "{point}", "Points written per transaction.");
        _commitLatency = meter.CreateHistogram<double>("taihu.ingest.commit.duration", "s", "Time to write and commit one batch.");
        _pointsStored = meter.CreateCounter<long>("taihu.ingest.points", "{point}", "Telemetry points committed.");
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Telemetry points committed since the process started (the console's Home derives a rate from it).</summary>
    public long PointsStored => Volatile.Read(ref _totalPointsStored);

    /// <summary>A tenant's telemetry points committed since the process started (its Home derives a rate from it).</summary>
    public long PointsStoredOf(Guid tenantId) => _tenantPointsStored.TryGetValue(tenantId, out var count) ? Volatile.Read(ref count.Value) : 0;

    /// <summary>Whether acknowledgements wait for the commit.</summary>
    public bool AckAfterCommit => _options.AckAfterCommit;

    /// <summary>A request to fill; hand it to <see cref="SubmitAsync"/> or back with <see cref="Return"/>.</summary>
    public IngestRequest Rent()
    {
        if (!_pool.TryTake(out var request))
        {
            request = new IngestRequest();
            request.Attach(this);
        }

        return request!;
    }

    /// <summary>Gives back a request that was not submitted.</summary>
    public void Return(IngestRequest request)
    {
        request.Reset();
        _pool.Return(request);
    }

    /// <summary>
    /// Queues the request. The task completes when its batch has committed (AckAfterCommit) or once it is queued;
    /// it fails when the write failed. Either way the request belongs to the pipeline from here on.
    /// </summary>
    public ValueTask SubmitAsync(IngestRequest request, CancellationToken cancellationToken = default)
    {
        request.Waiting = _options.AckAfterCommit;
        var pending = request.Waiting ? request.AsValueTask() : ValueTask.CompletedTask;
        Interlocked.Increment(ref _depth);
        if (_queue.Writer.TryWrite(request))
        {
            return pending;
        }

        return QueueSlowAsync(request, pending, cancellationToken);
    }

    private async ValueTask QueueSlowAsync(IngestRequest request, ValueTask pending, CancellationToken cancellationToken)
    {
        try
        {
            await _queue.Writer.WriteAsync(request, cancellationToken);
        }
        catch
        {
            Interlocked.Decrement(ref _depth);
            if (request.Waiting)
            {
                // Nobody else will complete it: complete it ourselves so the awaiter below returns it to the pool.
                request.Complete(new OperationCanceledException("The telemetry queue is closed."));
                await pending;
            }

            Return(request);
            throw;
        }

        await pending;
    }

    private async Task WriteLoopAsync()
    {
        var reader = _queue.Reader;
        var interval = (long)(_options.MinCommitInterval.TotalSeconds * Stopwatch.Frequency);
        long lastCommit = 0;
        var lastRequests = 0;
        while (await reader.WaitToReadAsync())
        {
            // Group commit: under steady traffic from many publishers, what arrives while the interval runs joins one
            // transaction. Only when the last batch had company: a lone publisher waiting for each answer would gain
            // nothing by the wait and would be held to one message per interval.
            var wait = lastCommit + interval - Stopwatch.GetTimestamp();
            if (wait > 0 && lastRequests > 1 && Volatile.Read(ref _depth) < _options.MaxBatchPoints)
            {
                await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
            }

            lastCommit = Stopwatch.GetTimestamp();
            var count = 0;
            while (count < _options.MaxBatchPoints && reader.TryRead(out var request))
            {
                _batch.Add(request);
                foreach (var point in request.Points)
                {
                    _points.Add(new DevicePoint(request.DeviceSeq, point));
                }

                count += request.Points.Count;
            }

            lastRequests = _batch.Count;
            Interlocked.Add(ref _depth, -_batch.Count);
            Exception? error = null;
            var started = Stopwatch.GetTimestamp();
            try
            {
                await _store.WriteAsync(_points);
                _batchSize.Record(_points.Count);
                _pointsStored.Add(_points.Count);
                // One writer: a plain add, published for readers on other threads.
                Volatile.Write(ref _totalPointsStored, _totalPointsStored + _points.Count);
                CountTenantPoints();
                _commitLatency.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
                // Committed: live subscribers hear of it now, once per batch, before the publishers are acknowledged.
                _feed?.TelemetryCommitted(_points);
            }
            catch (Exception e)
            {
                error = e;
                LogWriteFailed(_logger, e, _points.Count);
            }

            foreach (var request in _batch)
            {
                if (request.Waiting)
                {
                    request.Complete(error);
                }
                else
                {
                    Return(request);
                }
            }

            _batch.Clear();
            _points.Clear();
        }
    }

    private void CountTenantPoints()
    {
        foreach (var request in _batch)
        {
            if (request.TenantId != Guid.Empty)
            {
                var count = _tenantPointsStored.GetOrAdd(request.TenantId, static _ => new StrongBox<long>());
                Volatile.Write(ref count.Value, count.Value + request.Points.Count);
            }
        }
    }

    /// <summary>Stops taking messages and waits until everything queued has been written.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _writer;
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "Writing a batch of {Points} telemetry points failed; its publishers get an error.")]
    private static partial void LogWriteFailed(ILogger logger, Exception exception, int points);
}

/// <summary>Names of the platform's metrics.</summary>
public static class PlatformMetrics
{
    public const string MeterName = "Taihu.Platform";
}
