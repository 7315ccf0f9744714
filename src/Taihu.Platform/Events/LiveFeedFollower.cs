using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Storage;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Events;

/// <summary>
/// On a cluster node, feeds the live feed from the event log that every node writes, so that a WebSocket subscriber
/// on any node gets every committed change of its devices, whichever node committed it. Added by Taihu.Cluster
/// only; a single server feeds its subscribers from its own writers, as they commit.
/// </summary>
/// <remarks>
/// A broadcast, not a consumer: every node reads every row, nobody records a position, and a node starts from the
/// end of the log (its subscribers ask for the store's snapshot first). While the node has no subscriber it reads
/// no rows: it only follows the end (one look at the newest position per poll), so that the first subscriber gets
/// the rows committed after it subscribed. This node's own rows come from memory (<see cref="EventSignal"/>) at
/// once; other nodes' rows are read at the next poll (<see cref="PollInterval"/>). Rows pruned before this node
/// read them (the durable consumers' lease holder prunes what they have all taken, at least the 5 s between two
/// snapshots of the rules later) are missed, and counted with
/// the positions no transaction committed (<c>taihu_live_log_rows_missed</c>: gaps).
/// </remarks>
public sealed partial class LiveFeedFollower : BackgroundService
{
    private const int RowsPerRead = 64;
    private readonly PlatformDatabase _database;
    private readonly LiveFeed _feed;
    private readonly EventSignal _signal;
    private readonly TimeProvider _time;
    private readonly ILogger<LiveFeedFollower> _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly Counter<long> _missed;
    private long _position;
    private bool _known;

    public LiveFeedFollower(PlatformDatabase database, LiveFeed feed, EventSignal signal, TimeProvider time, IHostApplicationLifetime lifetime, ILogger<LiveFeedFollower> logger,
        IMeterFactory? meters = null)
    {
        ArgumentNullException.ThrowIfNull(feed);
        ArgumentNullException.ThrowIfNull(signal);
        var meter = meters?.Create(PlatformMetrics.MeterName) ?? new Meter(PlatformMetrics.MeterName);
        _missed = meter.CreateCounter<long>("taihu.live.log_rows_missed", "{row}",
            "Gaps in the event log positions this node's live feed read: rows pruned before it read them (their changes missed its live subscribers), or positions of transactions that did not commit.");
        _lifetime = lifetime;
        _database = database;
        _feed = feed;
        _signal = signal;
        _time = time;
        _logger = logger;
        // From now on this node's writers leave the live feed to this follower.
        feed.FollowsEventLog = true;
        signal.Committed += Wake;
    }

    /// <summary>How often other nodes' rows are looked for while this node has subscribers (its own rows wake the follower at once).</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How often the end of the log is looked at while this node has no subscriber.</summary>
    public TimeSpan IdlePollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The position read up to.</summary>
    public long Position => Volatile.Read(ref _position);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var row = new DecodedRow();
        var failures = 0;
        try
        {
            // Once the server has started: the schema is migrated then (the cluster's services start before the platform's).
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using (_lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
            {
                await started.Task.WaitAsync(stoppingToken);
            }

            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    if (!_known || _feed.Count == 0)
                    {
                        // Nobody listens: follow the end. A subscriber added while the end was being read keeps
                        // the position from before (it may then get a few rows older than its subscription).
                        var end = await EventLog.LastPositionAsync(_database, stoppingToken);
                        if (!_known || _feed.Count == 0)
                        {
                            Volatile.Write(ref _position, Math.Max(_position, end));
                            _known = true;
                        }
                    }
                    else if (await FollowAsync(row, stoppingToken))
                    {
                        failures = 0;
                        continue;
                    }

                    failures = 0;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogReadFailed(_logger, e);
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(10_000, 100 << Math.Min(++failures, 6))), _time, stoppingToken);
                    continue;
                }

                if (_feed.Count == 0)
                {
                    // Not woken by this node's commits: under ingest that would be a look at the end per batch.
                    await Task.Delay(IdlePollInterval, _time, stoppingToken);
                }
                else
                {
                    await _wake.WaitAsync(PollInterval, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Hands the rows after the position to the live feed; false when there were none.</summary>
    private async Task<bool> FollowAsync(DecodedRow row, CancellationToken cancellationToken)
    {
        var moved = false;
        // This node's own rows, while they follow one another, come from memory as they were written.
        while (_signal.TryGetRecent(_position + 1, out var recent))
        {
            Volatile.Write(ref _position, _position + 1);
            Push(recent, row);
            moved = true;
        }

        if (moved)
        {
            return true;
        }

        foreach (var logRow in await EventLog.ReadAsync(_database, _position, RowsPerRead, cancellationToken))
        {
            if (logRow.Position > _position + 1)
            {
                _missed.Add(logRow.Position - _position - 1);
            }

            Volatile.Write(ref _position, logRow.Position);
            moved = true;
            Push(logRow, row);
        }

        return moved;
    }

    /// <summary>Decodes a log row into <paramref name="row"/> (reused) and hands its changes to the feed.</summary>
    private void Push(EventLogRow logRow, DecodedRow row)
    {
        if (logRow.Kind == EventLogKind.Device)
        {
            return; // connects, alarms, RPC requests: nothing the live feed takes
        }

        row.Points.Clear();
        row.Changes.Clear();
        row.Events.Clear();
        try
        {
            EventCodec.Decode(logRow.Kind, logRow.Body, row);
        }
        catch (FormatException e)
        {
            LogUndecodable(_logger, logRow.Position, e.Message);
            return;
        }

        Push(row);
    }

    private void Push(DecodedRow row)
    {
        if (row.Points.Count > 0)
        {
            _feed.TelemetryFromLog(row.Points);
        }

        if (row.Changes.Count > 0)
        {
            _feed.AttributesFromLog(row.Changes);
        }
    }

    private void Wake()
    {
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Woken already.
            }
        }
    }

    public override void Dispose()
    {
        _signal.Committed -= Wake;
        _wake.Dispose();
        base.Dispose();
    }

    [LoggerMessage(EventId = 2807, Level = LogLevel.Warning, Message = "Reading the event log for the live feed failed; it is tried again")]
    private static partial void LogReadFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2808, Level = LogLevel.Error, Message = "Event log row {Position} does not decode; the live feed skips it: {Reason}")]
    private static partial void LogUndecodable(ILogger logger, long position, string reason);
}
