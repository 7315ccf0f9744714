using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// Re-authentication (5.0 section 4.12.1, AUTH 0x19 after CONNACK) is not supported: the broker answers with
/// DISCONNECT 0x82 and a reason string, then closes the connection, whether or not the client authenticated with
/// an Authentication Method in CONNECT.
/// </summary>
public class ReauthenticationTests
{
    private const string Method = "TEST-TOKEN";

    /// <summary>One step: the token "good" is accepted at once.</summary>
    private sealed class TokenAuthenticator : IMqttEnhancedAuthenticator
    {
        public bool Supports(string method) => method == Method;

        public ValueTask<AuthenticationStep> AuthenticateAsync(ConnectContext context, int step, ReadOnlyMemory<byte>? clientData, CancellationToken cancellationToken) =>
            ValueTask.FromResult(clientData is { } data && Encoding.UTF8.GetString(data.Span) == "good"
                ? AuthenticationStep.Success(new ClientIdentity("", "device"))
                : AuthenticationStep.Fail(ReasonCode.NotAuthorized));
    }

    private static AuthPacket Reauthenticate() => new()
    {
        ReasonCode = ReasonCode.ReAuthenticate,
        Properties = new MqttProperties { AuthenticationMethod = Method, AuthenticationData = Encoding.UTF8.GetBytes("good") },
    };

    private static async Task AssertRefusedAsync(BrokerHost host, RawClient client)
    {
        await client.SendAsync(Reauthenticate());
        var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
        Assert.Equal("Re-authentication is not supported.", disconnect.Properties?.ReasonString);
        await host.WaitUntilSessionGoneAsync("c1");
    }

    [Fact]
    public async Task Auth_after_connack_gets_disconnect_0x82_and_the_connection_closes()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "c1");
        await AssertRefusedAsync(host, client);
    }

    [Fact]
    public async Task Auth_after_an_enhanced_authentication_gets_disconnect_0x82_too()
    {
        await using var host = await BrokerHost.StartAsync(services: s => s.AddSingleton<IMqttEnhancedAuthenticator, TokenAuthenticator>());
        await using var client = await RawSession.ConnectAsync(host, ProtocolVersion.V500, "c1", connect =>
            connect.Properties = new MqttProperties { AuthenticationMethod = Method, AuthenticationData = Encoding.UTF8.GetBytes("good") });
        await AssertRefusedAsync(host, client);
    }
}
