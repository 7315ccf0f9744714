using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Taihu.Protocols.Coap;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Bad input over CoAP: each case gets RFC 7252's answer (RST for a malformed confirmable message, silence for
/// anything else malformed) or ThingsBoard's error code with a diagnostic payload, is counted in <c>/metrics</c>
/// by reason, stores nothing, and leaves other endpoints alone.
/// </summary>
public sealed class CoapBadInputTests(CoapFixture fixture) : IClassFixture<CoapFixture>
{
    private static string Name(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    [Fact]
    public async Task WrongToken_Is401_AndCounted()
    {
        using var client = new RawCoapClient(fixture.Server);
        var before = await fixture.RejectedAsync("unknown_device");
        var reply = await client.RequestAsync(CoapCode.Post, "/api/v1/no-such-token/telemetry", "{\"t\":1}");
        Assert.Equal("4.01", reply.CodeText);
        Assert.Equal("Unknown device access token.", reply.Text);
        await fixture.ExpectRejectedAsync("unknown_device", before + 1);

        // libcoap reports it too.
        var (_, output, errors) = await LibcoapClient.RunAsync("-m", "post", "-e", "{\"t\":1}", fixture.Url("/api/v1/no-such-token/telemetry"));
        Assert.Contains("4.01", output + errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownPath_Is404_WrongMethod_Is405_UnknownCriticalOption_Is402()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-paths"));
        using var client = new RawCoapClient(fixture.Server);
        Assert.Equal("4.04", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/nothing", "{}")).CodeText);
        Assert.Equal("4.04", (await client.RequestAsync(CoapCode.Get, "/.well-known/core")).CodeText);
        Assert.Equal("4.05", (await client.RequestAsync(CoapCode.Get, $"/api/v1/{token}/telemetry")).CodeText);
        Assert.Equal("4.05", (await client.RequestAsync(CoapCode.Delete, $"/api/v1/{token}/attributes")).CodeText);
        Assert.Equal("4.02", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{}", [(CoapOption.IfMatch, new byte[] { 1 })])).CodeText);
        Assert.Equal("4.15", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{}", [RawCoapClient.UInt(CoapOption.ContentFormat, 42)])).CodeText);
        Assert.Equal("4.00", (await client.RequestAsync(CoapCode.Get, $"/api/v1/{token}/rpc")).CodeText);
    }

    [Fact]
    public async Task BadJson_Is400_WithADiagnostic_AndStoresNothing()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-bad-json"));
        using var client = new RawCoapClient(fixture.Server);
        var before = await fixture.RejectedAsync("bad_payload");
        var reply = await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"temperature\":");
        Assert.Equal("4.00", reply.CodeText);
        Assert.Null(reply.Option(CoapOption.ContentFormat));
        Assert.False(string.IsNullOrWhiteSpace(reply.Text));
        await fixture.ExpectRejectedAsync("bad_payload", before + 1);
        Assert.Equal("4.00", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/attributes", "[1,2]")).CodeText);
        // Nothing stored; "active" is the platform's connectivity series (the device was heard from).
        Assert.DoesNotContain((await fixture.Admin.LatestAsync(id)).Keys, k => k != "active");
    }

    public static TheoryData<string, string, bool, string> Malformed => new()
    {
        // name, datagram (hex, message id 0xbeef), answered with RST, metric reason
        { "token length 9, confirmable", "4901beef010203040506070809", true, "bad_format" },
        { "token length 15, confirmable", "4f01beef", true, "bad_format" },
        { "option delta 15, confirmable", "4001beeff1", true, "bad_format" },
        { "option running past the end, confirmable", "4002beefb5617069", true, "bad_format" },
        { "payload marker with no payload, confirmable", "4002beefb3617069ff", true, "bad_format" },
        { "payload marker with no payload, non-confirmable", "5002beefb3617069ff", false, "bad_format" },
        { "option delta 15, non-confirmable", "5001beeff1", false, "bad_format" },
        { "truncated header", "4001be", false, "too_short" },
        { "version 2", "8001beef", false, "bad_version" },
        { "garbage", "ffffffffffffffffffff", false, "bad_version" },
        { "a response sent to the server, confirmable", "4045beef", true, "unexpected_message" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task MalformedDatagrams_AreResetOrIgnored_AsRfc7252Says_AndCounted(string name, string hex, bool reset, string reason)
    {
        using var client = new RawCoapClient(fixture.Server);
        var before = await fixture.RejectedAsync(reason);
        client.Send(Convert.FromHexString(hex));
        var answer = await client.ReceiveBeforePingAsync();
        if (reset)
        {
            Assert.True(answer is { Type: CoapType.Reset, MessageId: 0xbeef, Code: CoapCode.Empty }, $"{name}: expected RST, got {answer}");
        }
        else
        {
            Assert.True(answer is null, $"{name}: expected silence, got {answer}");
        }

        await fixture.ExpectRejectedAsync(reason, before + 1);
    }

    [Fact]
    public async Task AFloodOfGarbage_FromOneEndpoint_DoesNotDisturbAnother()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-neighbour"));
        using var attacker = new RawCoapClient(fixture.Server);
        using var device = new RawCoapClient(fixture.Server);
        var random = new Random(5683);
        var garbage = new byte[200];
        for (var i = 0; i < 2_000; i++)
        {
            random.NextBytes(garbage);
            garbage[0] = (byte)(0x50 | (garbage[0] & 0x0F)); // version 1, non-confirmable: never answered with RST
            attacker.Send(garbage.AsSpan(0, random.Next(1, garbage.Length)));
            if (i % 500 == 0)
            {
                Assert.Equal("2.01", (await device.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", $"{{\"n\":{i}}}")).CodeText);
            }
        }

        Assert.Equal("2.01", (await device.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"n\":2000}")).CodeText);
        Assert.Equal(2000, (await fixture.Admin.LatestAsync(id))["n"].Value!.GetValue<int>());
    }

    [Fact]
    public async Task ABusyCoapPort_StopsTheServer_WithAMessageNamingTheSetting()
    {
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        holder.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)holder.LocalEndPoint!).Port;
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string> { ["Listeners__CoapPort"] = port.ToString(CultureInfo.InvariantCulture) });
        Assert.NotEqual(0, exitCode);
        Assert.Contains($"CoAP cannot listen on UDP 127.0.0.1:{port}", output, StringComparison.Ordinal);
        Assert.Contains("Listeners:CoapPort", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABadCoapSetting_StopsTheServer_WithAPlainMessage()
    {
        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string> { ["Coap__BlockSize"] = "100" });
        Assert.Equal(1, exitCode);
        Assert.Contains("Taihu cannot start: Coap:BlockSize must be a power of two from 16 to 1024.", output, StringComparison.Ordinal);
    }
}
