using System.Globalization;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;

namespace Taihu.Broker.Tests;

public class SysTopicsTests
{
    private const string LastOfCycle = "$SYS/broker/retained messages/count";

    private static readonly string[] s_expected =
    [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
    ];

    private static Task<TestClient> ConnectAsync(BrokerHost host, string id, MqttProtocolVersion version) =>
        TestClient.ConnectAsync(host, id, version, b => b.WithKeepAlivePeriod(TimeSpan.Zero));

    /// <summary>Reads one $SYS cycle (the broker publishes the same topics in a fixed order, retained count last).</summary>
    private static async Task<Dictionary<string, string>> ReadCycleAsync(TestClient client)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        while (true)
        {
            var message = (await client.NextAsync()).ApplicationMessage;
            values[message.Topic] = message.ConvertPayloadToString();
            if (message.Topic == LastOfCycle)
            {
                return values;
            }
        }
    }

    private static long Number(Dictionary<string, string> values, string topic) =>
        long.Parse(values[topic].Split(' ')[0], CultureInfo.InvariantCulture);

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Sys_topics_are_published_every_interval_and_follow_the_clock(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var host = await BrokerHost.StartAsync(o => o.SysInterval = 10, time);
        await using var monitor = await ConnectAsync(host, "monitor", version);
        await monitor.Client.SubscribeAsync("$SYS/#");
        await monitor.Client.SubscribeAsync("sentinel");

        // Whatever was retained before the subscription arrives ahead of the sentinel; skip it.
        await monitor.Client.PublishStringAsync("sentinel", "s");
        while ((await monitor.NextAsync()).ApplicationMessage.Topic != "sentinel")
        {
        }

        time.Advance(TimeSpan.FromSeconds(10));
        var first = await ReadCycleAsync(monitor);
        foreach (var topic in s_expected)
        {
            Assert.Contains(topic, first.Keys);
        }

        Assert.StartsWith("taihu version ", first["$SYS/broker/version"], StringComparison.Ordinal);
        Assert.Equal("10 seconds", first["$SYS/broker/uptime"]);
        Assert.Equal(1, Number(first, "$SYS/broker/clients/connected"));

        // Traffic between the cycles moves the counters.
        await using var other = await ConnectAsync(host, "other", version);
        await other.Client.SubscribeAsync("traffic");
        for (var i = 0; i < 5; i++)
        {
            await other.Client.PublishStringAsync("traffic", new string('x', 100), MqttQualityOfServiceLevel.AtLeastOnce);
            await other.NextAsync();
        }

        time.Advance(TimeSpan.FromSeconds(10));
        var second = await ReadCycleAsync(monitor);
        Assert.Equal("20 seconds", second["$SYS/broker/uptime"]);
        Assert.Equal(2, Number(second, "$SYS/broker/clients/connected"));
        Assert.True(Number(second, "$SYS/broker/messages/received") >= Number(first, "$SYS/broker/messages/received") + 5);
        Assert.True(Number(second, "$SYS/broker/messages/sent") >= Number(first, "$SYS/broker/messages/sent") + 5);
        Assert.True(Number(second, "$SYS/broker/bytes/received") >= Number(first, "$SYS/broker/bytes/received") + 500);
        Assert.True(Number(second, "$SYS/broker/bytes/sent") >= Number(first, "$SYS/broker/bytes/sent") + 500);
    }

    [Fact]
    public async Task Sys_values_are_retained_for_a_late_subscriber()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var host = await BrokerHost.StartAsync(o => o.SysInterval = 10, time);
        time.Advance(TimeSpan.FromSeconds(40));
        await using var late = await ConnectAsync(host, "late", MqttProtocolVersion.V500);
        await late.Client.SubscribeAsync("$SYS/broker/uptime");
        var message = (await late.NextAsync()).ApplicationMessage;
        Assert.True(message.Retain);
        Assert.Equal("40 seconds", message.ConvertPayloadToString());
    }
}
