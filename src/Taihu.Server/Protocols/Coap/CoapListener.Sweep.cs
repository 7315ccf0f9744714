using System.Net;
using Taihu.Platform.Devices;

namespace Taihu.Server.Protocols.Coap;

/// <summary>The listener's housekeeping: the sweeper that runs while there is state to sweep, and revocations.</summary>
internal sealed partial class CoapListener
{
    private void ArmSweeper()
    {
        lock (_sweepGate)
        {
            if (!_sweeperArmed && _sweeper is { } sweeper)
            {
                _sweeperArmed = true;
                sweeper.Change(_sweepPeriod, _sweepPeriod);
            }
        }
    }

    /// <summary>Stops the sweeper when no endpoint and no slow exchange is left; <see cref="ArmSweeper"/> starts it again.</summary>
    private void DisarmSweeperWhenIdle()
    {
        if (!_endpoints.IsEmpty || !_slow.IsEmpty)
        {
            return;
        }

        lock (_sweepGate)
        {
            if (_sweeperArmed && _endpoints.IsEmpty && _slow.IsEmpty)
            {
                _sweeperArmed = false;
                _sweeper?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            }
        }
    }


    /// <summary>
    /// A device was deleted or its credentials changed (as an MQTT client is disconnected then): every endpoint
    /// forgets that it authenticated as the device, so its next request checks the token again, and its
    /// observations of the device end (the device goes offline, waiting persistent calls stay queued).
    /// </summary>
    private void Forget(DeviceRevocation revocation)
    {
        foreach (var endpoint in _endpoints.Values)
        {
            lock (endpoint.Gate)
            {
                if (endpoint.Authenticated is { } known && revocation.Covers(known.Device))
                {
                    endpoint.Authenticated = null;
                }

                for (var i = endpoint.Observations.Count - 1; i >= 0; i--)
                {
                    if (revocation.Covers(endpoint.Observations[i].Device))
                    {
                        EndObservation(endpoint, endpoint.Observations[i]);
                    }
                }
            }
        }
    }

    /// <summary>Ends an observation (the caller holds the endpoint's gate).</summary>
    internal static void EndObservation(CoapEndpoint endpoint, CoapObservation observation)
    {
        endpoint.Observations.Remove(observation);
        observation.End();
    }

    /// <summary>
    /// Every tick: acknowledges confirmable requests that are taking long (their response follows separately);
    /// every few seconds also forgets expired exchanges and uploads, ends the observations of silent endpoints,
    /// and drops endpoints that hold nothing.
    /// </summary>
    private void Sweep()
    {
        try
        {
            var now = time.GetTimestamp();
            var separateAfter = TicksOf(_options.SeparateResponseAfter);
            foreach (var (exchange, endpoint) in _slow)
            {
                lock (endpoint.Gate)
                {
                    if (exchange.State == CoapExchangeState.InProgress && now - exchange.Started >= separateAfter)
                    {
                        exchange.State = CoapExchangeState.Acknowledged;
                        SendEmptyAck(endpoint, exchange.MessageId);
                    }
                }
            }

            if (Interlocked.Increment(ref _sweeps) % 8 != 0)
            {
                DisarmSweeperWhenIdle();
                return;
            }

            var idle = TicksOf(_options.ObservationIdleTimeout);
            var forget = TicksOf(_options.ExchangeLifetime);
            foreach (var (address, endpoint) in _endpoints)
            {
                lock (endpoint.Gate)
                {
                    endpoint.Expire(now);
                    if (endpoint.Observations.Count > 0 && now - endpoint.LastHeard >= idle)
                    {
                        foreach (var observation in endpoint.Observations.ToArray())
                        {
                            EndObservation(endpoint, observation);
                        }
                    }

                    if (endpoint.IsEmpty && now - endpoint.LastHeard >= forget)
                    {
                        endpoint.Removed = _endpoints.TryRemove(new KeyValuePair<SocketAddress, CoapEndpoint>(address, endpoint));
                    }
                }
            }

            DisarmSweeperWhenIdle();
        }
        catch (Exception e)
        {
            LogSweepFailed(logger, e);
        }
    }

    private int _sweeps;

    private long TicksOf(TimeSpan span) => (long)(span.TotalSeconds * time.TimestampFrequency);
}
