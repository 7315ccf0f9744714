using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>A device connected over MQTT with its access token as user name (MQTTnet client), queueing what it receives.</summary>
public sealed class DeviceClient : ReceivingMqttClient
{
    private DeviceClient(IMqttClient client)
        : base(client)
    {
    }

    public static async Task<DeviceClient> ConnectAsync(ServerProcess server, string? userName, MqttProtocolVersion version = MqttProtocolVersion.V500,
        string? password = null, string? clientId = null, bool persistent = false)
    {
        var device = new DeviceClient(new MqttClientFactory().CreateMqttClient());
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", server.TcpPort)
            .WithClientId(clientId ?? "device-" + Guid.NewGuid().ToString("N"))
            .WithProtocolVersion(version)
            .WithTimeout(Guard);
        if (userName is not null)
        {
            builder = builder.WithCredentials(userName, password);
        }

        if (persistent)
        {
            // Clean Session 0 (3.1.1), Clean Start 0 with an hour of Session Expiry Interval (5.0).
            builder = builder.WithCleanSession(false);
            if (version == MqttProtocolVersion.V500)
            {
                builder = builder.WithSessionExpiryInterval(3600);
            }
        }

        var result = await device.Client.ConnectAsync(builder.Build()).WaitAsync(Guard);
        device.ConnectResult = result;
        Assert.True(result.ResultCode == MqttClientConnectResultCode.Success, $"CONNECT refused: {result.ResultCode}");
        return device;
    }

    /// <summary>The CONNACK as MQTTnet read it (Session Present, among others).</summary>
    public MqttClientConnectResult ConnectResult { get; private set; } = null!;

    public async Task<MqttClientSubscribeResultCode> TrySubscribeAsync(string filter)
    {
        var result = await Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Guard);
        return result.Items.Single().ResultCode;
    }

    public async Task SubscribeAsync(string filter)
    {
        var code = await TrySubscribeAsync(filter);
        Assert.True((int)code <= 2, $"SUBSCRIBE {filter} refused: {code}");
    }

    /// <summary>Publishes and returns the acknowledgement's result (QoS 1/2 wait for PUBACK/PUBCOMP).</summary>
    public async Task<MqttClientPublishResult> TryPublishAsync(string topic, string payload, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        await Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(qos).Build()).WaitAsync(Guard);

    public async Task PublishAsync(string topic, string payload, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var result = await TryPublishAsync(topic, payload, qos);
        Assert.True(result.IsSuccess, $"PUBLISH {topic} refused: {result.ReasonCode} {result.ReasonString}");
    }
}
