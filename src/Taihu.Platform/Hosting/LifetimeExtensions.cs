using Microsoft.Extensions.Hosting;

namespace Taihu.Platform.Hosting;

public static class LifetimeExtensions
{
    /// <summary>
    /// Waits until the host has started (every hosted service's start done: the schema migrated, a cluster node's
    /// silo active, the listeners open). True then; false when the host stops first.
    /// </summary>
    public static async Task<bool> StartedAsync(this IHostApplicationLifetime lifetime, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(lifetime);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        {
            try
            {
                await started.Task.WaitAsync(stoppingToken);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }
}
