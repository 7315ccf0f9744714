namespace Taihu.Platform.Telemetry;

/// <summary>A telemetry or attribute payload that cannot be stored: the message says exactly why.</summary>
public sealed class PayloadException(string message) : Exception(message);
