using Taihu.Sim.Running;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Tests;

/// <summary>Several simulator processes share a scenario: the slices are disjoint and together the whole fleet.</summary>
public sealed class FleetSliceTests
{
    private static Scenario Scenario() => ScenarioLoader.Parse("""
        name: sliced
        duration: 1h
        fleets:
          - name: meter-{n}
            count: 10
            interval: 1m
            telemetry: { energy: 1 }
          - name: band-{n}
            count: 7
            interval: 1m
            gateway:
              name: gw-{n}
              devices: 3
            telemetry: { heartRate: 70 }
        """, "sliced.yaml", ".");

    [Fact]
    public void Slices_AreDisjoint_AndTogetherTheWholeFleet_WithGatewaysKeptWhole()
    {
        var scenario = Scenario();
        var whole = Provisioner.Plan(scenario, ScenarioScaling.None, FleetSlice.Whole).Select(p => (p.FleetIndex, p.Number)).ToList();
        Assert.Equal(17, whole.Count);
        var parts = Enumerable.Range(1, 3).Select(i => Provisioner.Plan(scenario, ScenarioScaling.None, new FleetSlice(i, 3)).Select(p => (p.FleetIndex, p.Number)).ToList()).ToList();
        Assert.Equal(whole.Order(), parts.SelectMany(p => p).Order());
        Assert.Equal(17, parts.SelectMany(p => p).Distinct().Count());

        // Meters 1, 4, 7, 10 in slice 1; bands by their gateway: gateway 1 (bands 1 to 3) in slice 1.
        Assert.Equal([(0, 1), (0, 4), (0, 7), (0, 10), (1, 1), (1, 2), (1, 3)], parts[0]);
        Assert.Equal([(0, 2), (0, 5), (0, 8), (1, 4), (1, 5), (1, 6)], parts[1]);
        Assert.Equal([(0, 3), (0, 6), (0, 9), (1, 7)], parts[2]);
    }

    [Theory]
    [InlineData(1, 3, 10, 4)]
    [InlineData(2, 3, 10, 3)]
    [InlineData(3, 3, 10, 3)]
    [InlineData(3, 3, 2, 0)]
    [InlineData(1, 1, 5, 5)]
    public void CountOf_IsTheSlicesShareOfTheFirstDevices(int index, int count, int n, int expected)
    {
        var slice = new FleetSlice(index, count);
        Assert.Equal(expected, slice.CountOf(n));
        Assert.Equal(Enumerable.Range(1, n).Count(slice.Contains), slice.CountOf(n));
    }

    [Theory]
    [InlineData("0/3")]
    [InlineData("4/3")]
    [InlineData("1/0")]
    [InlineData("2")]
    [InlineData("a/b")]
    [InlineData("-1/2")]
    public void BadSlice_IsRefusedWithItsForm(string text)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => FleetSlice.Parse(text));
        Assert.Contains("'i/n'", e.Message, StringComparison.Ordinal);
    }
}
