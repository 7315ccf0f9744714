using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Retained messages and persistent sessions survive a graceful restart, as with Mosquitto's <c>persistence
/// true</c>: the server is stopped with SIGTERM and started again on the same data directory, and nothing is
/// published after the restart, so what the clients receive can only come from the store.
/// </summary>
public sealed class PersistenceTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task RetainedMessageAndQueuedQoS1Message_SurviveAGracefulRestart(MqttProtocolVersion version)
    {
        var dataDirectory = ServerProcess.NewDataDirectory();
        var clientId = $"persistent-{version}";
        try
        {
            await using (var server = await ServerProcess.StartAsync(dataDirectory: dataDirectory))
            {
                await using (var persistent = await MqttTestClient.ConnectPersistentTcpAsync(server, clientId, version))
                {
                    Assert.False(persistent.ConnectResult!.IsSessionPresent);
                    await persistent.SubscribeAsync("persist/queued");
                }

                await using (var publisher = await MqttTestClient.ConnectTcpAsync(server, "persist-publisher"))
                {
                    await publisher.PublishAsync("persist/retained", "kept across restarts", retain: true);
                    // The subscriber is away: the broker queues this for its session.
                    await publisher.PublishAsync("persist/queued", "queued before the stop");
                }

                await server.SignalAsync("TERM");
                Assert.Equal(0, await server.WaitForExitAsync());
            }

            await using var restarted = await ServerProcess.StartAsync(dataDirectory: dataDirectory);

            await using var newcomer = await MqttTestClient.ConnectTcpAsync(restarted, "persist-newcomer", version);
            await newcomer.SubscribeAsync("persist/retained");
            var retained = await newcomer.NextAsync();
            Assert.Equal(("persist/retained", "kept across restarts", true), (retained.Topic, retained.ConvertPayloadToString(), retained.Retain));

            await using var resumed = await MqttTestClient.ConnectPersistentTcpAsync(restarted, clientId, version);
            Assert.True(resumed.ConnectResult!.IsSessionPresent);
            var queued = await resumed.NextAsync();
            Assert.Equal(("persist/queued", "queued before the stop", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce),
                (queued.Topic, queued.ConvertPayloadToString(), queued.QualityOfServiceLevel));
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(dataDirectory);
        }
    }
}
