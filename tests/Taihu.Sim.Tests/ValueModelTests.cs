using Taihu.Sim.Scenarios;
using Taihu.Sim.Values;

namespace Taihu.Sim.Tests;

/// <summary>The value models: each gives the shape it promises, reproducibly for a seed.</summary>
public sealed class ValueModelTests
{
    private static readonly TimeSpan Hour = TimeSpan.FromHours(1);

    [Fact]
    public void Sine_HasItsMeanAmplitudeAndPhase()
    {
        var source = new SineModel(20, 5, TimeSpan.FromHours(24), TimeSpan.Zero).Start(new Random(1));
        Assert.Equal(20, source.Next(TimeSpan.Zero).Number, 9);
        Assert.Equal(25, source.Next(6 * Hour).Number, 9);
        Assert.Equal(15, source.Next(18 * Hour).Number, 9);
        var shifted = new SineModel(20, 5, TimeSpan.FromHours(24), TimeSpan.FromHours(6)).Start(new Random(1));
        Assert.Equal(25, shifted.Next(TimeSpan.Zero).Number, 9);
    }

    [Fact]
    public void Diurnal_PeaksAtItsHour_CountingFromTheStartHour()
    {
        var model = new DiurnalModel(35, 15, 8, null) { StartHour = 6 };
        var source = model.Start(new Random(1));
        Assert.Equal(50, source.Next(2 * Hour).Number, 9); // 06:00 + 2 h = the 08:00 peak
        Assert.Equal(20, source.Next(14 * Hour).Number, 9); // 20:00, twelve hours later: the trough
        Assert.Equal(50, source.Next(26 * Hour).Number, 9); // the next day's peak
    }

    [Fact]
    public void Diurnal_InterpolatesHourlyValues()
    {
        var hours = Enumerable.Range(0, 24).Select(h => (double)h * 10).ToArray();
        var source = new DiurnalModel(0, 0, 0, hours).Start(new Random(1));
        Assert.Equal(30, source.Next(3 * Hour).Number, 9);
        Assert.Equal(35, source.Next(3.5 * Hour).Number, 9);
        Assert.Equal(115, source.Next(23.5 * Hour).Number, 9); // between 23:00 (230) and midnight (0)
    }

    [Fact]
    public void RandomWalk_StaysWithinItsBounds_AndMovesAtMostAStep()
    {
        var source = new RandomWalkModel(50, 3) { Min = 40, Max = 60 }.Start(new Random(5));
        var last = 50.0;
        for (var i = 0; i < 10_000; i++)
        {
            var value = source.Next(TimeSpan.FromSeconds(i)).Number;
            Assert.InRange(value, 40, 60);
            Assert.True(Math.Abs(value - last) <= 3 + 1e-9, $"step {i}: {last} to {value}");
            last = value;
        }
    }

    [Fact]
    public void SameSeed_SameValues_OtherSeed_OtherValues()
    {
        var model = new RandomWalkModel(10, 1) { Noise = 0.5 };
        static double[] Run(IValueSource s) => Enumerable.Range(0, 50).Select(i => s.Next(TimeSpan.FromSeconds(i)).Number).ToArray();
        Assert.Equal(Run(model.Start(new Random(42))), Run(model.Start(new Random(42))));
        Assert.NotEqual(Run(model.Start(new Random(42))), Run(model.Start(new Random(43))));
    }

    [Fact]
    public void Noise_HasItsStandardDeviation()
    {
        var source = new ConstantModel(SimValue.Of(100)) { Noise = 2 }.Start(new Random(3));
        var values = Enumerable.Range(0, 20_000).Select(i => source.Next(TimeSpan.Zero).Number).ToArray();
        var mean = values.Average();
        var deviation = Math.Sqrt(values.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, 99.9, 100.1);
        Assert.InRange(deviation, 1.9, 2.1);
    }

    [Fact]
    public void RoundAndClamp_ApplyAfterNoise()
    {
        var source = new ConstantModel(SimValue.Of(0.04)) { Noise = 1, Min = 0, Max = 1, Round = 2 }.Start(new Random(9));
        for (var i = 0; i < 1000; i++)
        {
            var value = source.Next(TimeSpan.Zero).Number;
            Assert.InRange(value, 0, 1);
            Assert.Equal(value, Math.Round(value, 2), 12);
        }
    }

    [Fact]
    public void Steps_HoldBetweenTheirTimes()
    {
        var source = new StepsModel([(TimeSpan.FromMinutes(10), 1), (TimeSpan.FromMinutes(20), 5)]).Start(new Random(1));
        Assert.Equal(1, source.Next(TimeSpan.Zero).Number);
        Assert.Equal(1, source.Next(TimeSpan.FromMinutes(19)).Number);
        Assert.Equal(5, source.Next(TimeSpan.FromMinutes(20)).Number);
        Assert.Equal(5, source.Next(TimeSpan.FromDays(3)).Number);
    }

    [Fact]
    public void Csv_ReplaysInOrder_LoopingOrHoldingTheLast()
    {
        var looping = new CsvModel("f.csv", "v", [1, 2, 3], Loop: true).Start(new Random(1));
        Assert.Equal([1, 2, 3, 1, 2], Enumerable.Range(0, 5).Select(_ => looping.Next(TimeSpan.Zero).Number));
        var holding = new CsvModel("f.csv", "v", [1, 2, 3], Loop: false).Start(new Random(1));
        Assert.Equal([1, 2, 3, 3, 3], Enumerable.Range(0, 5).Select(_ => holding.Next(TimeSpan.Zero).Number));
    }

    [Fact]
    public void CsvColumn_IsReadByItsHeader_WithQuotesAndBlankLines()
    {
        var values = CsvModel.ReadColumn("\"time\",\"level\"\n0,\"1.5\"\n\n60,2.5e1\n", "level", out var problem);
        Assert.Null(problem);
        Assert.Equal([1.5, 25], values);
        CsvModel.ReadColumn("", "level", out problem);
        Assert.Contains("empty", problem, StringComparison.Ordinal);
        CsvModel.ReadColumn("a,b\n", "level", out problem);
        Assert.Contains("no column 'level'", problem, StringComparison.Ordinal);
        CsvModel.ReadColumn("level\n", "level", out problem);
        Assert.Contains("no rows", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("250ms", 0.25)]
    [InlineData("10s", 10)]
    [InlineData("5m", 300)]
    [InlineData("5min", 300)]
    [InlineData("1h30m", 5400)]
    [InlineData("2d", 172_800)]
    [InlineData("1.5h", 5400)]
    [InlineData("42", 42)]
    [InlineData(" 3s ", 3)]
    public void Durations_Parse(string text, double seconds)
    {
        Assert.True(Durations.TryParse(text, out var value, out var problem), problem);
        Assert.Equal(TimeSpan.FromSeconds(seconds), value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("5 minutes")]
    [InlineData("5w")]
    [InlineData("m5")]
    [InlineData("-3")]
    [InlineData("1h-5m")]
    public void Durations_RefuseWhatIsNotOne(string text)
    {
        Assert.False(Durations.TryParse(text, out _, out var problem));
        Assert.NotNull(problem);
    }

    [Fact]
    public void Durations_FormatShortly()
    {
        Assert.Equal("1h30m", Durations.Format(TimeSpan.FromMinutes(90)));
        Assert.Equal("250ms", Durations.Format(TimeSpan.FromMilliseconds(250)));
        Assert.Equal("1d2h3m4.5s", Durations.Format(new TimeSpan(1, 2, 3, 4, 500)));
    }

    [Fact]
    public void Scaling_DividesTimeAndShrinksFleets_KeepingOneDevice()
    {
        var scaling = new ScenarioScaling(60, 0.01);
        Assert.Equal(TimeSpan.FromMinutes(1), scaling.Real(TimeSpan.FromHours(1)));
        Assert.Equal(TimeSpan.FromHours(1), scaling.ScenarioTime(TimeSpan.FromMinutes(1)));
        Assert.Equal(1, scaling.Count(40));
        Assert.Equal(2, scaling.Count(150));
        Assert.Equal(40, ScenarioScaling.None.Count(40));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ScenarioScaling(0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ScenarioScaling(1, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ScenarioScaling(double.PositiveInfinity, 1));
    }
}
