using System.Globalization;
using System.Net.Sockets;
using System.Text;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Platform.Tests;
using Taihu.Sim.Running;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Tests;

/// <summary>
/// Bring your own device: a scenario declares real devices by their credentials; they connect through the
/// simulator's proxy, and the run checks how they behave. Here the "real" devices are MQTTnet clients with their
/// own firmware-like loops: one well-behaved, one that hammers the server when dropped, floods, and ignores shared
/// attributes.
/// </summary>
public sealed class RealDeviceTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task RealDevices_ThroughTheProxy_TheWellBehavedPasses_TheOtherFailsNamingWhatItDidWrong()
    {
        var (goodPort, badPort) = (LoopbackPort.Free(), LoopbackPort.Free());
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (goodToken, badToken) = ($"good-thermostat-{suffix}", $"bad-thermostat-{suffix}");
        var scenario = ScenarioLoader.Parse(string.Create(CultureInfo.InvariantCulture, $$"""
            name: real devices
            duration: 1h
            realDevices:
              - name: good-thermostat
                token: {{goodToken}}
                port: {{goodPort}}
                connectWithin: 30s
                sharedAttributes: { at: 10m, values: { setpoint: 21.5 } }
                limits: { messagesPerMinute: 1200, payloadBytes: 1024 }
              - name: bad-thermostat
                token: {{badToken}}
                port: {{badPort}}
                connectWithin: 30s
                sharedAttributes: { at: 10m, values: { setpoint: 19 } }
                limits: { messagesPerMinute: 100 }
            rpc:
              - fleet: good-thermostat
                method: getState
                every: 15m
                timeout: 5s
            faults:
              - kind: disconnect
                fleet: good-thermostat
                at: 20m
              - kind: disconnect
                fleet: bad-thermostat
                at: 20m
            expect:
              - behaves: good-thermostat
              - behaves: bad-thermostat
              # A call that falls in the drop (the proxy refusing the device's next attempts) is not made.
              - rpcAnswered: 100%
                fleet: good-thermostat
            """), "real.yaml", ".");

        using var stop = new CancellationTokenSource();
        var log = new StringWriter();
        var run = new SimRunner(scenario, new ScenarioScaling(360, 1), fixture.Target, TextWriter.Synchronized(log)).RunAsync(CancellationToken.None);
        var good = new Thermostat(goodPort, goodToken, wellBehaved: true, TimeProvider.System);
        var bad = new Thermostat(badPort, badToken, wellBehaved: false, TimeProvider.System);
        var devices = Task.WhenAll(good.RunAsync(stop.Token), bad.RunAsync(stop.Token));
        var report = await run;
        await stop.CancelAsync();
        await devices;

        var byName = report.RealDevices.ToDictionary(r => r.Name);
        var behaves = report.Expectations.Where(e => e.Expected.StartsWith("real device", StringComparison.Ordinal)).ToList();
        Assert.True(behaves[0].Met, $"{behaves[0].Found}\n{log}");
        Assert.Contains("drop(s) survived with back-off", behaves[0].Found, StringComparison.Ordinal);
        Assert.True(report.Expectations.Single(e => e.Expected.StartsWith("RPC answered", StringComparison.Ordinal)).Met, report.Summary());
        Assert.True(byName["good-thermostat"].RpcResponses >= 1);
        Assert.True(byName["good-thermostat"].AttributeUpdatesAcknowledged >= 1);
        Assert.True(byName["good-thermostat"].TelemetryAcknowledged > 10);
        Assert.StartsWith("reconnected with back-off (waits ", Assert.Single(byName["good-thermostat"].Drops), StringComparison.Ordinal);

        Assert.False(behaves[1].Met);
        Assert.Contains("within a minute (its limit: 100)", behaves[1].Found, StringComparison.Ordinal);
        Assert.Contains("did not receive its shared attributes", behaves[1].Found, StringComparison.Ordinal);
        Assert.Contains("reconnected without back-off", behaves[1].Found, StringComparison.Ordinal);
        Assert.False(report.Passed);
        Assert.Contains("FAIL real device bad-thermostat behaves", report.Summary(), StringComparison.Ordinal);
    }

    /// <summary>
    /// A device with firmware of its own: reports, answers RPC, and reconnects its own way, on its own clock (a real
    /// device is not sped up with the scenario, so the system's clock here).
    /// </summary>
    private sealed class Thermostat(int port, string token, bool wellBehaved, TimeProvider clock)
    {
        private readonly IMqttClient _client = new MqttClientFactory().CreateMqttClient();

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            _client.ApplicationMessageReceivedAsync += async e =>
            {
                var topic = e.ApplicationMessage.Topic;
                if (topic.StartsWith("v1/devices/me/rpc/request/", StringComparison.Ordinal))
                {
                    await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/rpc/response/" + topic["v1/devices/me/rpc/request/".Length..])
                        .WithPayload("{\"setpoint\":21.5}").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), CancellationToken.None);
                }
            };
            // A real device backs off by seconds: with 0.1 s the time a refused connect takes to fail on a loaded
            // machine (tenths of a second) hid the doubling, and the well-behaved device was judged to hammer.
            var wait = TimeSpan.FromSeconds(1);
            var flooded = false;
            try
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    if (!_client.IsConnected)
                    {
                        try
                        {
                            await _client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithCredentials(token, (string?)null)
                                .WithClientId(token).WithTimeout(TimeSpan.FromSeconds(5)).Build(), cancellationToken);
                            var subscribe = new MqttClientSubscribeOptionsBuilder().WithTopicFilter("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtLeastOnce);
                            if (wellBehaved)
                            {
                                subscribe.WithTopicFilter("v1/devices/me/attributes", MqttQualityOfServiceLevel.AtLeastOnce);
                            }

                            await _client.SubscribeAsync(subscribe.Build(), cancellationToken);
                            wait = TimeSpan.FromSeconds(1);
                        }
                        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or TimeoutException or SocketException)
                        {
                            // The well-behaved one waits longer each time; the other tries again at once.
                            await Task.Delay(wellBehaved ? wait : TimeSpan.FromMilliseconds(5), clock, cancellationToken);
                            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, TimeSpan.FromSeconds(4).Ticks));
                            continue;
                        }
                    }

                    var count = !wellBehaved && !flooded ? 150 : 1;
                    flooded |= count > 1;
                    for (var i = 0; i < count && _client.IsConnected; i++)
                    {
                        try
                        {
                            await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/telemetry")
                                .WithPayload(Encoding.UTF8.GetBytes("{\"temperature\":21.2}")).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
                        }
                        catch (MQTTnet.Exceptions.MqttCommunicationException)
                        {
                            break;
                        }
                    }

                    // The device's own reporting period.
                    await Task.Delay(TimeSpan.FromMilliseconds(100), clock, cancellationToken);
                }
            }
            catch (OperationCanceledException)
            {
                // Switched off.
            }
            finally
            {
                _client.Dispose();
            }
        }
    }
}
