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
        var report = await ShippedScenario.RunAsync(fixture, "city", 4320, 0.0005);
        Assert.Equal(12, report.Fleets.Count);
        Assert.All(report.Fleets, f => Assert.True(f.Acknowledged > 0, $"{f.Name}: nothing acknowledged"));

        // CoAP parking sensors: every confirmable POST answered.
        var parking = Assert.Single(report.Fleets, f => f.Name == "parking-{n:0000}");
        Assert.Equal(2, parking.Devices);
        Assert.Equal(parking.Sent, parking.Acknowledged);
        Assert.Equal(parking.Acknowledged, parking.Stored);
    }
}
