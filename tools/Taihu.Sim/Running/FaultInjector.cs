using System.Diagnostics;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// Injects a scenario's faults into its devices (their connections, the proxy's links, a real device's drops) and
/// records what the server made of each. <paramref name="sendAndKeep"/> sends telemetry counted as the run's
/// schedule counts it, and keeps its timestamp as one the server must store when it is acknowledged.
/// </summary>
internal sealed class FaultInjector(ScenarioScaling scaling, FaultProxy? proxy, Func<RunningDevice, byte[], long, CancellationToken, Task<SendResult>> sendAndKeep)
{
    /// <summary>
    /// Applies a fault to its devices and records what the server made of each injection. Malformed and oversized
    /// messages are not counted as telemetry: they are meant to be refused.
    /// </summary>
    public async Task InjectAsync(FaultRun fault, TimeSpan now, CancellationToken cancellationToken)
    {
        var tasks = new List<Task>();
        foreach (var device in fault.Devices)
        {
            tasks.Add(Task.Run(async () =>
            {
                switch (fault.Definition.Kind)
                {
                    case FaultKind.Disconnect when device.Connection is RealDeviceConnection real:
                        fault.Record(await real.DropAndWatchAsync(cancellationToken));
                        break;
                    case FaultKind.Disconnect:
                        var lostBefore = device.Connection.Reconnects;
                        await device.Connection.DropAsync(reconnect: true);
                        fault.Record("disconnected");
                        fault.TrackReconnect(device, lostBefore);
                        break;
                    case FaultKind.ReconnectStorm:
                        await device.Connection.DropAsync(reconnect: false);
                        break;
                    case FaultKind.Silence:
                        // A device that stops reporting has lost its power or its network: its connection goes too,
                        // and comes back when the silence ends.
                        await device.Connection.DropAsync(reconnect: false);
                        fault.Record("fell silent");
                        if (fault.Definition.For is { } silence && device.Connection is MqttSimDevice or TcpSimDevice)
                        {
                            await Task.Delay(scaling.Real(silence), cancellationToken);
                            var back = device.Connection is MqttSimDevice silent ? await silent.ReconnectNowAsync(cancellationToken) : await ((TcpSimDevice)device.Connection).ReconnectNowAsync(cancellationToken);
                            fault.Record(back ? "back after the silence" : "refused after the silence, reconnecting with back-off");
                        }

                        break;
                    case FaultKind.ClockSkew:
                        break;
                    case FaultKind.Pause:
                        if (LinkOf(device) is not { } held)
                        {
                            fault.Record("not connected");
                            break;
                        }

                        held.Hold();
                        await Task.Delay(scaling.Real(fault.Definition.For!.Value), cancellationToken);
                        held.Resume();

                        // What the server made of it shows within a keep-alive period of the network coming back.
                        await Task.Delay(MqttSimDevice.KeepAlive(device.Provisioned.Fleet, scaling), cancellationToken);
                        fault.Record(held.ServerClosed ? "server closed the connection during the pause" : "connection survived the pause");
                        break;
                    case FaultKind.HalfOpen:
                        if (LinkOf(device) is not { } dropped)
                        {
                            fault.Record("not connected");
                            break;
                        }

                        fault.TrackReconnect(device, device.Connection.Reconnects);
                        dropped.Kill();
                        fault.AddLink(dropped);
                        break;
                    case FaultKind.Malformed:
                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            var refused = device.Connection is TcpSimDevice tcp
                                ? await tcp.SendMalformedAsync(cancellationToken)
                                : await device.Connection.SendTelemetryAsync(Utf8.Bytes("{\"temperature\": 21.5, oops"), cancellationToken);
                            fault.Record(refused.Outcome);
                        }

                        break;
                    case FaultKind.Oversized:
                        var big = Utf8.Bytes("{\"blob\":\"" + new string('x', 2 * 1024 * 1024) + "\"}");
                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            fault.Record((await device.Connection.SendTelemetryAsync(big, cancellationToken)).Outcome);
                        }

                        break;
                    case FaultKind.Duplicate:
                        var (payload, ts) = device.Payload(now, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                        await sendAndKeep(device, payload, ts, cancellationToken);

                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            // The same point again: acknowledged, and stored once (it is keyed by its timestamp).
                            var again = await device.Connection.SendTelemetryAsync(payload, cancellationToken);
                            fault.Record(again.Acknowledged ? "acknowledged again" : again.Outcome);
                        }

                        break;
                    case FaultKind.Flood:
                        await FloodAsync(fault, device, now, cancellationToken);
                        break;
                    case FaultKind.Burst:
                        var burst = new List<Task<SendResult>>();
                        for (var i = 0; i < fault.Definition.Count; i++)
                        {
                            var (p, t) = device.Payload(now, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                            burst.Add(sendAndKeep(device, p, t, cancellationToken));
                        }

                        foreach (var result in await Task.WhenAll(burst))
                        {
                            fault.Record(result.Outcome);
                        }

                        break;
                }
            }, cancellationToken));
        }

        await Task.WhenAll(tasks);
        if (fault.Definition.Kind == FaultKind.ReconnectStorm)
        {
            // Everyone at once, no back-off: the storm.
            var reconnects = fault.Devices.Select(d => d.Connection is MqttSimDevice mqtt ? mqtt.ReconnectNowAsync(cancellationToken) : Task.FromResult(true)).ToList();
            foreach (var ok in await Task.WhenAll(reconnects))
            {
                fault.Record(ok ? "reconnected at once" : "refused at once, reconnecting with back-off");
            }
        }
    }

    /// <summary>
    /// A device sends at the flood's rate (times <c>--speed</c>) for its length, without waiting for answers. What
    /// the server made of it is counted by answer: acknowledged, refused with a reason code, or the connection
    /// closed (with the server's reason where MQTT 5 gives one), and whether the device came back afterwards.
    /// </summary>
    private async Task FloodAsync(FaultRun fault, RunningDevice device, TimeSpan now, CancellationToken cancellationToken)
    {
        var perSecond = fault.Definition.Rate * scaling.Speed;
        var length = scaling.Real(fault.Definition.For!.Value);
        var reconnectsBefore = device.Connection.Reconnects;
        var lostBefore = device.Connection.ConnectionsLost;
        var sends = new List<Task<SendResult>>();
        var skipped = 0;
        var started = Stopwatch.GetTimestamp();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        for (var made = 0L; ;)
        {
            var elapsed = Stopwatch.GetElapsedTime(started);
            var due = (long)(Math.Min(elapsed.TotalSeconds, length.TotalSeconds) * perSecond);
            for (; made < due; made++)
            {
                if (device.Connection.IsConnected)
                {
                    var (payload, ts) = device.Payload(now + scaling.ScenarioTime(elapsed), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                    sends.Add(sendAndKeep(device, payload, ts, cancellationToken));
                }
                else
                {
                    skipped++;
                }
            }

            if (elapsed >= length)
            {
                break;
            }

            await timer.WaitForNextTickAsync(cancellationToken);
        }

        var results = await Task.WhenAll(sends);

        // The sends fail when the server closes the connection, a moment before the client reports why.
        var mqtt = device.Connection as MqttSimDevice;
        if (mqtt is not null && Array.Exists(results, static r => r.IsClosedByServer))
        {
            await mqtt.WaitForConnectionLostAsync(lostBefore, TimeSpan.FromSeconds(5), cancellationToken);
        }

        var reason = mqtt?.LastServerDisconnect;
        foreach (var result in results)
        {
            fault.Record(result.IsClosedByServer && reason is not null ? $"{SendResult.ClosedByServerOutcome}: {reason}" : result.Outcome);
        }

        if (skipped > 0)
        {
            fault.Record("not sent: the connection was closed", skipped);
        }

        if (device.Connection.ConnectionsLost > lostBefore)
        {
            // Closed for flooding: the device must come back by its back-off and report as before.
            fault.TrackReconnect(device, reconnectsBefore);
        }
    }

    /// <summary>The device's connection through a proxy: a real device's own, or the shared one for simulated devices.</summary>
    private FaultProxy.Link? LinkOf(RunningDevice device) =>
        device.Connection is RealDeviceConnection real ? real.Proxy.Current : proxy?.Find(device.ClientId ?? "");
}
