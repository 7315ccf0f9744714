using Taihu.Bench.Scenarios;

namespace Taihu.Bench.Tests;

public class IdlePingScheduleTests
{
    [Fact]
    public void Each_client_pings_once_per_period_spread_evenly()
    {
        var period = TimeSpan.FromSeconds(60);
        Assert.Equal(1, IdlePingSchedule.DueBy(TimeSpan.Zero, 4, period)); // client 0 at once
        Assert.Equal(1, IdlePingSchedule.DueBy(TimeSpan.FromSeconds(14.9), 4, period));
        Assert.Equal(2, IdlePingSchedule.DueBy(TimeSpan.FromSeconds(15), 4, period)); // client 1 a quarter in
        Assert.Equal(4, IdlePingSchedule.DueBy(TimeSpan.FromSeconds(59), 4, period));
        Assert.Equal(5, IdlePingSchedule.DueBy(TimeSpan.FromSeconds(60), 4, period)); // client 0 again
        Assert.Equal(10_001, IdlePingSchedule.DueBy(period, 10_000, period));
    }

    [Fact]
    public void Pings_go_round_the_clients_in_order()
    {
        Assert.Equal([0, 1, 2, 0, 1], Enumerable.Range(0, 5).Select(k => IdlePingSchedule.ClientOf(k, 3)));
    }

    [Fact]
    public void Nothing_is_due_without_clients_or_period()
    {
        Assert.Equal(0, IdlePingSchedule.DueBy(TimeSpan.FromSeconds(5), 0, TimeSpan.FromSeconds(60)));
        Assert.Equal(0, IdlePingSchedule.DueBy(TimeSpan.FromSeconds(5), 10, TimeSpan.Zero));
    }
}
