namespace Taihu.Sim.Tests;

/// <summary>
/// The transport zone against the real server: buses and taxis on JT/T 808 driving their routes, traffic counters on
/// MQTT; the buses answer the dispatch centre's location queries, and the taxis that speed raise the overspeed alarm.
/// </summary>
public sealed class TransportScenarioTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task Transport_ShortForm_OnJt808_MeetsItsExpectations()
    {
        var (report, log) = await ShippedScenario.RunAsync(fixture, "transport", 270, 0.01);
        Assert.Equal([3, 10, 1], report.Fleets.Select(f => f.Devices));
        Assert.True(report.Fleets[0].Sent == report.Fleets[0].Acknowledged, $"buses: {report.Fleets[0].Acknowledged} of {report.Fleets[0].Sent} acknowledged\n{log}");
        Assert.True(report.Fleets[2].Sent == report.Fleets[2].Acknowledged, $"counters: {report.Fleets[2].Acknowledged} of {report.Fleets[2].Sent} acknowledged\n{log}");
        // A terminal's fix time has whole seconds: at this speed a bus reports about 13 times a second, and what one
        // second holds is one point (the last report's values).
        Assert.True(report.Fleets[0].Sent > 300, $"buses sent {report.Fleets[0].Sent}");
        Assert.InRange(report.Fleets[0].Stored, 3 * 15, 3 * 25);
        Assert.Equal(report.Fleets[2].Acknowledged, report.Fleets[2].Stored);

        // The location queries reach every bus (JT/T 808 0x8201) and come back with a position (0x0201).
        var calls = Assert.Single(report.Rpc);
        Assert.True(calls.Calls >= 6, $"{calls.Calls} calls");
        Assert.Equal(calls.Calls, calls.Answered);

        // The taxi that loses its network at 01:00 comes back by its back-off.
        Assert.Equal(["Disconnect", "Malformed"], report.Faults.Select(f => f.Kind).Order());
        var disconnect = report.Faults.Single(f => f.Kind == "Disconnect");
        Assert.Contains(("reconnected with back-off", 1), disconnect.Outcomes);

        // The bus's report with a broken check code is answered with the standard's "message error".
        Assert.Equal([("refused: 0x8001 result 2", 1)], report.Faults.Single(f => f.Kind == "Malformed").Outcomes);
        Assert.Equal(1, report.Fleets[1].Reconnects);

        // One taxi in ten races from 30 minutes for ten: its overspeed bit raises the alarm, and clears it after (the
        // clear is stamped with the report's whole second, 4.5 minutes of scenario time at this speed).
        var alarm = Assert.Single(report.Alarms);
        Assert.Equal(("Overspeed", "taxi-0001"), (alarm.Type, alarm.Device));
        Assert.InRange(alarm.RaisedAt, TimeSpan.FromMinutes(29), TimeSpan.FromMinutes(35));
        Assert.InRange(alarm.ClearedAt!.Value, TimeSpan.FromMinutes(35), TimeSpan.FromMinutes(50));
    }
}
