using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using MQTTnet;
using MQTTnet.Formatter;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>An MQTTnet client of a <see cref="ServerProcess"/> that queues what it receives.</summary>
public sealed class MqttTestClient : ReceivingMqttClient
{
    private MqttTestClient(IMqttClient client)
        : base(client)
    {
    }

    /// <summary>The CONNACK as MQTTnet read it (Session Present, among others).</summary>
    public MqttClientConnectResult? ConnectResult { get; private set; }

    public static Task<MqttTestClient> ConnectTcpAsync(ServerProcess server, string clientId, MqttProtocolVersion version = MqttProtocolVersion.V500) =>
        ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", server.TcpPort), clientId, version);

    /// <summary>
    /// Connects with a persistent session: Clean Session 0 for 3.1.1, Clean Start 0 and
    /// <paramref name="sessionExpiry"/> seconds of Session Expiry Interval for 5.0.
    /// </summary>
    public static Task<MqttTestClient> ConnectPersistentTcpAsync(ServerProcess server, string clientId, MqttProtocolVersion version, uint sessionExpiry = 3600)
    {
        var builder = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", server.TcpPort).WithCleanSession(false);
        if (version == MqttProtocolVersion.V500)
        {
            builder.WithSessionExpiryInterval(sessionExpiry);
        }

        return ConnectAsync(builder, clientId, version);
    }

    public static Task<MqttTestClient> ConnectWebSocketAsync(ServerProcess server, string clientId) =>
        ConnectAsync(new MqttClientOptionsBuilder().WithWebSocketServer(ws => ws.WithUri($"ws://127.0.0.1:{server.WebSocketPort}{server.WebSocketPath}")), clientId, MqttProtocolVersion.V500);

    /// <summary>Connects over wss://localhost, trusting exactly the server's development certificate.</summary>
    public static Task<MqttTestClient> ConnectSecureWebSocketAsync(ServerProcess server, string clientId)
    {
        var trusted = X509Certificate2.CreateFromPem(File.ReadAllText(server.CertificatePath));
        var builder = new MqttClientOptionsBuilder()
            .WithWebSocketServer(ws => ws.WithUri($"wss://localhost:{server.SecureWebSocketPort}{server.WebSocketPath}"))
            .WithTlsOptions(tls => tls
                .UseTls()
                .WithCertificateValidationHandler(context => IsTrusted(context.Certificate, context.SslPolicyErrors, trusted)));
        return ConnectAsync(builder, clientId, MqttProtocolVersion.V500);
    }

    public async Task SubscribeAsync(string filter)
    {
        var result = await Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Guard);
        Assert.All(result.Items, item => Assert.True((int)item.ResultCode <= 2, $"Subscribe refused: {item.ResultCode}"));
    }

    public async Task PublishAsync(string topic, string payload, bool retain = false)
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain)
            .Build();
        var result = await Client.PublishAsync(message).WaitAsync(Guard);
        Assert.True(result.IsSuccess, $"Publish failed: {result.ReasonCode}");
    }

    private static async Task<MqttTestClient> ConnectAsync(MqttClientOptionsBuilder builder, string clientId, MqttProtocolVersion version)
    {
        var client = new MqttTestClient(new MqttClientFactory().CreateMqttClient());
        var options = builder
            .WithClientId(clientId)
            .WithProtocolVersion(version)
            .WithTimeout(Guard)
            .Build();
        var result = await client.Client.ConnectAsync(options).WaitAsync(Guard);
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        client.ConnectResult = result;
        return client;
    }

    private static bool IsTrusted(X509Certificate? presented, SslPolicyErrors errors, X509Certificate2 trusted)
    {
        if (presented is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
        {
            return false;
        }

        // The development certificate is its own root: build the chain against it alone.
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var certificate = new X509Certificate2(presented);
        return chain.Build(certificate);
    }
}
