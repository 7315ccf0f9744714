using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Taihu.Protocols.Coap;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Server-side RPC to CoAP devices: a device observing <c>.../rpc</c> is reachable; commands arrive as confirmable
/// notifications <c>{"id","method","params"}</c>, the device's ACK makes a persistent call DELIVERED and its
/// <c>POST .../rpc/{id}</c> the answer; the observation ending makes the device unreachable again.
/// </summary>
public sealed class CoapRpcTests(CoapFixture fixture) : IClassFixture<CoapFixture>
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static string Name(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    /// <summary>Observes <c>.../rpc</c>: the registration is answered with an empty ACK, commands follow.</summary>
    internal static async Task<byte[]> ObserveRpcAsync(RawCoapClient client, string token)
    {
        var messageId = client.NextMessageId();
        var observeToken = client.NextToken();
        client.Send(RawCoapClient.Request(CoapType.Confirmable, CoapCode.Get, messageId, observeToken, $"/api/v1/{token}/rpc", extra: [RawCoapClient.UInt(CoapOption.Observe, 0)]));
        var ack = await client.ReceiveAsync();
        Assert.Equal((CoapType.Acknowledgement, CoapCode.Empty, messageId), (ack.Type, ack.Code, ack.MessageId));
        return observeToken;
    }

    [Fact]
    public async Task TwoWay_ArrivesAsANotification_AndThePostedReplyAnswersTheCall()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-rpc"));
        using var device = new RawCoapClient(fixture.Server);
        var observeToken = await ObserveRpcAsync(device, token);

        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getTemperature", @params = new { unit = "C" } });
        var command = await device.ReceiveAsync();
        Assert.Equal((CoapType.Confirmable, "2.05"), (command.Type, command.CodeText));
        Assert.Equal(observeToken, command.Token);
        Assert.NotNull(command.UInt(CoapOption.Observe));
        var body = JsonNode.Parse(command.Text)!;
        Assert.Equal("getTemperature", body["method"]!.GetValue<string>());
        Assert.Equal("C", body["params"]!["unit"]!.GetValue<string>());
        device.Acknowledge(command);

        // The reply may come from another port, as a new coap-client process would send it.
        using var replier = new RawCoapClient(fixture.Server);
        var posted = await replier.RequestAsync(CoapCode.Post, $"/api/v1/{token}/rpc/{body["id"]!.GetValue<int>()}", "{\"temperature\":21.5}");
        Assert.Equal("2.01", posted.CodeText);
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(21.5, reply["temperature"]!.GetValue<double>());

        // A second reply to the same call is refused: the call is over.
        Assert.Equal("4.09", (await replier.RequestAsync(CoapCode.Post, $"/api/v1/{token}/rpc/{body["id"]!.GetValue<int>()}", "{}")).CodeText);
        Assert.Equal("4.04", (await replier.RequestAsync(CoapCode.Post, $"/api/v1/{token}/rpc/999999", "{}")).CodeText);
    }

    [Fact]
    public async Task Persistent_WaitsForTheDevice_IsDeliveredByItsAck_AndSuccessfulByItsReply()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-persistent"));
        var submitted = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}",
            new { method = "setInterval", @params = new { seconds = 60 }, persistent = true, timeout = 60_000 }), HttpStatusCode.OK);
        var rpcId = submitted["rpcId"]!.GetValue<string>();
        Assert.Equal("QUEUED", (await fixture.Admin.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());

        using var device = new RawCoapClient(fixture.Server);
        await ObserveRpcAsync(device, token);
        var command = await device.ReceiveAsync();
        Assert.Equal("setInterval", JsonNode.Parse(command.Text)!["method"]!.GetValue<string>());
        device.Acknowledge(command);
        await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{rpcId}", r => r["status"]!.GetValue<string>() == "DELIVERED");

        var requestId = JsonNode.Parse(command.Text)!["id"]!.GetValue<int>();
        Assert.Equal("2.01", (await device.RequestAsync(CoapCode.Post, $"/api/v1/{token}/rpc/{requestId}", "{\"ok\":true}")).CodeText);
        var done = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{rpcId}", r => r["status"]!.GetValue<string>() == "SUCCESSFUL");
        Assert.True(done["response"]!["ok"]!.GetValue<bool>());
    }

    [Fact]
    public async Task UnacknowledgedCommand_EndsTheObservation_AndTheDeviceIsUnreachable()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-silent"));
        using var device = new RawCoapClient(fixture.Server);
        await ObserveRpcAsync(device, token);
        await SubmitPersistentAsync(id, "first");

        // Never acknowledged: retransmitted (the fixture's AckTimeout 200 ms, MaxRetransmit 2), then given up.
        var original = await device.ReceiveAsync();
        for (var i = 0; i < 2; i++)
        {
            var retransmission = await device.ReceiveAsync();
            Assert.Equal((original.MessageId, original.Text), (retransmission.MessageId, retransmission.Text));
        }

        // The observation ends after the last wait (counted as a timeout); from then on the device cannot be reached.
        await fixture.ExpectRejectedAsync("timeout", 1);
        var refused = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "second" }), HttpStatusCode.GatewayTimeout);
        Assert.StartsWith("The device is not connected", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Deregistration_WithObserve1_MakesTheDeviceUnreachable()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-deregister"));
        using var device = new RawCoapClient(fixture.Server);
        await SubmitPersistentAsync(id, "probe");
        var observeToken = await ObserveRpcAsync(device, token);
        device.Acknowledge(await device.ReceiveAsync());

        var messageId = device.NextMessageId();
        device.Send(RawCoapClient.Request(CoapType.Confirmable, CoapCode.Get, messageId, observeToken, $"/api/v1/{token}/rpc", extra: [RawCoapClient.UInt(CoapOption.Observe, 1)]));
        Assert.Equal("2.05", (await device.ReceiveAsync()).CodeText);
        var refused = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method = "x" }), HttpStatusCode.GatewayTimeout);
        Assert.StartsWith("The device is not connected", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task LibcoapClient_ObservingRpc_PrintsTheCommand()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-rpc-libcoap"));
        var call = await SubmitPersistentAsync(id, "blink");
        using var observer = LibcoapClient.Start("-m", "get", "-s", "10", "-B", "10", fixture.Url($"/api/v1/{token}/rpc"));
        try
        {
            var output = new StringBuilder();
            var buffer = new char[4096];
            while (!output.ToString().Contains("\"method\":\"blink\"", StringComparison.Ordinal))
            {
                var read = await observer.StandardOutput.ReadAsync(buffer).AsTask().WaitAsync(Guard);
                Assert.True(read > 0, "coap-client-notls ended before printing the command: " + output);
                output.Append(buffer, 0, read);
            }

            // libcoap acknowledged the notification: the one-way call is done.
            await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{call}", r => r["status"]!.GetValue<string>() == "SUCCESSFUL");
        }
        finally
        {
            observer.Kill();
        }
    }

    [Fact]
    public async Task ClientSideRpc_GetCurrentTime_IsAnswered205()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-client-rpc"));
        using var client = new RawCoapClient(fixture.Server);
        var reply = await client.RequestAsync(CoapCode.Post, $"/api/v1/{token}/rpc", "{\"method\":\"getCurrentTime\",\"params\":{}}");
        Assert.Equal("2.05", reply.CodeText);
        Assert.True(JsonNode.Parse(reply.Text)!["time"]!.GetValue<long>() > 1_600_000_000_000);
    }

    [Fact]
    public async Task ClientSideRpc_AnsweredSlowlyByAWebhook_GetsAnEmptyAck_ThenASeparateResponse()
    {
        using var answer = new ManualResetEventSlim();
        var log = new ReceiverLog
        {
            // Holds the webhook's answer until the test has seen the empty ACK (an explicit signal, bounded).
            Reply = body => body["data"]?["method"]?.GetValue<string>() == "slowAnswer" && answer.Wait(Guard) ? "{\"answer\":42}" : null,
        };
        await using var receiver = await WebhookReceiver.StartAsync("coap-webhook-secret", log: log);
        var integration = await fixture.Admin.PostAsync("/api/integration", new
        {
            name = Name("coap-rpc-hook"),
            type = "HTTP",
            messageTypes = new[] { "RPC_REQUEST" },
            configuration = new { url = receiver.Url, secret = "coap-webhook-secret", answerRpc = true, requestTimeoutMs = 20_000 },
        });
        try
        {
            var (_, token) = await fixture.Admin.CreateDeviceAsync(Name("coap-slow-rpc"));
            using var client = new RawCoapClient(fixture.Server);
            var messageId = client.NextMessageId();
            var request = RawCoapClient.Request(CoapType.Confirmable, CoapCode.Post, messageId, [7, 7], $"/api/v1/{token}/rpc", "{\"method\":\"slowAnswer\",\"params\":{}}");
            client.Send(request);
            var ack = await client.ReceiveAsync();
            Assert.Equal((CoapType.Acknowledgement, CoapCode.Empty, messageId), (ack.Type, ack.Code, ack.MessageId));

            // A retransmission meanwhile is acknowledged again, not handled again.
            client.Send(request);
            var again = await client.ReceiveAsync();
            Assert.Equal((CoapType.Acknowledgement, CoapCode.Empty, messageId), (again.Type, again.Code, again.MessageId));

            answer.Set();
            var response = await client.ReceiveAsync();
            Assert.Equal((CoapType.Confirmable, "2.05"), (response.Type, response.CodeText));
            Assert.Equal([7, 7], response.Token);
            Assert.Equal(42, JsonNode.Parse(response.Text)!["answer"]!.GetValue<int>());
            client.Acknowledge(response);
            Assert.Null(await client.ReceiveBeforePingAsync());
            Assert.Single(log.Snapshot(), e => e.Body["data"]?["method"]?.GetValue<string>() == "slowAnswer");
        }
        finally
        {
            answer.Set();
            await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{integration["id"]!["id"]!.GetValue<string>()}");
        }
    }

    /// <summary>A persistent one-way call: it waits until the device is reachable, so a test need not race the registration.</summary>
    private async Task<string> SubmitPersistentAsync(Guid id, string method)
    {
        var submitted = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method, persistent = true, timeout = 60_000 }), HttpStatusCode.OK);
        return submitted["rpcId"]!.GetValue<string>();
    }
}
