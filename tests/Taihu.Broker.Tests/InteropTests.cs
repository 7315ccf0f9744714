using System.Diagnostics;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;

namespace Taihu.Broker.Tests;

/// <summary>Debian's mosquitto clients against the broker: another implementation's view of our wire format.</summary>
public class InteropTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(20);

    /// <summary>A mosquitto client process; its output is read line by line as it arrives.</summary>
    private sealed class Tool : IDisposable
    {
        private readonly Process _process;
        private readonly CancellationTokenSource _timeout = new(s_timeout);

        private Tool(Process process)
        {
            _process = process;
        }

        public static Tool Start(string name, params string[] arguments)
        {
            var info = new ProcessStartInfo("/usr/bin/" + name)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in arguments)
            {
                info.ArgumentList.Add(argument);
            }

            return new Tool(Process.Start(info) ?? throw new InvalidOperationException($"{name} did not start."));
        }

        public static async Task<string> RunAsync(string name, params string[] arguments)
        {
            using var tool = Start(name, arguments);
            return await tool.ExitAsync();
        }

        public async Task<string> ReadLineAsync() =>
            await _process.StandardOutput.ReadLineAsync(_timeout.Token) ?? throw new InvalidOperationException("The tool ended: " + await _process.StandardError.ReadToEndAsync());

        /// <summary>Waits for the process to end successfully; returns the rest of its output.</summary>
        public async Task<string> ExitAsync()
        {
            var output = _process.StandardOutput.ReadToEndAsync(_timeout.Token);
            var error = _process.StandardError.ReadToEndAsync(_timeout.Token);
            await _process.WaitForExitAsync(_timeout.Token);
            Assert.True(_process.ExitCode == 0, $"exit code {_process.ExitCode}: {await error}");
            return await output;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            _process.Dispose();
            _timeout.Dispose();
        }
    }

    private static string[] Endpoint(BrokerHost host) => ["-h", "127.0.0.1", "-p", host.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)];

    private static string[] Args(BrokerHost host, params string[] rest) => [.. Endpoint(host), .. rest];

    [Fact]
    public async Task Mosquitto_sub_5_0_receives_what_mosquitto_pub_3_1_1_sends()
    {
        await using var host = await BrokerHost.StartAsync();
        using var sub = Tool.Start("mosquitto_sub", Args(host, "-V", "mqttv5", "-t", "#", "-v", "-C", "1", "-W", "20"));

        // Retained: whether the subscription is in place before the publish or not, the subscriber gets it once.
        await Tool.RunAsync("mosquitto_pub", Args(host, "-V", "mqttv311", "-q", "2", "-r", "-t", "a/b", "-m", "hi"));
        Assert.Equal("a/b hi", (await sub.ExitAsync()).TrimEnd());
    }

    [Theory]
    [InlineData("mqttv311", "mqttv5")]
    [InlineData("mqttv5", "mqttv311")]
    [InlineData("mqttv31", "mqttv311")]
    public async Task Retained_message_reaches_a_later_subscriber(string publisherVersion, string subscriberVersion)
    {
        await using var host = await BrokerHost.StartAsync();
        await Tool.RunAsync("mosquitto_pub", Args(host, "-V", publisherVersion, "-q", "1", "-r", "-t", "r/1", "-m", "kept"));
        Assert.Equal(1, host.Broker.RetainedCount(""));
        var output = await Tool.RunAsync("mosquitto_sub", Args(host, "-V", subscriberVersion, "-t", "r/+", "-F", "%t %r %p", "-C", "1", "-W", "20"));
        Assert.Equal("r/1 1 kept", output.TrimEnd());

        // An empty retained message clears it.
        await Tool.RunAsync("mosquitto_pub", Args(host, "-V", publisherVersion, "-q", "1", "-r", "-t", "r/1", "-n"));
        Assert.Equal(0, host.Broker.RetainedCount(""));
    }

    [Theory]
    [InlineData("mqttv311", "1")]
    [InlineData("mqttv311", "2")]
    [InlineData("mqttv5", "1")]
    [InlineData("mqttv5", "2")]
    public async Task Live_delivery_at_qos_1_and_2(string version, string qos)
    {
        await using var host = await BrokerHost.StartAsync();

        // A retained "ready" message is the subscriber's signal that its subscriptions are in place.
        await Tool.RunAsync("mosquitto_pub", Args(host, "-V", version, "-q", "2", "-r", "-t", "ready", "-m", "1"));
        using var sub = Tool.Start("mosquitto_sub", Args(host, "-V", version, "-q", qos, "-t", "ready", "-t", "q/t", "-F", "%t %q %r %p", "-C", "2", "-W", "20"));
        Assert.Equal($"ready {qos} 1 1", await sub.ReadLineAsync());

        await Tool.RunAsync("mosquitto_pub", Args(host, "-V", version, "-q", qos, "-t", "q/t", "-m", "hello"));
        Assert.Equal($"q/t {qos} 0 hello", (await sub.ExitAsync()).TrimEnd());
    }

    [Theory]
    [InlineData("mqttv311")]
    [InlineData("mqttv5")]
    public async Task Publish_and_subscribe_over_tls(string version)
    {
        await using var host = await BrokerHost.StartAsync(tls: true);
        string[] tls = ["--cafile", host.CertificatePath, "-h", "localhost", "-p", host.TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture)];
        await Tool.RunAsync("mosquitto_pub", [.. tls, "-V", version, "-q", "2", "-r", "-t", "tls/t", "-m", "secret"]);
        var output = await Tool.RunAsync("mosquitto_sub", [.. tls, "-V", version, "-q", "2", "-t", "tls/#", "-v", "-C", "1", "-W", "20"]);
        Assert.Equal("tls/t secret", output.TrimEnd());
    }

    [Fact]
    public async Task User_properties_travel_both_ways_in_5_0()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "mqttnet", MqttProtocolVersion.V500);
        await client.Client.SubscribeAsync("up/from-mosquitto", MqttQualityOfServiceLevel.AtLeastOnce);
        await Tool.RunAsync("mosquitto_pub", Args(host, "-V", "mqttv5", "-q", "1", "-t", "up/from-mosquitto", "-m", "x", "-D", "publish", "user-property", "k", "v", "-D", "publish", "user-property", "k2", "v2"));
        var received = (await client.NextAsync()).ApplicationMessage;
        Assert.Equal([("k", "v"), ("k2", "v2")], received.UserProperties.Select(p => (p.Name, System.Text.Encoding.UTF8.GetString(p.ValueBuffer.Span))));

        await client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("up/from-mqttnet").WithPayload("y").WithRetainFlag().WithUserProperty("a", new ReadOnlyMemory<byte>("b"u8.ToArray())).Build());
        var output = await Tool.RunAsync("mosquitto_sub", Args(host, "-V", "mqttv5", "-t", "up/from-mqttnet", "-F", "%P %p", "-C", "1", "-W", "20"));
        Assert.Equal("a:b y", output.TrimEnd());
    }
}
