using System.Text;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// Namespaces (tenants): the authenticator puts user "a" in "tenant-a" and "b" in "tenant-b"; topics, retained
/// messages, client ids and $share groups never cross. "Never arrives" is shown by a marker from the same
/// tenant arriving first.
/// </summary>
public class NamespaceIsolationTests
{
    private sealed class TenantAuthenticator : IMqttAuthenticator
    {
        public ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken)
        {
            var password = context.Password is { } p ? Encoding.UTF8.GetString(p.Span) : null;
            return ValueTask.FromResult((context.UserName, password) switch
            {
                ("a", "pa") => AuthenticationResult.Success(new ClientIdentity("tenant-a", "a")),
                ("b", "pb") => AuthenticationResult.Success(new ClientIdentity("tenant-b", "b")),
                ("a" or "b", _) => AuthenticationResult.Fail(ReasonCode.BadUserNameOrPassword),
                _ => AuthenticationResult.Fail(ReasonCode.NotAuthorized),
            });
        }
    }

    private static Task<BrokerHost> StartAsync() =>
        BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttAuthenticator, TenantAuthenticator>());

    private static Task<TestClient> ConnectAsync(BrokerHost host, string clientId, string user, MqttProtocolVersion version) =>
        TestClient.ConnectAsync(host, clientId, version, b => b.WithCredentials(user, "p" + user));

    private static async Task<TestClient> SubscriberAsync(BrokerHost host, string clientId, string user, MqttProtocolVersion version, string filter = "#")
    {
        var client = await ConnectAsync(host, clientId, user, version);
        await client.Client.SubscribeAsync(filter, MqttQualityOfServiceLevel.AtLeastOnce);
        return client;
    }

    private static Task PublishAsync(TestClient client, string topic, string payload, bool retain = false) =>
        client.Client.PublishStringAsync(topic, payload, MqttQualityOfServiceLevel.AtLeastOnce, retain);

    private static async Task AssertNextAsync(TestClient client, string topic, string payload)
    {
        var message = (await client.NextAsync()).ApplicationMessage;
        Assert.Equal((topic, payload), (message.Topic, message.ConvertPayloadToString()));
    }

    private static ConnectPacket Connect(string clientId, MqttProtocolVersion version, string user, string password)
    {
        var connect = RawPackets.Connect(clientId, version);
        connect.UserName = user;
        connect.Password = Encoding.UTF8.GetBytes(password);
        return connect;
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Publish_never_reaches_a_subscriber_in_another_namespace(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using var subA = await SubscriberAsync(host, "sub-a", "a", version);
        await using var subB = await SubscriberAsync(host, "sub-b", "b", version);
        await using var pubA = await ConnectAsync(host, "pub-a", "a", version);
        await using var pubB = await ConnectAsync(host, "pub-b", "b", version);

        await PublishAsync(pubA, "sensors/1", "from a");
        await PublishAsync(pubB, "sensors/1", "from b");

        await AssertNextAsync(subA, "sensors/1", "from a");
        await AssertNextAsync(subB, "sensors/1", "from b");
        await PublishAsync(pubA, "marker", "a");
        await PublishAsync(pubB, "marker", "b");
        await AssertNextAsync(subA, "marker", "a");
        await AssertNextAsync(subB, "marker", "b");
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Retained_messages_are_not_visible_across_namespaces(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using (var pubA = await ConnectAsync(host, "pub-a", "a", version))
        {
            await PublishAsync(pubA, "config/1", "retained in a", retain: true);
        }

        Assert.Equal(1, host.Broker.RetainedCount("tenant-a"));
        Assert.Equal(0, host.Broker.RetainedCount("tenant-b"));
        Assert.Equal(0, host.Broker.RetainedCount(""));

        await using var subB = await SubscriberAsync(host, "sub-b", "b", version);
        await using var pubB = await ConnectAsync(host, "pub-b", "b", version);
        await PublishAsync(pubB, "marker", "b");
        await AssertNextAsync(subB, "marker", "b");

        await using var subA = await SubscriberAsync(host, "sub-a", "a", version);
        await AssertNextAsync(subA, "config/1", "retained in a");
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Same_client_id_in_two_namespaces_does_not_take_over(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        var (inA, ackA) = await RawClient.ConnectAsync(host, Connect("device-1", version, "a", "pa"));
        await using var a = inA;
        Assert.Equal(ReasonCode.Success, ackA.ReasonCode);
        var (inB, ackB) = await RawClient.ConnectAsync(host, Connect("device-1", version, "b", "pb"));
        await using var b = inB;
        Assert.Equal(ReasonCode.Success, ackB.ReasonCode);
        Assert.False(ackB.SessionPresent);

        // The first connection is still open: it answers a ping, not with DISCONNECT 0x8E.
        await inA.SendAsync(PingReqPacket.Instance);
        await inA.ExpectAsync<PingRespPacket>();
        await inB.SendAsync(PingReqPacket.Instance);
        await inB.ExpectAsync<PingRespPacket>();
        Assert.NotNull(host.Broker.FindSession("tenant-a", "device-1"));
        Assert.NotNull(host.Broker.FindSession("tenant-b", "device-1"));
        Assert.Null(host.Broker.FindSession("", "device-1"));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Share_groups_with_the_same_name_are_separate(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using var subA = await SubscriberAsync(host, "sub-a", "a", version, "$share/workers/jobs/#");
        await using var subB = await SubscriberAsync(host, "sub-b", "b", version, "$share/workers/jobs/#");
        await using var pubA = await ConnectAsync(host, "pub-a", "a", version);
        await using var pubB = await ConnectAsync(host, "pub-b", "b", version);

        // Each group has one member: everything published in a goes to sub-a, nothing to sub-b.
        await PublishAsync(pubA, "jobs/1", "a1");
        await PublishAsync(pubA, "jobs/2", "a2");
        await PublishAsync(pubB, "jobs/marker", "b");
        await AssertNextAsync(subA, "jobs/1", "a1");
        await AssertNextAsync(subA, "jobs/2", "a2");
        await AssertNextAsync(subB, "jobs/marker", "b");
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Wrong_password_is_refused(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using var client = await RawClient.OpenAsync(host);
        client.Version = version.ToRaw();
        await client.SendAsync(Connect("device-1", version, "a", "pb"));
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(ReasonCode.BadUserNameOrPassword, ack.ReasonCode);
        }
        else
        {
            Assert.Equal(ConnectReturnCode.BadUserNameOrPassword, ack.ReasonCode.ToConnectReturnCode());
        }

        Assert.Equal(0, host.Broker.SessionCount);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Refused_identity_is_not_authorized(MqttProtocolVersion version)
    {
        await using var host = await StartAsync();
        await using var client = await RawClient.OpenAsync(host);
        client.Version = version.ToRaw();
        await client.SendAsync(Connect("device-1", version, "mallory", "whatever"));
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(ReasonCode.NotAuthorized, ack.ReasonCode);
        }
        else
        {
            Assert.Equal(ConnectReturnCode.NotAuthorized, ack.ReasonCode.ToConnectReturnCode());
        }

        Assert.Equal(0, host.Broker.SessionCount);
    }
}
