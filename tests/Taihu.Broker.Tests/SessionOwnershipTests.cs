using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

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

    /// <summary>
    /// Only the session's own owner reconnecting within the Will Delay Interval cancels the will: another owner
    /// with the same client id gets a session of its own, and the first owner's will goes out when its delay ends.
    /// </summary>
    [Fact]
    public async Task Another_owner_with_the_same_client_id_does_not_cancel_a_delayed_will()
    {
        var time = new FakeTimeProvider();
        await using var host = await BrokerHost.StartAsync(time: time, services: s => s.AddSingleton<IMqttAuthenticator, OwnerAuthenticator>());
        await using var watcher = await TestClient.ConnectAsync(host, "watcher", MqttProtocolVersion.V500, b => b.WithCredentials("watcher", "").WithKeepAlivePeriod(TimeSpan.Zero));
        await watcher.Client.SubscribeAsync("will/#", MqttQualityOfServiceLevel.AtLeastOnce);
        var connect = RawPackets.Connect("shared-id", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60,
            will: RawPackets.Will("will/a", "gone", properties: new MqttProperties { WillDelayInterval = 10 }));
        connect.UserName = "a";
        var (a, ackA) = await RawClient.ConnectAsync(host, connect);
        Assert.Equal(ReasonCode.Success, ackA.ReasonCode);
        await a.DisposeAsync();
        await BrokerState.WaitUntilAsync(() =>
        {
            var session = host.Broker.FindSession("tenant", "shared-id", "a");
            if (session is null)
            {
                return false;
            }

            return session.IsWillPending;
        }, "the will of 'a' is pending");

        time.Advance(TimeSpan.FromSeconds(5));
        var other = RawPackets.Connect("shared-id", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60);
        other.UserName = "b";
        var (b, ackB) = await RawClient.ConnectAsync(host, other);
        await using var __ = b;
        Assert.Equal(ReasonCode.Success, ackB.ReasonCode);
        Assert.False(ackB.SessionPresent);

        time.Advance(TimeSpan.FromSeconds(5));
        var will = (await watcher.NextAsync()).ApplicationMessage;
        Assert.Equal(("will/a", "gone"), (will.Topic, will.ConvertPayloadToString()));
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
