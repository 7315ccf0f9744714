using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

public sealed class HealthTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(10);
    private readonly ServerProcess _server = fixture.Server;

    [Fact]
    public async Task Healthz_ReturnsHealthyJson()
    {
        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress, Timeout = Guard };

        using var response = await http.GetAsync(new Uri("/healthz", UriKind.Relative));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("healthy", body.RootElement.GetProperty("status").GetString());
        Assert.True(body.RootElement.TryGetProperty("connections", out var connections) && connections.ValueKind == JsonValueKind.Number);
    }

    [Fact]
    public void TheServer_WatchesNoFiles()
    {
        // Settings are read once at start. A watcher of the settings files would cover the whole working directory
        // with its subdirectories (the data directory under it by default) and wake at every database write.
        var watchers = 0;
        foreach (var fd in Directory.GetFiles($"/proc/{_server.ProcessId}/fd"))
        {
            var target = new FileInfo(fd).LinkTarget;
            watchers += target == "anon_inode:inotify" ? 1 : 0;
        }

        Assert.Equal(0, watchers);
    }

    [Fact]
    public async Task Metrics_CountMqttTraffic()
    {
        await using (var subscriber = await MqttTestClient.ConnectTcpAsync(_server, "metrics-subscriber"))
        await using (var publisher = await MqttTestClient.ConnectTcpAsync(_server, "metrics-publisher"))
        {
            await subscriber.SubscribeAsync("metrics/+");
            await publisher.PublishAsync("metrics/one", "1");
            Assert.Equal("metrics/one", (await subscriber.NextAsync()).Topic);
        }

        using var http = new HttpClient { BaseAddress = _server.HttpBaseAddress, Timeout = Guard };
        using var response = await http.GetAsync(new Uri("/metrics", UriKind.Relative));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var metrics = await response.Content.ReadAsStringAsync();
        Assert.Contains("taihu_mqtt_packets_received", metrics, StringComparison.Ordinal);
        Assert.Contains("taihu_mqtt_packets_sent", metrics, StringComparison.Ordinal);
        Assert.Contains("taihu_mqtt_connections_accepted", metrics, StringComparison.Ordinal);
        // At least the two CONNECTs, the SUBSCRIBE and the PUBLISH; the PUBACK and DISCONNECTs may still be on their way.
        Assert.True(CounterValue(metrics, "taihu_mqtt_packets_received") >= 4, metrics);
        // The time to accept each client, from its connection's opening and from its CONNECT: both CONNECTs in each.
        Assert.True(CounterValue(metrics, "taihu_mqtt_connect_duration_milliseconds_count") >= 4, metrics);
        Assert.Matches("taihu_mqtt_connect_duration_milliseconds_bucket\\{[^}]*from=\"connect\"", metrics);
    }

    /// <summary>Sums a counter's samples over all label sets in the Prometheus text format.</summary>
    private static double CounterValue(string metrics, string name)
    {
        var total = 0.0;
        foreach (Match sample in Regex.Matches(metrics, $@"^{name}(?:_total)?(?:\{{[^}}]*\}})? (?<value>\S+)", RegexOptions.Multiline))
        {
            total += double.Parse(sample.Groups["value"].ValueSpan, System.Globalization.CultureInfo.InvariantCulture);
        }

        return total;
    }
}
