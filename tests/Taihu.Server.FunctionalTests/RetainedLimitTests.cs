using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Retained messages are capped in bytes, per message (<c>Broker:MaximumRetainedMessageSize</c>, 64 KiB by
/// default) and per namespace (<c>Broker:MaximumRetainedBytesPerNamespace</c>). A 5.0 publish over a cap gets
/// PUBACK 0x97 and goes nowhere; a 3.1.1 one is delivered live but not retained, as EMQX does. The per-namespace
/// cap is lowered to 256 KiB here so that a few messages reach it.
/// </summary>
public sealed class RetainedLimitTests : IAsyncLifetime
{
    private const int NamespaceCap = 256 * 1024;
    private ServerProcess _server = null!;

    public async Task InitializeAsync() =>
        _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Broker__MaximumRetainedBytesPerNamespace"] = NamespaceCap.ToString(System.Globalization.CultureInfo.InvariantCulture) });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static Task<MqttClientPublishResult> PublishAsync(MqttTestClient client, string topic, int size, bool retain = true, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(new byte[size]).WithRetainFlag(retain).WithQualityOfServiceLevel(qos).Build());

    /// <summary>Subscribes a new client to <paramref name="topic"/>; the first message it gets is a retained one, or the marker published after the SUBACK.</summary>
    private async Task<MqttApplicationMessage> FirstAfterSubscribeAsync(string topic)
    {
        await using var late = await MqttTestClient.ConnectTcpAsync(_server, "late-" + Guid.NewGuid().ToString("N"));
        await late.SubscribeAsync(topic);
        await using var marker = await MqttTestClient.ConnectTcpAsync(_server, "marker-" + Guid.NewGuid().ToString("N"));
        await marker.PublishAsync(topic, "marker");
        return await late.NextAsync();
    }

    [Fact]
    public async Task RetainedPublishOverTheMessageSize_IsRefusedWith0x97_In5()
    {
        await using var publisher = await MqttTestClient.ConnectTcpAsync(_server, "big-v5");
        var result = await PublishAsync(publisher, "big/v5", 100_000);
        Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, result.ReasonCode);
        Assert.True((await PublishAsync(publisher, "small/v5", 64 * 1024 - 100)).ReasonCode is MqttClientPublishReasonCode.Success or MqttClientPublishReasonCode.NoMatchingSubscribers);
        Assert.Equal("marker", (await FirstAfterSubscribeAsync("big/v5")).ConvertPayloadToString());
        Assert.True((await FirstAfterSubscribeAsync("small/v5")).Retain);
    }

    [Fact]
    public async Task RetainedPublishOverTheMessageSize_IsDeliveredButNotRetained_In311()
    {
        await using var live = await MqttTestClient.ConnectTcpAsync(_server, "live-311", MqttProtocolVersion.V311);
        await live.SubscribeAsync("big/v311");
        await using var publisher = await MqttTestClient.ConnectTcpAsync(_server, "big-v311", MqttProtocolVersion.V311);
        Assert.True((await PublishAsync(publisher, "big/v311", 100_000)).IsSuccess);
        Assert.Equal(100_000, (await live.NextAsync()).Payload.Length);
        Assert.Equal("marker", (await FirstAfterSubscribeAsync("big/v311")).ConvertPayloadToString());
    }

    [Fact]
    public async Task RetainedBytesOfANamespace_AreCapped_ReplacementsAndDeletionsStillWork_AndOtherNamespacesAreNotAffected()
    {
        const int size = 60 * 1024;
        await using var publisher = await MqttTestClient.ConnectTcpAsync(_server, "filler");
        for (var i = 0; i < NamespaceCap / size; i++)
        {
            Assert.True((await PublishAsync(publisher, $"fill/{i}", size)).ReasonCode is MqttClientPublishReasonCode.Success or MqttClientPublishReasonCode.NoMatchingSubscribers);
        }

        Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, (await PublishAsync(publisher, "fill/over", size)).ReasonCode);
        // Replacing a retained message with one of the same size needs no more room.
        Assert.NotEqual(MqttClientPublishReasonCode.QuotaExceeded, (await PublishAsync(publisher, "fill/0", size)).ReasonCode);

        // A tenant's devices have a namespace, and a cap, of their own.
        using var sysAdmin = await PlatformApi.SysAdminAsync(_server);
        var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Retained " + Guid.NewGuid().ToString("N")[..8]);
        using (admin)
        {
            var (_, token) = await admin.CreateDeviceAsync("retainer");
            await using var device = await DeviceClient.ConnectAsync(_server, token);
            var result = await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("fill/over").WithPayload(new byte[size]).WithRetainFlag()
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.NotEqual(MqttClientPublishReasonCode.QuotaExceeded, result.ReasonCode);
        }

        // Deleting one makes room again.
        await PublishAsync(publisher, "fill/1", 0);
        Assert.NotEqual(MqttClientPublishReasonCode.QuotaExceeded, (await PublishAsync(publisher, "fill/over", size)).ReasonCode);
        Assert.True((await FirstAfterSubscribeAsync("fill/over")).Retain);
    }
}
