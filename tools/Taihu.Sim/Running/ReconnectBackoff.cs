using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>A device's way back after losing its connection, whatever its protocol: the fleet's back-off.</summary>
internal static class ReconnectBackoff
{
    /// <summary>
    /// Waits the back-off (initial, doubling to max, ±25% jitter; scenario time) and tries again while the device
    /// still wants its connection; true once <paramref name="tryConnectAsync"/> has connected it.
    /// </summary>
    public static async Task<bool> RunAsync(Behaviour behaviour, ScenarioScaling scaling, Random random, Func<bool> wanted,
        Func<CancellationToken, Task<bool>> tryConnectAsync, CancellationToken cancellationToken)
    {
        var wait = behaviour.ReconnectInitial;
        while (!cancellationToken.IsCancellationRequested && wanted())
        {
            double factor;
            lock (random)
            {
                factor = 0.75 + (random.NextDouble() * 0.5);
            }

            await Task.Delay(scaling.Real(wait * factor), cancellationToken);
            if (await tryConnectAsync(cancellationToken))
            {
                return true;
            }

            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, behaviour.ReconnectMax.Ticks));
        }

        return false;
    }
}
