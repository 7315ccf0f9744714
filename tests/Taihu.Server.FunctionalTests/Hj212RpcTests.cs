using System.Net;
using System.Text.Json.Nodes;
using Taihu.Protocols.Hj212;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Server commands to HJ 212 stations through the RPC REST API, answered by a test station as the standard has it:
/// 9011 (<c>QnRtn</c>) says the station has the command, 9012 (<c>ExeRtn</c>) how it ended, matched by the QN.
/// </summary>
public sealed class Hj212RpcTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static Task AnswerAsync(Hj212Station station, Hj212Message command, string cn, string cp) =>
        station.SendAsync($"QN={command.Qn};ST=91;CN={cn};PW={station.Pw};MN={station.Mn};Flag=4;CP=&&{cp}&&");

    /// <summary>Connects a station and waits until the platform reaches it (a first upload, answered).</summary>
    private async Task<(Guid Id, Hj212Station Station)> OnlineStationAsync()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        await station.UploadAsync("2011", $"DataTime={time};a01001-Rtd=20,a01001-Flag=N");
        return (id, station);
    }

    [Fact]
    public async Task SetTime_TwoWay_IsDeliveredBy9011_AndAnsweredBy9012()
    {
        var (id, station) = await OnlineStationAsync();
        await using var _ = station;
        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "setTime", @params = new { time = "20260102030405" } });

        var command = await station.ReadAsync();
        Assert.Equal(("1012", station.Mn, "123456"), (command.Cn, command.Mn, command.Pw));
        Assert.True(command.AnswerRequested);
        Assert.Equal("SystemTime=20260102030405", command.Cp);
        Assert.Equal(17, command.Qn!.Length);
        await AnswerAsync(station, command, "9011", "QnRtn=1");
        await AnswerAsync(station, command, "9012", "ExeRtn=1");

        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(1, reply["exeRtn"]!.GetValue<int>());
    }

    [Fact]
    public async Task GetTime_RepliesWithTheStationsClock_AndSetRealtimeInterval_SendsRtdInterval()
    {
        var (id, station) = await OnlineStationAsync();
        await using var _ = station;
        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getTime", @params = new { polId = "w01018" } });
        var command = await station.ReadAsync();
        Assert.Equal(("1011", "PolId=w01018"), (command.Cn, command.Cp));
        await AnswerAsync(station, command, "9011", "QnRtn=1");
        await AnswerAsync(station, command, "1011", "PolId=w01018;SystemTime=20260102030405");
        await AnswerAsync(station, command, "9012", "ExeRtn=1");
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal("20260102030405", reply["SystemTime"]!.GetValue<string>());

        var oneWay = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/oneway/{id}", new { method = "setRealtimeInterval", @params = new { seconds = 60 } });
        command = await station.ReadAsync();
        Assert.Equal(("1062", "RtdInterval=60"), (command.Cn, command.Cp));
        // One-way: answered once the station has it (9011 QnRtn=1).
        await AnswerAsync(station, command, "9011", "QnRtn=1");
        await PlatformApi.ExpectAsync(await oneWay.WaitAsync(Guard), HttpStatusCode.OK);
        await AnswerAsync(station, command, "9012", "ExeRtn=1");
    }

    [Fact]
    public async Task MinuteHistory_DataFramesAreStored_AndCounted()
    {
        var (id, station) = await OnlineStationAsync();
        await using var _ = station;
        var (t1, ms1) = Hj212Station.DataTime(TimeSpan.FromHours(3));
        var (t2, ms2) = Hj212Station.DataTime(TimeSpan.FromHours(2));
        var call = fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "getMinuteHistory", @params = new { begin = t1, end = ms2 } });
        var command = await station.ReadAsync();
        Assert.Equal(("2051", $"BeginTime={t1};EndTime={t2}"), (command.Cn, command.Cp));
        await AnswerAsync(station, command, "9011", "QnRtn=1");
        foreach (var (time, value) in new[] { (t1, 1.5), (t2, 2.5) })
        {
            // The history frames carry the request's QN, and ask for the data answer.
            await station.SendAsync(station.Segment("2051", $"DataTime={time};w01018-Avg={value},w01018-Flag=N", qn: command.Qn));
            var answer = await station.ReadAsync();
            Assert.Equal(("9014", command.Qn), (answer.Cn, answer.Qn));
        }

        await AnswerAsync(station, command, "9012", "ExeRtn=1");
        var reply = await PlatformApi.ExpectAsync(await call.WaitAsync(Guard), HttpStatusCode.OK);
        Assert.Equal(2, reply["frames"]!.GetValue<int>());
        var history = await fixture.Admin.HistoryAsync(id, "w01018-Avg", ms1, ms2 + 1);
        Assert.Equal([(ms1, 1.5), (ms2, 2.5)], history.Select(p => (p.Ts, p.Value!.GetValue<double>())).ToArray());
    }

    [Fact]
    public async Task Refusal9011_AndFailure9012_EndPersistentCallsFailed_AndWaitingCallsGoOutOnConnect()
    {
        var (id, mn) = await Hj212Tests.CreateStationAsync(fixture.Admin);
        // Queued while the station is offline; sent when it connects.
        var refused = await SubmitAsync(id, new { method = "setMinuteInterval", @params = new { minutes = 5 }, persistent = true, timeout = 60_000 });
        await using var station = await Hj212Station.ConnectAsync(fixture.Server, mn, "123456");
        var (time, _) = Hj212Station.DataTime(TimeSpan.FromMinutes(1));
        await station.SendAsync(station.Segment("2011", $"DataTime={time};a01001-Rtd=20,a01001-Flag=N", flag: 4));

        var command = await station.ReadAsync();
        Assert.Equal(("1064", "MinInterval=5"), (command.Cn, command.Cp));
        await AnswerAsync(station, command, "9011", "QnRtn=2");
        var call = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{refused}", c => c["status"]!.GetValue<string>() == "FAILED");
        Assert.Equal(2, call["response"]!["qnRtn"]!.GetValue<int>());

        var failing = await SubmitAsync(id, new { method = "getRealtimeInterval", persistent = true, timeout = 60_000 });
        command = await station.ReadAsync();
        Assert.Equal("1061", command.Cn);
        await AnswerAsync(station, command, "9011", "QnRtn=1");
        await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{failing}", c => c["status"]!.GetValue<string>() == "DELIVERED");
        await AnswerAsync(station, command, "9012", "ExeRtn=5");
        call = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{failing}", c => c["status"]!.GetValue<string>() == "FAILED");
        Assert.Equal(5, call["response"]!["exeRtn"]!.GetValue<int>());

        var succeeding = await SubmitAsync(id, new { method = "getRealtimeInterval", persistent = true, timeout = 60_000 });
        command = await station.ReadAsync();
        await AnswerAsync(station, command, "9011", "QnRtn=1");
        await AnswerAsync(station, command, "1061", "RtdInterval=30");
        await AnswerAsync(station, command, "9012", "ExeRtn=1");
        call = await fixture.Admin.EventuallyAsync($"/api/rpc/persistent/{succeeding}", c => c["status"]!.GetValue<string>() == "SUCCESSFUL");
        Assert.Equal("30", call["response"]!["RtdInterval"]!.GetValue<string>());
    }

    [Fact]
    public async Task UnknownMethod_AndBadParams_FailAtOnce_NamingWhatIsKnown()
    {
        var (id, station) = await OnlineStationAsync();
        await using var _ = station;
        var reply = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "reboot" }), HttpStatusCode.OK);
        Assert.Contains("getMinuteHistory", reply["error"]!.GetValue<string>(), StringComparison.Ordinal);

        reply = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{id}", new { method = "setRealtimeInterval", @params = new { seconds = 5 } }), HttpStatusCode.OK);
        Assert.Equal("\"seconds\" must be a whole number from 30 to 3600.", reply["error"]!.GetValue<string>());
    }

    private async Task<Guid> SubmitAsync(Guid deviceId, object body)
    {
        var response = await PlatformApi.ExpectAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/rpc/twoway/{deviceId}", body), HttpStatusCode.OK);
        return Guid.Parse(response["rpcId"]!.GetValue<string>());
    }
}
