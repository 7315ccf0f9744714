using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>Configuration from environment variables reaches the broker, and bad values stop the server at start.</summary>
public sealed class ConfigurationTests
{
    [Fact]
    public async Task MaximumPacketSize_FromEnvironment_IsAdvertisedAndEnforced()
    {
        await using var server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Broker__MaximumPacketSize"] = "1024" });
        var (client, connAck) = await RawMqttClient.ConnectV5Async(server.TcpPort, "packet-size");
        await using var _ = client;
        Assert.Equal(1024u, MaximumPacketSizeProperty(connAck));

        await client.PublishV5Async("big", new byte[2048]);

        var packets = await client.ReceiveUntilClosedAsync();
        var disconnect = Assert.Single(packets);
        Assert.Equal(0xE0, disconnect.Header);
        Assert.Equal(0x95, disconnect.Body[0]); // Packet too large
    }

    [Fact]
    public async Task HttpOff_WithOnlyPlainMqtt_OpensNoDefaultPort_AndStartsAgainAfterACrash()
    {
        var off = new Dictionary<string, string>
        {
            ["Listeners__HttpPort"] = "-1",
            ["Listeners__TlsPort"] = "-1",
            ["Listeners__WebSocketPort"] = "-1",
            ["Listeners__SecureWebSocketPort"] = "-1",
        };
        var dataDirectory = ServerProcess.NewDataDirectory();
        try
        {
            await using (var first = await ServerProcess.StartAsync(off, dataDirectory))
            {
                var (client, connAck) = await RawMqttClient.ConnectV5Async(first.TcpPort, "http-off");
                await client.DisposeAsync();
                Assert.Equal(0x20, connAck.Header);

                // Kestrel with no endpoint of ours binds http://localhost:5000 by itself; it has a Unix socket instead.
                Assert.DoesNotContain("localhost:5000", first.Output, StringComparison.Ordinal);
                Assert.True(File.Exists(Path.Combine(dataDirectory, "http.sock")));
                await first.KillAsync();
            }

            // The socket file a killed server left behind does not keep the next one from starting.
            await using var second = await ServerProcess.StartAsync(off, dataDirectory);
            var (again, ack) = await RawMqttClient.ConnectV5Async(second.TcpPort, "http-off-again");
            await again.DisposeAsync();
            Assert.Equal(0x20, ack.Header);
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(dataDirectory);
        }
    }

    [Theory]
    [InlineData("Broker__MaximumInflightMessages", "0", "Broker:MaximumInflightMessages")]
    [InlineData("Listeners__BindAddress", "not-an-address", "Listeners:BindAddress")]
    [InlineData("Listeners__TcpPort", "70000", "Listeners:TcpPort")]
    [InlineData("Listeners__WebSocketPath", "mqtt", "Listeners:WebSocketPath")]
    [InlineData("Broker__MaximumInflightMessages", "abc", "Broker:MaximumInflightMessages")]
    [InlineData("Listeners__HttpPort", "70000", "Listeners:HttpPort must be")]
    [InlineData("Storage__Provider", "PostgreSql", "Storage:ConnectionString is required")]
    [InlineData("Ingest__QueueCapacity", "0", "Ingest:QueueCapacity, Ingest:MaxBatchPoints and Ingest:MaxPayloadBytes must be positive")]
    [InlineData("Security__LoginBackoff", "00:00:00", "Security:LoginBackoff must be")]
    public async Task InvalidOption_StopsStartWithNonZeroExitNamingTheSetting(string variable, string value, string setting)
    {
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string> { [variable] = value });

        Assert.NotEqual(0, exitCode);
        Assert.Contains(setting, output, StringComparison.Ordinal);
        Assert.DoesNotContain("Taihu listening on", output, StringComparison.Ordinal);
        Assert.Equal(1, exitCode);
        Assert.Contains("Taihu cannot start:", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal); // no stack trace
    }

    [Fact]
    public async Task SeveralInvalidOptions_AreAllReportedAtOnce()
    {
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string>
        {
            ["Broker__MaximumConnections"] = "0",
            ["Listeners__WebSocketPath"] = "mqtt",
            ["Listeners__HttpPort"] = "-2",
            ["Ingest__MaxFutureSkew"] = "-01:00:00",
            ["Security__MinimumAccessTokenLength"] = "0",
        });

        Assert.Equal(1, exitCode);
        Assert.Contains("Taihu cannot start:", output, StringComparison.Ordinal);
        foreach (var setting in new[] { "Broker:MaximumConnections", "Listeners:WebSocketPath", "Listeners:HttpPort", "Ingest:MaxFutureSkew", "Security:MinimumAccessTokenLength" })
        {
            Assert.Equal(1, Occurrences(output, setting + " must"));
        }

        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TcpPortMinusOne_DisablesTheTcpListener()
    {
        await using var server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Listeners__TcpPort"] = "-1" });

        Assert.Equal(-1, server.TcpPort);
        Assert.Contains("MQTT tcp -1,", server.Banner, StringComparison.Ordinal);
        Assert.True(server.TlsPort > 0 && server.WebSocketPort > 0 && server.SecureWebSocketPort > 0 && server.HttpPort > 0, server.Banner);
        Assert.DoesNotContain("Now listening on: http://127.0.0.1:-1", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DevelopmentCertificate_IsKeptInTheDataDirectory_OrWhereTheSettingSays()
    {
        await using (var server = await ServerProcess.StartAsync())
        {
            Assert.True(File.Exists(server.CertificatePath), server.Output);
        }

        var elsewhere = ServerProcess.NewDataDirectory();
        try
        {
            await using var server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Listeners__DevelopmentCertificateDirectory"] = elsewhere });

            Assert.True(File.Exists(Path.Combine(elsewhere, "taihu-dev-cert.pem")), server.Output);
            Assert.False(File.Exists(server.CertificatePath), server.Output);
            await server.WaitForLineAsync(line => line.Contains(Path.Combine(elsewhere, "taihu-dev-cert.pem"), StringComparison.Ordinal));
        }
        finally
        {
            ServerProcess.DeleteDataDirectory(elsewhere);
        }
    }

    private static int Occurrences(string text, string value)
    {
        var count = 0;
        for (var at = text.IndexOf(value, StringComparison.Ordinal); at >= 0; at = text.IndexOf(value, at + value.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    /// <summary>Property 0x27 (Maximum Packet Size) of a 5.0 CONNACK body: flags, reason, properties.</summary>
    private static uint? MaximumPacketSizeProperty(RawPacket connAck)
    {
        var body = connAck.Body;
        var index = 2;
        var length = 0;
        for (var multiplier = 1; ; multiplier *= 128)
        {
            var digit = body[index++];
            length += (digit & 0x7F) * multiplier;
            if ((digit & 0x80) == 0)
            {
                break;
            }
        }

        var end = index + length;
        while (index < end)
        {
            var id = body[index++];
            switch (id)
            {
                case 0x27:
                    return (uint)(body[index] << 24 | body[index + 1] << 16 | body[index + 2] << 8 | body[index + 3]);
                case 0x11 or 0x02 or 0x18:
                    index += 4; // four-byte integers
                    break;
                case 0x21 or 0x22 or 0x23 or 0x13:
                    index += 2; // two-byte integers
                    break;
                case 0x24 or 0x25 or 0x28 or 0x29 or 0x2A or 0x01 or 0x17 or 0x19:
                    index += 1; // bytes
                    break;
                case 0x26:
                    index += 2 + (body[index] << 8 | body[index + 1]); // user property: two strings
                    index += 2 + (body[index] << 8 | body[index + 1]);
                    break;
                default:
                    index += 2 + (body[index] << 8 | body[index + 1]); // strings and binary data
                    break;
            }
        }

        return null;
    }
}
