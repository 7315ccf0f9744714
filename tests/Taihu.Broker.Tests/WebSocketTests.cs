using System.Globalization;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Taihu.Broker.Tests.Support;

namespace Taihu.Broker.Tests;

public class WebSocketTests
{
    private static Task<TestClient> ConnectWebSocketAsync(BrokerHost host, string clientId, MqttProtocolVersion version, bool secure)
    {
        var port = (secure ? host.SecureWebSocketPort : host.WebSocketPort).ToString(CultureInfo.InvariantCulture);
        var builder = new MqttClientOptionsBuilder()
            .WithWebSocketServer(o => o.WithUri(secure ? $"wss://localhost:{port}/mqtt" : $"ws://127.0.0.1:{port}/mqtt"))
            .WithClientId(clientId)
            .WithProtocolVersion(version)
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (secure)
        {
            // Trust exactly the broker's development certificate.
            var expected = X509Certificate2.CreateFromPem(File.ReadAllText(host.CertificatePath)).GetCertHash();
            builder.WithTlsOptions(o => o.UseTls().WithCertificateValidationHandler(e => e.Certificate.GetCertHash().AsSpan().SequenceEqual(expected)));
        }

        return TestClient.ConnectAsync(builder.Build());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, false)]
    [InlineData(MqttProtocolVersion.V500, false)]
    [InlineData(MqttProtocolVersion.V311, true)]
    [InlineData(MqttProtocolVersion.V500, true)]
    public async Task WebSocket_and_tcp_clients_exchange_messages(MqttProtocolVersion version, bool secure)
    {
        await using var host = await BrokerHost.StartAsync(tls: secure, webSockets: true);
        await using var ws = await ConnectWebSocketAsync(host, "ws", version, secure);
        Assert.Equal(MqttClientConnectResultCode.Success, ws.ConnectResult!.ResultCode);
        await using var tcp = await TestClient.ConnectAsync(host, "tcp", version);
        await ws.Client.SubscribeAsync("to/ws", MqttQualityOfServiceLevel.ExactlyOnce);
        await tcp.Client.SubscribeAsync("to/tcp", MqttQualityOfServiceLevel.ExactlyOnce);

        await tcp.Client.PublishStringAsync("to/ws", "from tcp", MqttQualityOfServiceLevel.ExactlyOnce);
        var atWs = (await ws.NextAsync()).ApplicationMessage;
        Assert.Equal("from tcp", atWs.ConvertPayloadToString());
        Assert.Equal(MqttQualityOfServiceLevel.ExactlyOnce, atWs.QualityOfServiceLevel);

        // A payload larger than one WebSocket frame of the client's buffer, to cross frame boundaries.
        var large = new string('w', 20_000);
        await ws.Client.PublishStringAsync("to/tcp", large, MqttQualityOfServiceLevel.AtLeastOnce);
        Assert.Equal(large, (await tcp.NextAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task Plain_http_get_gets_400_with_a_problem_body()
    {
        await using var host = await BrokerHost.StartAsync(webSockets: true);
        using var http = new HttpClient();
        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{host.WebSocketPort}/mqtt"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("\"status\":400", body, StringComparison.Ordinal);
        Assert.Contains("WebSocket upgrade required", body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("mqtt", true)]
    [InlineData("mqttv3.1", true)]
    [InlineData("xmpp", false)]
    public async Task Subprotocol_is_negotiated(string requested, bool accepted)
    {
        await using var host = await BrokerHost.StartAsync(webSockets: true);
        using var socket = new System.Net.WebSockets.ClientWebSocket();
        socket.Options.AddSubProtocol(requested);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var uri = new Uri($"ws://127.0.0.1:{host.WebSocketPort}/mqtt");
        if (!accepted)
        {
            await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(() => socket.ConnectAsync(uri, timeout.Token));
            return;
        }

        await socket.ConnectAsync(uri, timeout.Token);
        Assert.Equal(requested, socket.SubProtocol);

        // CONNECT 3.1.1 "ws1" in one binary message; CONNACK comes back as 20 02 00 00.
        var connect = Taihu.Mqtt.Packets.PacketWriter.ToArray(new Taihu.Mqtt.Packets.ConnectPacket { ProtocolVersion = Taihu.Mqtt.ProtocolVersion.V311, ClientId = "ws1" }, Taihu.Mqtt.ProtocolVersion.V311);
        await socket.SendAsync(connect, System.Net.WebSockets.WebSocketMessageType.Binary, endOfMessage: true, timeout.Token);
        var buffer = new byte[16];
        var received = 0;
        while (received < 4)
        {
            var result = await socket.ReceiveAsync(buffer.AsMemory(received), timeout.Token);
            Assert.Equal(System.Net.WebSockets.WebSocketMessageType.Binary, result.MessageType);
            received += result.Count;
        }

        Assert.Equal("20020000", Convert.ToHexString(buffer, 0, received));
    }
}
