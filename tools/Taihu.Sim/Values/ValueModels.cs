using System.Globalization;

namespace Taihu.Sim.Values;

/// <summary>
/// A value as a device reports it: a number (most telemetry), or a string or boolean from a constant.
/// </summary>
public readonly record struct SimValue(double Number, string? Text = null, bool? Flag = null)
{
    public bool IsNumber => Text is null && Flag is null;

    public static SimValue Of(double number) => new(number);

    public override string ToString() =>
        Text ?? (Flag is { } flag ? (flag ? "true" : "false") : Number.ToString("R", CultureInfo.InvariantCulture));
}

/// <summary>
/// How one value changes over scenario time. A model is a description shared by a fleet; each device and key gets
/// its own <see cref="IValueSource"/> from <see cref="Start"/>, with its own state and random numbers, so two
/// devices of a fleet report different but reproducible values.
/// </summary>
public abstract record ValueModel
{
    /// <summary>Standard deviation of Gaussian noise added to each number (0 for none).</summary>
    public double Noise { get; init; }

    /// <summary>Decimals numbers are rounded to, or null to keep them as computed.</summary>
    public int? Round { get; init; }

    public double? Min { get; init; }

    public double? Max { get; init; }

    /// <summary>A source for one device; <paramref name="random"/> is that device's (seeded) generator.</summary>
    public IValueSource Start(Random random) => new Source(this, random, Begin());

    /// <summary>The model's value at scenario time <paramref name="t"/> before noise, rounding and clamping.</summary>
    protected abstract SimValue Compute(TimeSpan t, Random random, ref double state);

    /// <summary>The state a device starts with (the random walk's start; otherwise unused).</summary>
    protected virtual double Begin() => 0;

    private sealed class Source(ValueModel model, Random random, double state) : IValueSource
    {
        private double _state = state;

        public SimValue Next(TimeSpan t)
        {
            var value = model.Compute(t, random, ref _state);
            if (!value.IsNumber)
            {
                return value;
            }

            var number = value.Number;
            if (model.Noise > 0)
            {
                number += model.Noise * Gaussian(random);
            }

            if (model.Min is { } min && number < min)
            {
                number = min;
            }

            if (model.Max is { } max && number > max)
            {
                number = max;
            }

            if (model.Round is { } decimals)
            {
                number = Math.Round(number, decimals, MidpointRounding.AwayFromZero);
            }

            return SimValue.Of(number);
        }
    }

    /// <summary>A standard normal number (Box-Muller).</summary>
    internal static double Gaussian(Random random)
    {
        var u1 = 1.0 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}

/// <summary>One device's values of one key, in scenario time order.</summary>
public interface IValueSource
{
    SimValue Next(TimeSpan t);
}

/// <summary>The same value every time.</summary>
public sealed record ConstantModel(SimValue Value) : ValueModel
{
    protected override SimValue Compute(TimeSpan t, Random random, ref double state) => Value;
}

/// <summary>Each value is the last plus a uniform step in [-step, +step], kept within min and max (reflected at the bounds).</summary>
public sealed record RandomWalkModel(double StartValue, double Step) : ValueModel
{
    protected override double Begin() => StartValue;

    protected override SimValue Compute(TimeSpan t, Random random, ref double state)
    {
        var next = state + ((random.NextDouble() * 2) - 1) * Step;
        if (Min is { } min && next < min)
        {
            next = min + (min - next);
        }

        if (Max is { } max && next > max)
        {
            next = max - (next - max);
        }

        state = next;
        return SimValue.Of(next);
    }
}

/// <summary><c>mean + amplitude · sin(2π (t + phase) / period)</c>.</summary>
public sealed record SineModel(double Mean, double Amplitude, TimeSpan Period, TimeSpan Phase) : ValueModel
{
    protected override SimValue Compute(TimeSpan t, Random random, ref double state) =>
        SimValue.Of(Mean + Amplitude * Math.Sin(2 * Math.PI * (t + Phase).TotalSeconds / Period.TotalSeconds));
}

/// <summary>
/// A daily profile: either <c>mean + amplitude · cos(2π (hour − peakHour) / 24)</c>, or 24 hourly values
/// interpolated linearly. The hour of day is <see cref="StartHour"/> plus the scenario time.
/// </summary>
public sealed record DiurnalModel(double Mean, double Amplitude, double PeakHour, IReadOnlyList<double>? Hours) : ValueModel
{
    /// <summary>The hour of day (0 to 24) that scenario time zero stands for.</summary>
    public double StartHour { get; init; }

    protected override SimValue Compute(TimeSpan t, Random random, ref double state)
    {
        var hour = (StartHour + t.TotalHours) % 24;
        if (Hours is { } hours)
        {
            var below = (int)Math.Floor(hour);
            var fraction = hour - below;
            return SimValue.Of(hours[below % 24] + ((hours[(below + 1) % 24] - hours[below % 24]) * fraction));
        }

        return SimValue.Of(Mean + Amplitude * Math.Cos(2 * Math.PI * (hour - PeakHour) / 24));
    }
}

/// <summary>Values replayed from a CSV column, one per report, from the first row; with <see cref="Loop"/> it starts over, else the last value repeats.</summary>
public sealed record CsvModel(string File, string Column, IReadOnlyList<double> Values, bool Loop) : ValueModel
{
    protected override SimValue Compute(TimeSpan t, Random random, ref double state)
    {
        var index = (long)state;
        state = index + 1;
        if (index >= Values.Count)
        {
            index = Loop ? index % Values.Count : Values.Count - 1;
        }

        return SimValue.Of(Values[(int)index]);
    }

    /// <summary>Reads the numbers of <paramref name="column"/> (by its header) from CSV text; the problem names the row.</summary>
    public static IReadOnlyList<double> ReadColumn(string text, string column, out string? problem)
    {
        problem = null;
        var values = new List<double>();
        using var reader = new StringReader(text);
        var header = reader.ReadLine();
        if (header is null)
        {
            problem = "the CSV file is empty; its first line names the columns";
            return values;
        }

        var index = Array.IndexOf(header.Split(',').Select(h => h.Trim().Trim('"')).ToArray(), column);
        if (index < 0)
        {
            problem = $"the CSV file has no column '{column}' (its columns: {header})";
            return values;
        }

        var row = 1;
        while (reader.ReadLine() is { } line)
        {
            row++;
            if (line.Length == 0)
            {
                continue;
            }

            var cells = line.Split(',');
            if (index >= cells.Length || !double.TryParse(cells[index].Trim().Trim('"'), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                problem = $"row {row} of the CSV file has no number in column '{column}'";
                return values;
            }

            values.Add(value);
        }

        if (values.Count == 0)
        {
            problem = $"the CSV file has no rows under column '{column}'";
        }

        return values;
    }
}

/// <summary>A value that changes at given scenario times and holds in between (the first step's value before it).</summary>
public sealed record StepsModel(IReadOnlyList<(TimeSpan At, double Value)> Steps) : ValueModel
{
    protected override SimValue Compute(TimeSpan t, Random random, ref double state)
    {
        var value = Steps[0].Value;
        foreach (var (at, stepValue) in Steps)
        {
            if (at > t)
            {
                break;
            }

            value = stepValue;
        }

        return SimValue.Of(value);
    }
}
