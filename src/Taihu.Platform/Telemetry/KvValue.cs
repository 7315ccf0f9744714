using System.Globalization;
using System.Text.Json;

namespace Taihu.Platform.Telemetry;

/// <summary>The type of a telemetry or attribute value, as ThingsBoard types them.</summary>
public enum DataType
{
    Boolean = 0,
    Long = 1,
    Double = 2,
    String = 3,
    Json = 4,
}

/// <summary>One typed value: a boolean, a 64-bit integer, a double, a string, or JSON text.</summary>
public readonly record struct KvValue(DataType Type, bool Boolean, long Long, double Double, string? Text)
{
    public static KvValue Of(bool value) => new(DataType.Boolean, value, 0, 0, null);

    public static KvValue Of(long value) => new(DataType.Long, false, value, 0, null);

    public static KvValue Of(double value) => new(DataType.Double, false, 0, value, null);

    public static KvValue Of(string value) => new(DataType.String, false, 0, 0, value);

    public static KvValue OfJson(string json) => new(DataType.Json, false, 0, 0, json);

    /// <summary>The value as a number for aggregation, or null when it is not one.</summary>
    public double? AsNumber => Type switch
    {
        DataType.Long => Long,
        DataType.Double => Double,
        _ => null,
    };

    /// <summary>Writes the value as a JSON value of its own type (useStrictDataTypes=true).</summary>
    public void WriteTo(Utf8JsonWriter writer)
    {
        switch (Type)
        {
            case DataType.Boolean:
                writer.WriteBooleanValue(Boolean);
                break;
            case DataType.Long:
                writer.WriteNumberValue(Long);
                break;
            case DataType.Double:
                writer.WriteNumberValue(Double);
                break;
            case DataType.Json:
                writer.WriteRawValue(Text!, skipInputValidation: true);
                break;
            default:
                writer.WriteStringValue(Text);
                break;
        }
    }

    /// <summary>The value as ThingsBoard's non-strict API shows it: a string.</summary>
    public override string ToString() => Type switch
    {
        DataType.Boolean => Boolean ? "true" : "false",
        DataType.Long => Long.ToString(CultureInfo.InvariantCulture),
        DataType.Double => Double.ToString("R", CultureInfo.InvariantCulture),
        _ => Text ?? "",
    };
}

/// <summary>A point of a time series: key, timestamp (ms since the Unix epoch) and value.</summary>
public readonly record struct TelemetryPoint(string Key, long Ts, KvValue Value);

/// <summary>An attribute with its scope-independent parts.</summary>
public readonly record struct AttributeEntry(string Key, long LastUpdateTs, KvValue Value);
