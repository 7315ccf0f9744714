using System.Diagnostics.Metrics;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Taihu.Platform;
using Taihu.Platform.Events;

namespace Taihu.Cluster.Events;

/// <summary>
/// The event log lease of a cluster (<see cref="IEventWorkLease"/>): a PostgreSQL advisory lock held by a session
/// of its own. The node whose session holds the lock runs the alarm rules, fills the integrations' outboxes and
/// delivers them; every other node tries to take the lock every <see cref="RetryInterval"/>.
/// </summary>
/// <remarks>
/// Why a session lock and not a row with an expiry: PostgreSQL ends the session of a node that dies (its socket
/// closes with the process, SIGKILL included) and frees the lock with it, so another node takes over within a
/// retry interval, with no clock and no renewal writes; a node that lives but cannot reach the database loses its
/// session at the keep-alive limits set below (about 8 s). The holder checks its session every
/// <see cref="CheckInterval"/>: a failed check (the session ended, the database restarted) cancels the work at once,
/// so two nodes overlap only between the end of a session and the holder's next check (at most a check interval
/// plus the check's timeout); what the overlap can do is written in docs/scaling.md. A node that stops ends its
/// session, and another takes the lease at once.
/// </remarks>
public sealed partial class PostgresEventWorkLease : BackgroundService, IEventWorkLease
{
    /// <summary>The lock's key (the migration's is 7243190, the event log appends' 7243191).</summary>
    public const long LockKey = 7243192;

    private readonly string _connectionString;
    private readonly TimeProvider _time;
    private readonly ILogger<PostgresEventWorkLease> _logger;
    private TaskCompletionSource<CancellationToken> _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _holding;

    public PostgresEventWorkLease(IOptions<StorageOptions> storage, TimeProvider time, ILogger<PostgresEventWorkLease> logger, IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentNullException.ThrowIfNull(meters);
        // A session of its own, never pooled: the lock lives as long as this connection, and dies with the process.
        // The client's side of the keep-alive is the kernel's (TCP keep-alive), not Npgsql's KeepAlive: that one is
        // a timer that writes and reads the socket synchronously, and with socket completions run inline
        // (SocketCompletions) a check starting meanwhile on an epoll thread waited for it while its read waited
        // for that epoll thread: the node's sockets on that thread (database, other nodes) stopped, and the other
        // nodes declared it dead.
        _connectionString = new NpgsqlConnectionStringBuilder(storage.Value.ConnectionString)
        {
            Pooling = false,
            CommandTimeout = 5,
            TcpKeepAlive = true,
            TcpKeepAliveTime = 5,
            TcpKeepAliveInterval = 1,
        }.ConnectionString;
        _time = time;
        _logger = logger;
        meters.Create(ClusterNodes.MeterName).CreateObservableGauge("taihu.cluster.event_lease", () => Volatile.Read(ref _holding), "{lease}",
            "1 while this node holds the event log lease (it runs the alarm rules and the integrations), else 0.");
    }

    /// <summary>How often a node without the lease tries to take it.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the holder checks that its session (and so the lock) is still there.</summary>
    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Whether this node holds the lease now.</summary>
    public bool IsHeld => Volatile.Read(ref _holding) == 1;

    public Task<CancellationToken> AcquireAsync(CancellationToken cancellationToken) => Volatile.Read(ref _held).Task.WaitAsync(cancellationToken);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            NpgsqlConnection? connection = null;
            try
            {
                connection = new NpgsqlConnection(_connectionString);
                await connection.OpenAsync(stoppingToken);
                // The server's side of the keep-alive: a node cut off from the database loses the lock in about 8 s.
                await RunAsync(connection, "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3", stoppingToken);
                while (!await TryLockAsync(connection, stoppingToken))
                {
                    await Task.Delay(RetryInterval, _time, stoppingToken);
                }

                await HoldAsync(connection, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NpgsqlException or SocketException or TimeoutException or IOException or InvalidOperationException)
            {
                LogSessionFailed(_logger, e);
                try
                {
                    await Task.Delay(RetryInterval, _time, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            finally
            {
                if (connection is not null)
                {
                    // Closing the session frees the lock: a node that stops hands the lease on at once.
                    await connection.DisposeAsync();
                }
            }
        }
    }

    /// <summary>Holds the lease until the session fails a check or the node stops; then the work is told to stop.</summary>
    private async Task HoldAsync(NpgsqlConnection connection, CancellationToken stoppingToken)
    {
        using var lost = new CancellationTokenSource();
        var held = Volatile.Read(ref _held);
        Volatile.Write(ref _holding, 1);
        LogTaken(_logger);
        held.TrySetResult(lost.Token);
        try
        {
            while (true)
            {
                await Task.Delay(CheckInterval, _time, stoppingToken);
                await RunAsync(connection, "SELECT 1", stoppingToken);
            }
        }
        finally
        {
            Volatile.Write(ref _holding, 0);
            // A new wait first, so that work that stops and asks again waits for the next time the lease is held.
            Volatile.Write(ref _held, new TaskCompletionSource<CancellationToken>(TaskCreationOptions.RunContinuationsAsynchronously));
            await lost.CancelAsync();
            if (!stoppingToken.IsCancellationRequested)
            {
                LogLost(_logger);
            }
        }
    }

    private static async Task<bool> TryLockAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT pg_try_advisory_lock(@k)";
        command.Parameters.AddWithValue("k", LockKey);
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }

    private static async Task RunAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    [LoggerMessage(EventId = 2631, Level = LogLevel.Information, Message = "This node took the event log lease (alarm rules and integrations run here)")]
    private static partial void LogTaken(ILogger logger);

    [LoggerMessage(EventId = 2632, Level = LogLevel.Warning, Message = "This node lost the event log lease (its database session ended); another node takes it over")]
    private static partial void LogLost(ILogger logger);

    [LoggerMessage(EventId = 2633, Level = LogLevel.Warning, Message = "The event log lease's database session failed; it is opened again")]
    private static partial void LogSessionFailed(ILogger logger, Exception exception);
}
