namespace Taihu.Platform.Events;

/// <summary>
/// The right to do the event log's work that must be done once cluster-wide: the durable consumers (alarm rules,
/// the integrations' outbox) and integration delivery. A single server registers none and always does it. A cluster
/// node (Taihu.Cluster keeps the lease in PostgreSQL) does it only while it holds the lease: one node at a time,
/// another taking over when the holder dies or stops.
/// </summary>
public interface IEventWorkLease
{
    /// <summary>
    /// Completes once this node holds the lease, with a token that is cancelled when it loses it. The work then
    /// stops, and starts again from the durable positions the next time the lease is held.
    /// </summary>
    Task<CancellationToken> AcquireAsync(CancellationToken cancellationToken);
}

/// <summary>Work that runs only while this node holds the event log lease.</summary>
public static class EventWorkLeaseExtensions
{
    /// <summary>
    /// Runs <paramref name="work"/> each time the lease is held, with a token cancelled when it is lost or the node
    /// stops; after each run that ended with the lease lost, <paramref name="afterLoss"/>. Returns when the node stops.
    /// </summary>
    public static async Task RunWhileHeldAsync(this IEventWorkLease lease, Func<CancellationToken, Task> work, Func<Task>? afterLoss,
        CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentNullException.ThrowIfNull(work);
        while (!stoppingToken.IsCancellationRequested)
        {
            CancellationToken held;
            try
            {
                held = await lease.AcquireAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }

            using (var both = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, held))
            {
                await work(both.Token);
            }

            if (afterLoss is not null && !stoppingToken.IsCancellationRequested)
            {
                await afterLoss();
            }
        }
    }
}

/// <summary>
/// An event consumer that keeps state in memory between calls (the rules' per-device state): told to drop it when
/// this node stops taking the log (a lost lease), so that the next time it starts from its durable state, which the
/// node that held the lease meanwhile moved on.
/// </summary>
public interface IStatefulEventConsumer : IEventConsumer
{
    /// <summary>Drops what it holds in memory, without writing it; waits for work in progress to end.</summary>
    Task ForgetAsync();
}
