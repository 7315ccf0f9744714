using System.Net;
using System.Text.Json.Nodes;
using Taihu.Platform.Tests;
using Taihu.Protocols.Coap;
using Taihu.Protocols.Jt808;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Device commands across the nodes of a cluster on the transports other than MQTT (two real server processes on one
/// PostgreSQL database): a call made through node 0's REST API reaches a device connected to node 1 over HTTP long
/// poll, CoAP, HJ 212 or JT/T 808, and the device's answer, given to node 1, ends the call waiting on node 0.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterDeviceTransportTests(PostgresServer postgres)
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task CallsThroughNode0_ReachDevicesOnNode1_OverHttpLongPoll_Coap_Hj212_AndJt808()
    {
        await using var cluster = await TestCluster.StartAsync(postgres, "device-transports");
        using var admin = await cluster.TenantAdminAsync("Transports across nodes");

        await HttpLongPollAsync(cluster, admin);
        await CoapAsync(cluster, admin);
        await Hj212Async(cluster, admin);
        await Jt808Async(cluster, admin);
    }

    private static async Task HttpLongPollAsync(TestCluster cluster, PlatformApi admin)
    {
        var (id, token) = await admin.CreateDeviceAsync("http-poller");
        using var http = new HttpClient { BaseAddress = cluster.Nodes[1].HttpBaseAddress, Timeout = Guard };

        // The poll on node 1 and the call through node 0 race: the call is retried while node 0 is told the device
        // is not reachable yet (409 at once), as on one server.
        var poll = http.GetAsync($"/api/v1/{token}/rpc?timeout=20000");
        var replied = Task.Run(async () =>
        {
            var command = await PlatformApi.ExpectAsync(await poll, HttpStatusCode.OK);
            Assert.Equal("getState", command["method"]!.GetValue<string>());
            Assert.Equal(3, command["params"]!["relay"]!.GetValue<int>());
            var requestId = command["id"]!.GetValue<int>();
            await PlatformApi.ExpectAsync(await http.PostAsync($"/api/v1/{token}/rpc/{requestId}", new StringContent("{\"state\":\"on\"}")), HttpStatusCode.OK);
            return requestId;
        });
        HttpResponseMessage call;
        do
        {
            call = await admin.SendAsync(HttpMethod.Post, $"/api/plugins/rpc/twoway/{id}", new { method = "getState", @params = new { relay = 3 } });
        }
        while (call.StatusCode == HttpStatusCode.Conflict && !replied.IsCompleted);

        var reply = await PlatformApi.ExpectAsync(call, HttpStatusCode.OK);
        Assert.Equal("on", reply["state"]!.GetValue<string>());
        var requestId = await replied.WaitAsync(Guard);

        // The same reply again to node 1: the call has ended there too (409).
        await PlatformApi.ExpectProblemAsync(await http.PostAsync($"/api/v1/{token}/rpc/{requestId}", new StringContent("{}")), HttpStatusCode.Conflict);
    }

    private static async Task CoapAsync(TestCluster cluster, PlatformApi admin)
    {
        var (id, token) = await admin.CreateDeviceAsync("coap-meter");
        using var device = new RawCoapClient(cluster.Nodes[1]);
        var observeToken = await CoapRpcTests.ObserveRpcAsync(device, token);

        var call = admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getTemperature", @params = new { unit = "C" } });
        var command = await device.ReceiveAsync();
        Assert.Equal((CoapType.Confirmable, "2.05"), (command.Type, command.CodeText));
        Assert.Equal(observeToken, command.Token);
        var body = JsonNode.Parse(command.Text)!;
        Assert.Equal("getTemperature", body["method"]!.GetValue<string>());
        device.Acknowledge(command);

        var posted = await device.RequestAsync(CoapCode.Post, $"/api/v1/{token}/rpc/{body["id"]!.GetValue<int>()}", "{\"temperature\":21.5}");
        Assert.Equal("2.01", posted.CodeText);
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(21.5, reply["temperature"]!.GetValue<double>());
    }

    private static async Task Hj212Async(TestCluster cluster, PlatformApi admin)
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(admin);
        await using var station = await Hj212Station.ConnectAsync(cluster.Nodes[1], mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        await station.UploadAsync("2011", $"DataTime={time};a01001-Rtd=20,a01001-Flag=N");

        var call = admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "setTime", @params = new { time = "20260102030405" } });
        var command = await station.ReadAsync();
        Assert.Equal(("1012", "SystemTime=20260102030405"), (command.Cn, command.Cp));
        await station.SendAsync($"QN={command.Qn};ST=91;CN=9011;PW={station.Pw};MN={station.Mn};Flag=4;CP=&&QnRtn=1&&");
        await station.SendAsync($"QN={command.Qn};ST=91;CN=9012;PW={station.Pw};MN={station.Mn};Flag=4;CP=&&ExeRtn=1&&");

        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(1, reply["exeRtn"]!.GetValue<int>());
    }

    private static async Task Jt808Async(TestCluster cluster, PlatformApi admin)
    {
        var phone = Jt808Terminal.NewPhone();
        var id = await Jt808Tests.CreateTerminalAsync(admin, phone, "code");
        await using var terminal = await Jt808Terminal.ConnectAsync(cluster.Nodes[1], phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code"));

        var call = admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "queryLocation" });
        var (header, body) = await terminal.ReadAsync();
        Assert.Equal((Jt808MessageIds.QueryLocation, 0), (header.MessageId, body.Length));
        byte[] answer = [(byte)(header.Serial >> 8), (byte)header.Serial, .. Jt808Terminal.LocationBody(31.57, 120.3, 420, DateTimeOffset.UtcNow)];
        await terminal.SendAsync(Jt808MessageIds.LocationQueryReply, answer);
        var location = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal((31.57, 120.3), (location["latitude"]!.GetValue<double>(), location["longitude"]!.GetValue<double>()));
    }
}
