using System.Text;
using System.Text.Json.Nodes;
using Taihu.Protocols.Coap;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// ThingsBoard's CoAP device API over UDP: telemetry and attributes from Debian's libcoap client and from a raw
/// client, read back through the REST API; duplicate detection; observing shared attributes; block-wise transfer
/// both ways; provisioning.
/// </summary>
public sealed class CoapDeviceApiTests(CoapFixture fixture) : IClassFixture<CoapFixture>
{
    private static string Name(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    [Fact]
    public async Task Telemetry_FromLibcoapClient_IsStored()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-telemetry"));
        var (exit, output, errors) = await LibcoapClient.RunAsync("-m", "post", "-e", "{\"temperature\":21}", fixture.Url($"/api/v1/{token}/telemetry"));
        Assert.True(exit == 0, output + errors);

        // The 2.01 came after the commit (Ingest:AckAfterCommit), so the point is there at once.
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(21, latest["temperature"].Value!.GetValue<double>());
    }

    [Fact]
    public async Task Telemetry_IsAnswered201Piggybacked_AndADuplicateGetsTheSameAnswer_WithoutASecondPoint()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-dedup"));
        using var client = new RawCoapClient(fixture.Server);
        var messageId = client.NextMessageId();
        var request = RawCoapClient.Request(CoapType.Confirmable, CoapCode.Post, messageId, [1, 2, 3], $"/api/v1/{token}/telemetry", "{\"counter\":1}");
        client.Send(request);
        var first = await client.ReceiveAsync();
        Assert.Equal((CoapType.Acknowledgement, "2.01", messageId), (first.Type, first.CodeText, first.MessageId));
        Assert.Equal([1, 2, 3], first.Token);

        // The client did not see the ACK and retransmits: the same response, nothing handled twice.
        client.Send(request);
        var again = await client.ReceiveAsync();
        Assert.Equal((first.Type, first.Code, first.MessageId, first.Token.Length), (again.Type, again.Code, again.MessageId, again.Token.Length));

        // A non-confirmable post is answered with a NON 2.01 carrying the token.
        client.Send(RawCoapClient.Request(CoapType.NonConfirmable, CoapCode.Post, client.NextMessageId(), [9], $"/api/v1/{token}/telemetry", "{\"counter\":2}"));
        var non = await client.ReceiveAsync();
        Assert.Equal((CoapType.NonConfirmable, "2.01"), (non.Type, non.CodeText));
        Assert.Equal([9], non.Token);

        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var history = await fixture.Admin.HistoryAsync(id, "counter", now - 60_000, now + 60_000);
        Assert.Equal([1.0, 2.0], history.Select(p => p.Value!.GetValue<double>()).Order());
    }

    [Fact]
    public async Task Attributes_PostedAndRead_WithLibcoapClient()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-attributes"));
        var (exit, output, errors) = await LibcoapClient.RunAsync("-m", "post", "-e", "{\"firmware\":\"1.2\",\"serial\":\"SN-7\"}", fixture.Url($"/api/v1/{token}/attributes"));
        Assert.True(exit == 0, output + errors);
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { interval = 30 });

        (exit, output, errors) = await LibcoapClient.RunAsync("-m", "get", fixture.Url($"/api/v1/{token}/attributes?clientKeys=firmware&sharedKeys=interval"));
        Assert.True(exit == 0, output + errors);
        var body = JsonNode.Parse(output)!;
        Assert.Equal("1.2", body["client"]!["firmware"]!.GetValue<string>());
        Assert.Null(body["client"]!["serial"]);
        Assert.Equal(30, body["shared"]!["interval"]!.GetValue<int>());

        // The same over the raw client: 2.05 with Content-Format application/json.
        using var client = new RawCoapClient(fixture.Server);
        var reply = await client.RequestAsync(CoapCode.Get, $"/api/v1/{token}/attributes");
        Assert.Equal("2.05", reply.CodeText);
        Assert.Equal(50u, reply.UInt(CoapOption.ContentFormat));
        Assert.Equal("SN-7", JsonNode.Parse(reply.Text)!["client"]!["serial"]!.GetValue<string>());
    }

    [Fact]
    public async Task ObservingAttributes_GetsSharedAttributeUpdates_AsConfirmableNotifications_UntilReset()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-observe"));
        using var client = new RawCoapClient(fixture.Server);
        var registration = await client.RequestAsync(CoapCode.Get, $"/api/v1/{token}/attributes?sharedKeys=mode", extra: [RawCoapClient.UInt(CoapOption.Observe, 0)]);
        Assert.Equal("2.05", registration.CodeText);
        var first = registration.UInt(CoapOption.Observe);
        Assert.NotNull(first);

        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { mode = "eco" });
        var notification = await client.ReceiveAsync();
        Assert.Equal((CoapType.Confirmable, "2.05"), (notification.Type, notification.CodeText));
        Assert.Equal(registration.Token, notification.Token);
        Assert.True(notification.UInt(CoapOption.Observe) > first);
        Assert.Equal("eco", JsonNode.Parse(notification.Text)!["mode"]!.GetValue<string>());
        client.Acknowledge(notification);

        // An RST to a notification ends the observation (RFC 7641 section 3.6): the next update sends nothing.
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { mode = "boost" });
        var second = await client.ReceiveAsync();
        Assert.Equal("boost", JsonNode.Parse(second.Text)!["mode"]!.GetValue<string>());
        client.Reset(second);
        Assert.Null(await client.ReceiveBeforePingAsync());
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { mode = "off" });
        Assert.Null(await client.ReceiveBeforePingAsync());
    }

    [Fact]
    public async Task ObservingAttributes_WithLibcoapClient_PrintsTheUpdate()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-observe-libcoap"));
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { target = 1 });
        using var observer = LibcoapClient.Start("-m", "get", "-s", "10", "-B", "10", fixture.Url($"/api/v1/{token}/attributes?sharedKeys=target"));
        try
        {
            // The registration's response (the current value) is printed first: from then on the observation stands.
            var output = new StringBuilder();
            var buffer = new char[4096];
            while (!output.ToString().Contains("\"target\":1", StringComparison.Ordinal))
            {
                var read = await observer.StandardOutput.ReadAsync(buffer).AsTask().WaitAsync(ServerProcess.Guard);
                Assert.True(read > 0, "coap-client-notls ended before printing the attributes: " + output);
                output.Append(buffer, 0, read);
            }

            await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { target = 2 });
            while (!output.ToString().Contains("{\"target\":2}", StringComparison.Ordinal))
            {
                var read = await observer.StandardOutput.ReadAsync(buffer).AsTask().WaitAsync(ServerProcess.Guard);
                Assert.True(read > 0, "coap-client-notls ended before printing the update: " + output);
                output.Append(buffer, 0, read);
            }
        }
        finally
        {
            observer.Kill();
        }
    }

    [Fact]
    public async Task BlockwiseUpload_FromLibcoapClient_IsAssembled_AndStored()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-block1"));
        var values = string.Join(",", Enumerable.Range(0, 40).Select(i => $"\"sensor{i}\":{i}"));
        var (exit, output, errors) = await LibcoapClient.RunAsync("-m", "post", "-b", "64", "-e", "{" + values + "}", fixture.Url($"/api/v1/{token}/telemetry"));
        Assert.True(exit == 0, output + errors);
        var latest = await fixture.Admin.LatestAsync(id);
        Assert.Equal(40, latest.Keys.Count(k => k.StartsWith("sensor", StringComparison.Ordinal)));
        Assert.Equal(39, latest["sensor39"].Value!.GetValue<int>());
    }

    [Fact]
    public async Task BlockwiseUpload_OnTheWire_Continue_ThenCreated_AndPastTheLimitIs413()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-block1-raw"));
        using var client = new RawCoapClient(fixture.Server);
        var body = "{\"a\":\"" + new string('x', 40) + "\",\"b\":2}";
        var path = $"/api/v1/{token}/telemetry";
        var blocks = Encoding.UTF8.GetBytes(body).Chunk(16).ToList();
        for (var i = 0; i < blocks.Count; i++)
        {
            var more = i < blocks.Count - 1;
            var reply = await client.RequestAsync(CoapCode.Post, path, Encoding.UTF8.GetString(blocks[i]), [RawCoapClient.UInt(CoapOption.Block1, new CoapBlock((uint)i, more, 0).Encode())]);
            Assert.Equal(more ? "2.31" : "2.01", reply.CodeText);
            Assert.True(CoapBlock.TryDecode(reply.Option(CoapOption.Block1), out var echoed));
            Assert.Equal(new CoapBlock((uint)i, more, 0), echoed);
        }

        Assert.Equal(2, (await fixture.Admin.LatestAsync(id))["b"].Value!.GetValue<int>());

        // A block out of order is 4.08; a Size1 over the limit, or blocks that pass it, 4.13 with Size1 = the limit.
        var skipped = await client.RequestAsync(CoapCode.Post, path, new string('y', 16), [RawCoapClient.UInt(CoapOption.Block1, new CoapBlock(3, true, 0).Encode())]);
        Assert.Equal("4.08", skipped.CodeText);
        var announced = await client.RequestAsync(CoapCode.Post, path, new string('y', 16),
            [RawCoapClient.UInt(CoapOption.Block1, new CoapBlock(0, true, 0).Encode()), RawCoapClient.UInt(CoapOption.Size1, CoapFixture.MaxPayloadBytes + 1)]);
        Assert.Equal("4.13", announced.CodeText);
        Assert.Equal((uint)CoapFixture.MaxPayloadBytes, announced.UInt(CoapOption.Size1));
        var before = await fixture.RejectedAsync("too_large");
        CoapReply last = null!;
        for (var i = 0u; i <= CoapFixture.MaxPayloadBytes / 1024; i++)
        {
            last = await client.RequestAsync(CoapCode.Post, path, new string('z', 1024), [RawCoapClient.UInt(CoapOption.Block1, new CoapBlock(i, true, 6).Encode())]);
        }

        Assert.Equal("4.13", last.CodeText);
        await fixture.ExpectRejectedAsync("too_large", before + 1);
        Assert.Equal(["a", "b"], (await fixture.Admin.LatestAsync(id)).Keys.Where(k => k != "active").Order());
    }

    [Fact]
    public async Task LargeAttributeResponse_GoesOutInBlocks_ToLibcoapAndOnTheWire()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-block2"));
        var shared = new JsonObject();
        for (var i = 0; i < 60; i++)
        {
            shared[$"setting{i:00}"] = "value-" + i;
        }

        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", shared);
        var (exit, output, errors) = await LibcoapClient.RunAsync("-m", "get", fixture.Url($"/api/v1/{token}/attributes?sharedKeys="));
        Assert.True(exit == 0, output + errors);
        Assert.Equal("value-59", JsonNode.Parse(output)!["shared"]!["setting59"]!.GetValue<string>());

        using var client = new RawCoapClient(fixture.Server);
        var first = await client.RequestAsync(CoapCode.Get, $"/api/v1/{token}/attributes");
        Assert.True(CoapBlock.TryDecode(first.Option(CoapOption.Block2), out var block));
        Assert.Equal(new CoapBlock(0, true, 5), block);
        Assert.Equal(512, first.Payload.Length);
        var total = (int)first.UInt(CoapOption.Size2)!.Value;
        Assert.True(total > 1024);

        var assembled = new List<byte>(first.Payload);
        for (var n = 1u; assembled.Count < total; n++)
        {
            var next = await client.RequestAsync(CoapCode.Get, $"/api/v1/{token}/attributes", extra: [RawCoapClient.UInt(CoapOption.Block2, new CoapBlock(n, false, 5).Encode())]);
            Assert.True(CoapBlock.TryDecode(next.Option(CoapOption.Block2), out var nextBlock));
            Assert.Equal(n, nextBlock.Number);
            assembled.AddRange(next.Payload);
            Assert.Equal(assembled.Count < total, nextBlock.More);
        }

        Assert.Equal(60, JsonNode.Parse(Encoding.UTF8.GetString([.. assembled]))!["shared"]!.AsObject().Count);
    }

    [Fact]
    public async Task Provisioning_CreatesADevice_ThatThenPostsWithItsToken()
    {
        var key = "coap-key-" + Guid.NewGuid().ToString("N")[..8];
        await fixture.Admin.PostAsync("/api/deviceProfile", new
        {
            name = Name("coap-profile"),
            provisionType = "ALLOW_CREATE_NEW_DEVICES",
            profileData = new { provisionConfiguration = new { type = "ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey = key, provisionDeviceSecret = "coap-secret" } },
        });
        var name = Name("coap-provisioned");
        var (exit, output, errors) = await LibcoapClient.RunAsync("-m", "post", "-e",
            $"{{\"deviceName\":\"{name}\",\"provisionDeviceKey\":\"{key}\",\"provisionDeviceSecret\":\"coap-secret\"}}", fixture.Url("/api/v1/provision"));
        Assert.True(exit == 0, output + errors);
        var answer = JsonNode.Parse(output)!;
        Assert.True("SUCCESS" == answer["status"]?.GetValue<string>(), output);
        var token = answer["credentialsValue"]!.GetValue<string>();

        using var client = new RawCoapClient(fixture.Server);
        Assert.Equal("2.01", (await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/telemetry", "{\"provisioned\":true}")).CodeText);
    }
}
