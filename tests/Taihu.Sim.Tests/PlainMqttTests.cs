using System.Globalization;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Sim.Tests;

/// <summary>
/// The simulator against a plain MQTT server (Mosquitto): nothing provisioned, devices connected anonymously, and
/// what needs the platform's API skipped, with the report saying so.
/// </summary>
public sealed class PlainMqttTests
{
    [Fact]
    public async Task AgainstMosquitto_RunsTheMqttFleets_SkipsWhatNeedsTheApi_AndSaysSo()
    {
        var (broker, port, mosquittoDirectory) = await MosquittoProcess.StartBrokerAsync();
        var directory = Directory.CreateTempSubdirectory("taihu-sim-plain-").FullName;
        await using (broker)
        {
            try
            {
                var file = Path.Combine(directory, "plain.yaml");
                await File.WriteAllTextAsync(file, """
                    name: plain broker
                    duration: 1h
                    fleets:
                      - name: counter-{n}
                        count: 4
                        interval: 1m
                        telemetry:
                          vehicles: { model: randomWalk, start: 20, step: 3, min: 0, round: 0 }
                      - name: kiosk-{n}
                        count: 2
                        protocol: http
                        interval: 5m
                        telemetry: { open: true }
                    rpc:
                      - fleet: counter-{n}
                        method: ping
                        every: 10m
                    faults:
                      - kind: malformed
                        fleet: counter-{n}
                        share: 50%
                        at: 30m
                    expect:
                      - acknowledged: 100%
                      - stored: 100%
                      - rpcAnswered: 90%
                      - faultsHandled: true
                    """);
                var report = Path.Combine(directory, "report");
                var (exitCode, text) = await Simulator.RunAsync(
                    ["run", file, "--plain-mqtt", "--speed", "360", "--mqtt-port", port.ToString(CultureInfo.InvariantCulture),
                        "--server-pid", broker.Pid.ToString(CultureInfo.InvariantCulture), "--report", report],
                    adminPassword: null);
                Assert.True(exitCode == 0, $"exit code {exitCode}:\n{text}");
                Assert.Contains("plain MQTT server: 4 device(s), no provisioning and no read-back", text, StringComparison.Ordinal);
                Assert.Matches(@"PASS acknowledged: 100% of points sent \(line \d+\): (\d+) of \1 \(100%\)", text);
                Assert.Contains("SKIP stored: 100% of acknowledged points", text, StringComparison.Ordinal);
                Assert.Contains("SKIP RPC answered", text, StringComparison.Ordinal);
                Assert.Contains("SKIP no acknowledged point lost", text, StringComparison.Ordinal);

                // Mosquitto takes garbage as any payload: acknowledged, and that is not a failure of a plain broker.
                Assert.Contains("PASS every fault injected got the server's clear answer", text, StringComparison.Ordinal);

                var json = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(report, "report.json")))!;
                var notes = json["notes"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
                Assert.Contains(notes, n => n.StartsWith($"Plain MQTT server at 127.0.0.1:{port}: nothing was provisioned", StringComparison.Ordinal));
                Assert.Contains("Fleet kiosk-{n} was skipped: it speaks HTTP, and a plain MQTT server only MQTT.", notes);
                Assert.Equal(4, json["fleets"]![0]!["devices"]!.GetValue<int>());
                Assert.Equal(0, json["fleets"]![1]!["devices"]!.GetValue<int>());
                Assert.Contains("/proc", json["server"]!["source"]!.GetValue<string>(), StringComparison.Ordinal);
                var html = await File.ReadAllTextAsync(Path.Combine(report, "report.html"));
                Assert.Contains("nothing was provisioned", html, StringComparison.Ordinal);
                Assert.Contains(">SKIP<", html, StringComparison.Ordinal);
                Assert.Empty(json["server"]!["stored"]!.AsArray());
            }
            finally
            {
                Directory.Delete(directory, recursive: true);
                Directory.Delete(mosquittoDirectory, recursive: true);
            }
        }
    }
}
