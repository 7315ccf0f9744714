using System.Globalization;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// The credentials a run gives devices that do not use access tokens: an HJ 212 station's MN and PW, a JT/T 808
/// terminal's phone number and authentication code. Made from the run's id, the fleet and the device's number, so
/// that the provisioner and the device agree without a table, and two runs on one server do not collide.
/// </summary>
public static class ProtocolCredentials
{
    /// <summary>The credentials type (<c>HJ212</c>, <c>JT808</c>), id and value for the device; null for access-token protocols.</summary>
    public static (string Type, string Id, string Value)? For(DeviceProtocol protocol, string runId, int fleetIndex, int number) => protocol switch
    {
        // MN: at most 24 characters; PW: at most 9.
        DeviceProtocol.Hj212 => ("HJ212", string.Create(CultureInfo.InvariantCulture, $"SIM{runId.ToUpperInvariant()}{fleetIndex:00}{number:000000}"), "p" + runId),
        // A 2013 terminal's phone is 12 BCD digits: five from the run (not starting with 0), two for the fleet, five for the device.
        DeviceProtocol.Jt808 => ("JT808", string.Create(CultureInfo.InvariantCulture, $"{RunDigits(runId)}{fleetIndex % 100:00}{number % 100_000:00000}"), "auth-" + runId + "-" + number.ToString(CultureInfo.InvariantCulture)),
        _ => null,
    };

    private static string RunDigits(string runId) =>
        (10_000 + (uint.Parse(runId.AsSpan(0, Math.Min(8, runId.Length)), NumberStyles.HexNumber, CultureInfo.InvariantCulture) % 90_000)).ToString(CultureInfo.InvariantCulture);
}
