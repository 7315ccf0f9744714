using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;

namespace Taihu.Broker.Tests;

/// <summary>
/// Sessions are keyed by owner (<see cref="ClientIdentity.SessionOwner"/>) as well as client id: the
/// authenticator here makes user "a" owner "a" and "b" owner "b", in one namespace; without a user name, no owner.
/// </summary>
public class SessionOwnershipTests
{
    private sealed class OwnerAuthenticator : IMqttAuthenticator
    {
        public ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken) =>
            ValueTask.FromResult(AuthenticationResult.Success(new ClientIdentity("tenant", context.UserName) { SessionOwner = context.UserName }));
    }

    private static Task<BrokerHost> StartAsync() => BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttAuthenticator, OwnerAuthenticator>());

    private static Task<TestClient> ConnectAsync(BrokerHost host, string? user, MqttProtocolVersion version = MqttProtocolVersion.V500, bool persistent = false) =>
        TestClient.ConnectAsync(host, "shared-id", version, b =>
        {
            if (user is not null)
            {
                b.WithCredentials(user, "");
            }

            if (persistent)
            {
                b.WithCleanSession(false);
                if (version == MqttProtocolVersion.V500)
                {
                    b.WithSessionExpiryInterval(600);
                }
            }
        });

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Another_owner_with_the_same_client_id_gets_its_own_session_and_does_not_kick_the_first(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using var a = await ConnectAsync(host, "a", version, persistent: true);
        await a.Client.SubscribeAsync("a/#", MqttQualityOfServiceLevel.AtLeastOnce);
        await using var b = await ConnectAsync(host, "b", version, persistent: true);
        Assert.False(b.ConnectResult!.IsSessionPresent);

        await b.Client.PublishStringAsync("a/x", "still here", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("still here", (await a.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        Assert.True(a.Client.IsConnected);
        Assert.Equal(1, host.Broker.FindSession("tenant", "shared-id", "a")!.SubscriptionCount);
        Assert.Equal(0, host.Broker.FindSession("tenant", "shared-id", "b")!.SubscriptionCount);

        await using var again = await ConnectAsync(host, "a", version, persistent: true);
        Assert.True(again.ConnectResult!.IsSessionPresent);
    }

    [Fact]
    public async Task No_local_skips_only_the_publishers_own_session()
    {
        await using var host = await StartAsync();
        await using var a = await ConnectAsync(host, "a");
        await using var b = await ConnectAsync(host, "b");
        var noLocal = new MqttTopicFilterBuilder().WithTopic("t").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithNoLocal().Build();
        await a.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(noLocal).Build());
        await b.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(noLocal).Build());
        await a.Client.SubscribeAsync("marker", MqttQualityOfServiceLevel.AtLeastOnce);

        await a.Client.PublishStringAsync("t", "from a", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("from a", (await b.NextAsync()).ApplicationMessage.ConvertPayloadToString());
        await a.Client.PublishStringAsync("marker", "m", MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal("marker", (await a.NextAsync()).ApplicationMessage.Topic);
    }

    [Fact]
    public async Task Clients_without_an_owner_share_sessions_by_client_id_as_in_a_plain_broker()
    {
        await using var host = await StartAsync();
        await using var first = await ConnectAsync(host, null, persistent: true);
        await first.Client.SubscribeAsync("x", MqttQualityOfServiceLevel.AtLeastOnce);
        await using var second = await ConnectAsync(host, null, persistent: true);
        Assert.True(second.ConnectResult!.IsSessionPresent);
    }
}
