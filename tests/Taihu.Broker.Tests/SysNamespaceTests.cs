using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;

namespace Taihu.Broker.Tests;

/// <summary>
/// $SYS lives in the default namespace only: tenants do not see the broker's totals. The authenticator puts user
/// "t" in namespace "tenant" and everyone else in the default one. "Receives nothing" is shown by a sentinel
/// published inside the tenant's namespace after the $SYS cycle, arriving as the tenant's first message.
/// </summary>
public class SysNamespaceTests
{
    private const string LastOfCycle = "$SYS/broker/retained messages/count";

    private sealed class TenantAuthenticator : IMqttAuthenticator
    {
        public ValueTask<AuthenticationResult> AuthenticateAsync(ConnectContext context, CancellationToken cancellationToken) =>
            ValueTask.FromResult(AuthenticationResult.Success(context.UserName == "t" ? new ClientIdentity("tenant", "t") : ClientIdentity.Anonymous));
    }

    private static Task<TestClient> ConnectAsync(BrokerHost host, string clientId, MqttProtocolVersion version, string? user = null) =>
        TestClient.ConnectAsync(host, clientId, version, b =>
        {
            // Keep alive off: the fake clock must not disconnect the test's own clients.
            b.WithKeepAlivePeriod(TimeSpan.Zero);
            if (user is not null)
            {
                b.WithCredentials(user, "x");
            }
        });

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Sys_topics_reach_the_default_namespace_and_not_a_tenant(MqttProtocolVersion version)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        await using var host = await BrokerHost.StartAsync(o => o.SysInterval = 10, time, s => s.AddSingleton<IMqttAuthenticator, TenantAuthenticator>());
        await using var admin = await ConnectAsync(host, "admin", version);
        await admin.Client.SubscribeAsync("$SYS/#");
        await using var tenant = await ConnectAsync(host, "tenant-monitor", version, user: "t");
        await tenant.Client.SubscribeAsync("$SYS/#");
        await tenant.Client.SubscribeAsync("sentinel", MqttQualityOfServiceLevel.AtLeastOnce);

        // The timer callbacks run inside Advance: the whole cycle has been routed when it returns.
        time.Advance(TimeSpan.FromSeconds(10));

        // Retained values from the cycle at start-up may come first; the live cycle is not retained.
        string? sysVersion = null;
        while (true)
        {
            var message = (await admin.NextAsync()).ApplicationMessage;
            if (message.Retain)
            {
                continue;
            }

            if (message.Topic == "$SYS/broker/version")
            {
                sysVersion = message.ConvertPayloadToString();
            }

            if (message.Topic == LastOfCycle)
            {
                break;
            }
        }

        Assert.StartsWith("taihu version ", sysVersion, StringComparison.Ordinal);

        await tenant.Client.PublishStringAsync("sentinel", "s", MqttQualityOfServiceLevel.AtLeastOnce);
        var first = (await tenant.NextAsync()).ApplicationMessage;
        Assert.Equal(("sentinel", "s"), (first.Topic, first.ConvertPayloadToString()));
        Assert.Equal(0, host.Broker.RetainedCount("tenant"));
        Assert.True(host.Broker.RetainedCount("") > 0);
    }
}
