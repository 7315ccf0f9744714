using System.Text;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

public sealed class WebSocketTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly ServerProcess _server = fixture.Server;

    [Fact]
    public async Task WebSocketClient_ExchangesMessagesWithTcpClient()
    {
        await using var ws = await MqttTestClient.ConnectWebSocketAsync(_server, "ws-client");
        await using var tcp = await MqttTestClient.ConnectTcpAsync(_server, "ws-peer-tcp");
        await ws.SubscribeAsync("ws/to-ws");
        await tcp.SubscribeAsync("ws/to-tcp");

        await tcp.PublishAsync("ws/to-ws", "from tcp");
        await ws.PublishAsync("ws/to-tcp", "from ws");

        var atWs = await ws.NextAsync();
        Assert.Equal("ws/to-ws", atWs.Topic);
        Assert.Equal("from tcp", Encoding.UTF8.GetString(atWs.Payload));
        var atTcp = await tcp.NextAsync();
        Assert.Equal("ws/to-tcp", atTcp.Topic);
        Assert.Equal("from ws", Encoding.UTF8.GetString(atTcp.Payload));
    }

    [Fact]
    public async Task SecureWebSocketClient_ExchangesMessagesWithTcpClient()
    {
        await using var wss = await MqttTestClient.ConnectSecureWebSocketAsync(_server, "wss-client");
        await using var tcp = await MqttTestClient.ConnectTcpAsync(_server, "wss-peer-tcp");
        await wss.SubscribeAsync("wss/to-wss");
        await tcp.SubscribeAsync("wss/to-tcp");

        await tcp.PublishAsync("wss/to-wss", "from tcp");
        await wss.PublishAsync("wss/to-tcp", "from wss");

        var atWss = await wss.NextAsync();
        Assert.Equal("wss/to-wss", atWss.Topic);
        Assert.Equal("from tcp", Encoding.UTF8.GetString(atWss.Payload));
        var atTcp = await tcp.NextAsync();
        Assert.Equal("wss/to-tcp", atTcp.Topic);
        Assert.Equal("from wss", Encoding.UTF8.GetString(atTcp.Payload));
    }
}
