using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// MQTT republish integrations against the real server: to a topic template on Taihu's own broker (seen by
/// <c>mosquitto_sub</c> as a broker user of the tenant) and on an external broker (a real Mosquitto started by the
/// test); a device name the template cannot fill into a valid topic dead-letters its event with the reason.
/// </summary>
public sealed class IntegrationMqttTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task Republish_OnOwnBroker_IsSeenByMosquittoSub_AndAnUnfillableTopicIsDeadLettered()
    {
        var user = "city-" + Guid.NewGuid().ToString("N")[..8];
        await fixture.Admin.PostAsync("/api/mqtt/users", new { userName = user, password = "city-password-1", rules = new[] { new { access = "read", topic = "city/#" } } });
        var created = await fixture.Admin.PostAsync("/api/integration", new
        {
            name = "republish-" + Guid.NewGuid().ToString("N")[..8],
            type = "MQTT",
            messageTypes = new[] { "TELEMETRY" },
            configuration = new { topic = "city/{tenant}/{deviceName}/{type}", qos = 1 },
        });
        var integration = created["id"]!["id"]!.GetValue<string>();
        var name = "air-" + Guid.NewGuid().ToString("N")[..8];
        var (_, token) = await fixture.Admin.CreateDeviceAsync(name);
        var expectedTopic = $"city/{fixture.TenantId}/{name}/TELEMETRY";

        await using (var subscriber = await MosquittoProcess.SubscribeAsync("-h", "127.0.0.1", "-p", Port(Server.TcpPort), "-u", user, "-P", "city-password-1",
                   "-q", "1", "-v", "-t", "city/#"))
        {
            await PublishAsync(Server.TcpPort, token, "{\"pm25\":80}");
            // The device's connectivity (`active`, kept as a time series) is a TELEMETRY event of its own, and may come first.
            var line = await subscriber.WaitForLineAsync(l => l.StartsWith(expectedTopic + " ", StringComparison.Ordinal) && l.Contains("\"pm25\"", StringComparison.Ordinal));
            var body = JsonNode.Parse(line[(expectedTopic.Length + 1)..])!;
            Assert.Equal(name, body["deviceName"]!.GetValue<string>());
            Assert.Equal(80, body["data"]![0]!["values"]!["pm25"]!.GetValue<int>());
        }

        // A device named with a slash would add a topic level: its event is dead-lettered with the reason.
        var (_, badToken) = await fixture.Admin.CreateDeviceAsync("bad/" + Guid.NewGuid().ToString("N")[..6]);
        await PublishAsync(Server.TcpPort, badToken, "{\"pm25\":1}");
        var dead = await fixture.Admin.EventuallyAsync($"/api/integration/{integration}/deadLetters", p => p["totalElements"]!.GetValue<long>() == 1);
        Assert.Contains("{deviceName}", dead["data"]![0]!["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{integration}");
    }

    [Fact]
    public async Task Republish_ToExternalMosquitto_IsSeenThere()
    {
        var (broker, port, directory) = await MosquittoProcess.StartBrokerAsync();
        await using (broker)
        {
            var created = await fixture.Admin.PostAsync("/api/integration", new
            {
                name = "external-" + Guid.NewGuid().ToString("N")[..8],
                type = "MQTT",
                configuration = new { topic = "taihu/{deviceType}/{deviceId}/{type}", qos = 1, host = "127.0.0.1", port, protocolVersion = "3.1.1" },
            });
            var integration = created["id"]!["id"]!.GetValue<string>();
            var (deviceId, token) = await fixture.Admin.CreateDeviceAsync("ext-" + Guid.NewGuid().ToString("N")[..8], type: "pump");
            await using var subscriber = await MosquittoProcess.SubscribeAsync("-h", "127.0.0.1", "-p", Port(port), "-q", "1", "-v", "-t", "taihu/#");
            await PublishAsync(Server.TcpPort, token, "{\"level\":3.5}");
            var topic = $"taihu/pump/{deviceId}/TELEMETRY";
            string line;
            try
            {
                // The device's connectivity (`active`, kept as a time series) is a TELEMETRY event of its own, and may come first.
                line = await subscriber.WaitForLineAsync(l => l.StartsWith(topic + " ", StringComparison.Ordinal) && l.Contains("\"level\"", StringComparison.Ordinal));
            }
            catch (TimeoutException e)
            {
                var stats = await fixture.Admin.GetAsync($"/api/integration/{integration}/stats");
                var dead = await fixture.Admin.GetAsync($"/api/integration/{integration}/deadLetters");
                throw new TimeoutException($"{e.Message}\nstats: {stats.ToJsonString()}\ndead letters: {dead.ToJsonString()}\nbroker: {broker.Output}", e);
            }

            var level = JsonNode.Parse(line[(topic.Length + 1)..])?["data"]?[0]?["values"]?["level"];
            Assert.True(level is not null, "no level in: " + line + "\nall lines: " + subscriber.Output);
            Assert.Equal(3.5, level.GetValue<double>());
            await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{integration}");
        }

        Directory.Delete(directory, recursive: true);
    }

    private static string Port(int port) => port.ToString(CultureInfo.InvariantCulture);

    private static async Task PublishAsync(int port, string token, string json)
    {
        var (exitCode, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", Port(port), "-q", "1", "-t", "v1/devices/me/telemetry", "-u", token, "-m", json);
        Assert.True(exitCode == 0, output);
    }

}
