namespace Taihu.Sim.Tests;

/// <summary>
/// The whole city in its short form against the real server: every zone's file included, with MQTT, HTTP, gateway,
/// HJ 212, JT/T 808 and CoAP devices on one server at once, the finance zone's faults among them.
/// </summary>
public sealed class CityScenarioTests(SimServerFixture fixture) : IClassFixture<SimServerFixture>
{
    [Fact]
    public async Task City_ShortForm_AllZonesTogether_MeetsItsExpectations()
    {
        var (report, log) = await ShippedScenario.RunAsync(fixture, "city", 2160, 0.0002);
        Assert.Equal(12, report.Fleets.Count);
        Assert.All(report.Fleets, f => Assert.True(f.Acknowledged > 0, $"{f.Name}: nothing acknowledged"));

        // The stations, buses and parking sensors (CoAP) have every upload answered amid the other zones' faults (the
        // taxis lose their network, and what is in flight then with them).
        var parking = Assert.Single(report.Fleets, f => f.Name == "parking-{n:0000}");
        Assert.Equal(parking.Acknowledged, parking.Stored);
        foreach (var name in (string[])["wq-{n:00}", "outlet-{n:00}", "bus-{n:000}", "parking-{n:0000}"])
        {
            var fleet = Assert.Single(report.Fleets, f => f.Name == name);
            Assert.True(fleet.Sent == fleet.Acknowledged, $"{name}: {fleet.Acknowledged} of {fleet.Sent} acknowledged\n{log}");
        }

        // The parking sensor observes .../rpc over CoAP and answers the operator's state queries with POST .../rpc/{id}.
        var queries = Assert.Single(report.Rpc, r => r.Fleet == "parking-{n:0000}");
        Assert.True(queries.Calls >= 2, $"{queries.Calls} calls");
        Assert.Equal(queries.Calls, queries.Answered);
        Assert.Equal(queries.Calls, parking.RpcAnswered);
    }
}
