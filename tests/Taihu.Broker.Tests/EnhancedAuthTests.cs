using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Extensibility;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>Enhanced authentication (5.0 section 4.12): CONNECT with an Authentication Method, AUTH 0x18 exchanges, then CONNACK.</summary>
public class EnhancedAuthTests
{
    private const string Method = "TEST-CHALLENGE";

    /// <summary>A two-step method: the client says hello, the server sends a nonce, the client answers "nonce:secret".</summary>
    private sealed class ChallengeAuthenticator : IMqttEnhancedAuthenticator
    {
        public bool Supports(string method) => method == Method;

        public ValueTask<AuthenticationStep> AuthenticateAsync(ConnectContext context, int step, ReadOnlyMemory<byte>? clientData, CancellationToken cancellationToken)
        {
            var text = clientData is { } data ? Encoding.UTF8.GetString(data.Span) : "";
            return ValueTask.FromResult((step, text) switch
            {
                (0, "hello") => AuthenticationStep.Continue(Encoding.UTF8.GetBytes("nonce-1")),
                (1, "nonce-1:secret") => AuthenticationStep.Success(new ClientIdentity("", "alice"), Encoding.UTF8.GetBytes("welcome")),
                _ => AuthenticationStep.Fail(ReasonCode.NotAuthorized),
            });
        }
    }

    private static Task<BrokerHost> StartAsync(FakeTimeProvider? time = null) =>
        BrokerHost.StartAsync(time: time, services: s => s.AddSingleton<IMqttEnhancedAuthenticator, ChallengeAuthenticator>());

    private static ConnectPacket Connect(string method, string data)
    {
        var connect = RawPackets.Connect("auth-1", ProtocolVersion.V500);
        connect.Properties = new MqttProperties { AuthenticationMethod = method, AuthenticationData = Encoding.UTF8.GetBytes(data) };
        return connect;
    }

    private static AuthPacket Continue(string method, string data) => new()
    {
        ReasonCode = ReasonCode.ContinueAuthentication,
        Properties = new MqttProperties { AuthenticationMethod = method, AuthenticationData = Encoding.UTF8.GetBytes(data) },
    };

    private static string Text(ReadOnlyMemory<byte>? data) => data is { } d ? Encoding.UTF8.GetString(d.Span) : "";

    private static async Task<RawClient> OpenAsync(BrokerHost host)
    {
        var client = await RawClient.OpenAsync(host);
        client.Version = ProtocolVersion.V500;
        return client;
    }

    [Fact]
    public async Task Challenge_and_response_complete_with_connack_success()
    {
        await using var host = await StartAsync();
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect(Method, "hello"));

        var challenge = await client.ExpectAsync<AuthPacket>();
        Assert.Equal(ReasonCode.ContinueAuthentication, challenge.ReasonCode);
        Assert.Equal(Method, challenge.Properties?.AuthenticationMethod);
        Assert.Equal("nonce-1", Text(challenge.Properties?.AuthenticationData));

        await client.SendAsync(Continue(Method, "nonce-1:secret"));
        var ack = await client.ExpectAsync<ConnAckPacket>();
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Equal(Method, ack.Properties?.AuthenticationMethod);
        Assert.Equal("welcome", Text(ack.Properties?.AuthenticationData));

        await client.SendAsync(PingReqPacket.Instance);
        await client.ExpectAsync<PingRespPacket>();
        Assert.NotNull(host.Broker.FindSession("", "auth-1"));
    }

    [Fact]
    public async Task Wrong_response_is_refused()
    {
        await using var host = await StartAsync();
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect(Method, "hello"));
        await client.ExpectAsync<AuthPacket>();
        await client.SendAsync(Continue(Method, "nonce-1:guess"));

        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.NotAuthorized, ack.ReasonCode);
        Assert.Null(host.Broker.FindSession("", "auth-1"));
    }

    [Fact]
    public async Task Unsupported_method_is_refused_with_0x8C()
    {
        await using var host = await StartAsync();
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect("SCRAM-SHA-1", "client-first"));
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.BadAuthenticationMethod, ack.ReasonCode);
    }

    [Fact]
    public async Task Any_method_is_refused_with_0x8C_without_an_enhanced_authenticator()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect(Method, "hello"));
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await client.ReceiveUntilClosedAsync()));
        Assert.Equal(ReasonCode.BadAuthenticationMethod, ack.ReasonCode);
    }

    [Fact]
    public async Task Auth_with_another_method_ends_the_exchange()
    {
        await using var host = await StartAsync();
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect(Method, "hello"));
        await client.ExpectAsync<AuthPacket>();
        await client.SendAsync(Continue("OTHER", "nonce-1:secret"));
        var packets = await client.ReceiveUntilClosedAsync();
        Assert.DoesNotContain(packets, p => p is ConnAckPacket { ReasonCode: ReasonCode.Success });
        Assert.Null(host.Broker.FindSession("", "auth-1"));
    }

    [Fact]
    public async Task Other_packets_during_the_exchange_end_it()
    {
        await using var host = await StartAsync();
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect(Method, "hello"));
        await client.ExpectAsync<AuthPacket>();
        await client.SendAsync(RawPackets.Subscribe(1, "t", QoS.AtMostOnce));
        var packets = await client.ReceiveUntilClosedAsync();
        Assert.DoesNotContain(packets, p => p is ConnAckPacket or SubAckPacket);
    }

    [Fact]
    public async Task Unfinished_exchange_is_closed_after_the_connect_timeout()
    {
        var time = new FakeTimeProvider();
        await using var host = await StartAsync(time);
        await using var client = await OpenAsync(host);
        await client.SendAsync(Connect(Method, "hello"));
        await client.ExpectAsync<AuthPacket>();

        time.Advance(TimeSpan.FromSeconds(host.Broker.Options.ConnectTimeoutSeconds));
        Assert.Empty(await client.ReceiveUntilClosedAsync());
    }
}
