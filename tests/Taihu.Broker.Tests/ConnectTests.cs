using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Broker.Tests.Support;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

public class ConnectTests
{
    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Client_connects_and_receives_its_own_publish(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var client = await TestClient.ConnectAsync(host, "c1", version);
        Assert.Equal(MqttClientConnectResultCode.Success, client.ConnectResult!.ResultCode);
        await client.Client.SubscribeAsync("t/1");
        await client.Client.PublishStringAsync("t/1", "hello");
        var message = await client.NextAsync();
        Assert.Equal("hello", message.ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task Unsupported_protocol_level_is_refused_with_return_code_1()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        // CONNECT, protocol name MQTT, level 6.
        await raw.SendAsync(Convert.FromHexString("100D00044D51545406020000000161"));
        var packets = await raw.ReceiveUntilClosedAsync();
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(packets));
        Assert.Equal(ReasonCode.UnsupportedProtocolVersion, ack.ReasonCode);
    }

    [Theory]
    [InlineData(ProtocolVersion.V310)]
    [InlineData(ProtocolVersion.V311)]
    [InlineData(ProtocolVersion.V500)]
    public async Task Protocol_levels_3_4_and_5_are_accepted(ProtocolVersion level)
    {
        await using var host = await BrokerHost.StartAsync();
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("c-" + (int)level, level));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        await raw.SendAsync(PingReqPacket.Instance);
        await raw.ExpectAsync<PingRespPacket>();
    }

    [Theory]
    [InlineData("100D00044D51545402020000000161")] // MQTT level 2
    [InlineData("100D00044D51545400020000000161")] // MQTT level 0
    [InlineData("100D00044D51545403020000000161")] // MQTT with the 3.1 level
    [InlineData("100D00044D51545407020000000161")] // MQTT level 7
    [InlineData("100F00064D5149736470040200000001 61")] // MQIsdp with the 3.1.1 level
    [InlineData("100D00044D51545805020000000161")] // protocol name MQTX
    public async Task Other_protocol_levels_and_names_are_refused_with_return_code_1(string hex)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        await raw.SendAsync(Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal)));
        var packets = await raw.ReceiveUntilClosedAsync();
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(packets));
        Assert.Equal(ReasonCode.UnsupportedProtocolVersion, ack.ReasonCode);
        Assert.Null(ack.Properties);
    }

    [Fact]
    public async Task Empty_client_id_in_5_0_gets_an_assigned_client_identifier()
    {
        await using var host = await BrokerHost.StartAsync();
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("", MqttProtocolVersion.V500));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        var assigned = ack.Properties?.AssignedClientIdentifier;
        Assert.False(string.IsNullOrEmpty(assigned));
        Assert.NotNull(host.Broker.FindSession("", assigned!));
    }

    [Fact]
    public async Task Empty_client_id_in_5_0_with_clean_start_0_is_assigned_an_identifier_too()
    {
        await using var host = await BrokerHost.StartAsync();
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("", MqttProtocolVersion.V500, cleanStart: false, sessionExpiry: 60));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.False(ack.SessionPresent);
        Assert.False(string.IsNullOrEmpty(ack.Properties?.AssignedClientIdentifier));
    }

    [Fact]
    public async Task Empty_client_id_in_3_1_1_with_clean_session_is_accepted()
    {
        await using var host = await BrokerHost.StartAsync();
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("", MqttProtocolVersion.V311));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Null(ack.Properties);
        await raw.SendAsync(PingReqPacket.Instance);
        await raw.ExpectAsync<PingRespPacket>();
    }

    [Fact]
    public async Task Empty_client_id_in_3_1_1_without_clean_session_is_refused_with_return_code_2()
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        raw.Version = ProtocolVersion.V311;
        await raw.SendAsync(RawPackets.Connect("", MqttProtocolVersion.V311, cleanStart: false));
        var packets = await raw.ReceiveUntilClosedAsync();
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(packets));
        Assert.Equal(ConnectReturnCode.IdentifierRejected, ack.ReasonCode.ToConnectReturnCode());
        Assert.Equal(0, host.Broker.SessionCount);
    }

    [Fact]
    public async Task Connack_5_0_advertises_receive_maximum_packet_size_and_topic_alias_maximum()
    {
        await using var host = await BrokerHost.StartAsync(o =>
        {
            o.MaximumInflightMessages = 42;
            o.MaximumPacketSize = 4096;
            o.TopicAliasMaximum = 7;
        });
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("c1", MqttProtocolVersion.V500));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        var p = Assert.IsType<MqttProperties>(ack.Properties);
        Assert.Equal((ushort)42, p.ReceiveMaximum);
        Assert.Equal(4096u, p.MaximumPacketSize);
        Assert.Equal((ushort)7, p.TopicAliasMaximum);
        Assert.Null(p.AssignedClientIdentifier);
        Assert.Null(p.ServerKeepAlive);
    }

    [Fact]
    public async Task Connack_5_0_is_read_by_mqttnet()
    {
        await using var host = await BrokerHost.StartAsync(o => o.TopicAliasMaximum = 5);
        await using var client = await TestClient.ConnectAsync(host, "c1");
        Assert.Equal((ushort)5, client.ConnectResult!.TopicAliasMaximum);
        Assert.False(client.ConnectResult.IsSessionPresent);
    }

    [Theory]
    [InlineData(60, 30)]
    [InlineData(120, 30)]
    [InlineData(0, 30)]
    [InlineData(20, null)]
    public async Task Server_keep_alive_is_sent_when_the_maximum_is_lower_than_the_clients(int clientKeepAlive, int? expected)
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumKeepAlive = 30);
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("c1", MqttProtocolVersion.V500, keepAlive: (ushort)clientKeepAlive));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        Assert.Equal((ushort?)expected, ack.Properties?.ServerKeepAlive);
    }

    [Theory]
    [InlineData(ProtocolVersion.V311, 60)]
    [InlineData(ProtocolVersion.V311, 0)]
    [InlineData(ProtocolVersion.V310, 60)]
    public async Task Keep_alive_above_the_maximum_is_refused_for_3_1_1_which_cannot_be_told(ProtocolVersion level, int clientKeepAlive)
    {
        // 3.1.1 has no Server Keep Alive: enforcing a shorter keep alive than the client's would disconnect a client
        // that pings exactly as it announced. Refuse it with return code 2, as Mosquitto's max_keepalive does.
        await using var host = await BrokerHost.StartAsync(o => o.MaximumKeepAlive = 30);
        await using var raw = await RawClient.OpenAsync(host);
        raw.Version = level;
        await raw.SendAsync(RawPackets.Connect("c1", level, keepAlive: (ushort)clientKeepAlive));
        var ack = Assert.IsType<ConnAckPacket>(Assert.Single(await raw.ReceiveUntilClosedAsync()));
        Assert.Equal(ConnectReturnCode.IdentifierRejected, ack.ReasonCode.ToConnectReturnCode());
        Assert.Equal(0, host.Broker.SessionCount);
    }

    [Fact]
    public async Task Keep_alive_within_the_maximum_is_accepted_for_3_1_1()
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumKeepAlive = 30);
        var (raw, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("c1", ProtocolVersion.V311, keepAlive: 30));
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
    }

    [Theory]
    [InlineData("C000")] // PINGREQ
    [InlineData("30050001746869")] // PUBLISH t "hi"
    [InlineData("82060001000174 00")] // SUBSCRIBE t
    public async Task A_packet_before_connect_closes_the_connection(string hex)
    {
        await using var host = await BrokerHost.StartAsync();
        await using var raw = await RawClient.OpenAsync(host);
        await raw.SendAsync(Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal)));
        Assert.Empty(await raw.ReceiveUntilClosedAsync());
        Assert.Equal(0, host.Broker.SessionCount);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task A_second_connect_is_a_protocol_error(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync();
        var connect = RawPackets.Connect("c1", version);
        var (raw, ack) = await RawClient.ConnectAsync(host, connect);
        await using var _ = raw;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);
        await raw.SendAsync(connect);
        var packets = await raw.ReceiveUntilClosedAsync();
        if (version == MqttProtocolVersion.V500)
        {
            var disconnect = Assert.IsType<DisconnectPacket>(Assert.Single(packets));
            Assert.Equal(ReasonCode.ProtocolError, disconnect.ReasonCode);
        }
        else
        {
            Assert.Empty(packets);
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Connections_beyond_the_limit_are_closed(MqttProtocolVersion version)
    {
        await using var host = await BrokerHost.StartAsync(o => o.MaximumConnections = 1);
        var (first, ack) = await RawClient.ConnectAsync(host, RawPackets.Connect("first", version));
        await using var _ = first;
        Assert.Equal(ReasonCode.Success, ack.ReasonCode);

        await using var second = await RawClient.OpenAsync(host);
        second.Version = version.ToRaw();
        await second.SendAsync(RawPackets.Connect("second", version));
        Assert.Empty(await second.ReceiveUntilClosedAsync());
        Assert.Null(host.Broker.FindSession("", "second"));

        // The first connection is unaffected.
        await first.SendAsync(PingReqPacket.Instance);
        await first.ExpectAsync<PingRespPacket>();
    }
}
