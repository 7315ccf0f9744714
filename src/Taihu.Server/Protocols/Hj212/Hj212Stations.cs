using System.Net;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Platform;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Security;
using Taihu.Platform.Tenants;
using Taihu.Protocols.Hj212;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>A station a connection has identified: its device and the settings read for it.</summary>
internal sealed record Hj212Identity(Device Device, Hj212CrcKind Crc, TimeSpan UtcOffset);

/// <summary>
/// Finds the device of a station by its <c>MN</c> and checks its <c>PW</c>, or creates it when the <c>MN</c> is
/// unknown and the <c>PW</c> is the provision key of a profile that allows creating devices; reads the station's
/// settings (server attributes <see cref="CrcAttribute"/> and <see cref="TimeZoneAttribute"/>). Every check of a
/// password counts against the source address like other device authentications
/// (<see cref="DeviceAuthenticationLimiter"/>).
/// </summary>
internal sealed partial class Hj212Stations(
    ProtocolDevices devices, DeviceService deviceService, DeviceAuthenticationLimiter limiter, IAuditLog audit, IOptions<Hj212Options> options, ILogger<Hj212Stations> logger,
    DeviceRevocations revocations)
{
    /// <summary>Server attribute: <c>"modbus"</c> makes the listener accept frames whose CRC is Modbus CRC16 from this station.</summary>
    public const string CrcAttribute = "hj212Crc";

    /// <summary>Server attribute: the station's clock as a UTC offset (<c>+08:00</c>) or zone name, overriding <c>Hj212:TimeZone</c>.</summary>
    public const string TimeZoneAttribute = "hj212TimeZone";

    private static readonly string[] SettingKeys = [CrcAttribute, TimeZoneAttribute];

    private readonly TimeSpan _defaultOffset = Hj212Options.TryParseTimeZone(options.Value.TimeZone, out var offset) ? offset : Hj212Data.ChinaStandardTime;

    public ProtocolDevices Devices => devices;

    /// <summary>The open connections by station device, closed when a device is deleted or its credentials change.</summary>
    public DeviceConnections Connections { get; } = new(revocations);

    /// <summary>The station's device, or the reason word (<c>unknown_device</c>, <c>wrong_password</c>, ...) it was refused for.</summary>
    public async Task<(Hj212Identity? Identity, string? Refusal)> IdentifyAsync(string mn, string pw, EndPoint? remote, CancellationToken cancellationToken)
    {
        var address = SourceAddress.Key((remote as IPEndPoint)?.Address);
        var permit = await limiter.AcquireAsync(address, cancellationToken);
        if (!permit.Granted)
        {
            return (null, "rate_limited");
        }

        var outcome = AttemptOutcome.NotChecked;
        try
        {
            (var device, var refusal, outcome) = await FindOrCreateAsync(mn, pw, cancellationToken);
            if (device is null)
            {
                if (logger.IsEnabled(LogLevel.Debug))
                {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
                    LogRefused(logger, Taihu.Broker.Logging.LogText.Clean(mn), remote, refusal!);
#pragma warning restore CA1873
                }

                return (null, refusal);
            }

            return (await SettingsAsync(device, cancellationToken), null);
        }
        finally
        {
            limiter.Release(address, outcome);
        }
    }

    /// <summary>Whether <paramref name="pw"/> is the password in <paramref name="stored"/> (PBKDF2: slow, once per connection).</summary>
    public static bool Verify(string pw, string? storedHash) => storedHash is not null && CredentialHasher.VerifyPassword(Encoding.UTF8.GetBytes(pw), storedHash);

    private async Task<(Device? Device, string? Refusal, AttemptOutcome Outcome)> FindOrCreateAsync(string mn, string pw, CancellationToken cancellationToken)
    {
        var found = await devices.FindAsync(DeviceService.Hj212Lookup(mn), cancellationToken);
        if (found is not null)
        {
            return Verify(pw, found.SecretHash) ? (found.Device, null, AttemptOutcome.Succeeded) : (null, "wrong_password", AttemptOutcome.Failed);
        }

        if (pw.Length == 0 || await devices.FindProvisioningProfileAsync(pw, cancellationToken) is not { } profile)
        {
            return (null, "unknown_device", AttemptOutcome.Failed);
        }

        try
        {
            var device = await deviceService.CreateInternalWithCredentialsAsync(profile.TenantId, mn, null, profile, null,
                new CredentialsDraft(CredentialsType.Hj212, mn, null, null, pw, null), cancellationToken);
            var caller = new Caller(Guid.Empty, profile.TenantId, Authority.TenantAdmin, "provisioning");
            await audit.WriteAsync(caller, "PROVISION_SUCCESS", "DEVICE", device.Id.ToString(), device.Name, cancellationToken: cancellationToken);
            if (logger.IsEnabled(LogLevel.Information))
            {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
                LogProvisioned(logger, Taihu.Broker.Logging.LogText.Clean(mn), profile.Name);
#pragma warning restore CA1873
            }

            return (device, null, AttemptOutcome.Succeeded);
        }
        catch (CredentialsInUseException)
        {
            // Another connection of the same station created it a moment ago.
            found = await devices.FindAsync(DeviceService.Hj212Lookup(mn), cancellationToken);
            return found is not null && Verify(pw, found.SecretHash) ? (found.Device, null, AttemptOutcome.Succeeded) : (null, "wrong_password", AttemptOutcome.Failed);
        }
        catch (PlatformException e)
        {
            // A device of that name with other credentials, say.
            LogProvisioningFailed(logger, Taihu.Broker.Logging.LogText.Clean(mn), e.Message);
            return (null, "provisioning_failed", AttemptOutcome.Succeeded);
        }
    }

    private async Task<Hj212Identity> SettingsAsync(Device device, CancellationToken cancellationToken)
    {
        var crc = Hj212CrcKind.Standard;
        var offset = _defaultOffset;
        foreach (var entry in await devices.GetServerAttributesAsync(device, SettingKeys, cancellationToken))
        {
            var text = entry.Value.ToString();
            if (entry.Key == CrcAttribute && string.Equals(text, "modbus", StringComparison.OrdinalIgnoreCase))
            {
                crc = Hj212CrcKind.Modbus;
            }
            else if (entry.Key == TimeZoneAttribute && Hj212Options.TryParseTimeZone(text, out var own))
            {
                offset = own;
            }
        }

        return new Hj212Identity(device, crc, offset);
    }

    [LoggerMessage(EventId = 9201, Level = LogLevel.Debug, Message = "HJ 212 station MN {Mn} from {Remote} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string mn, EndPoint? remote, string reason);

    [LoggerMessage(EventId = 9202, Level = LogLevel.Information, Message = "HJ 212 station MN {Mn} provisioned itself in profile {Profile}")]
    private static partial void LogProvisioned(ILogger logger, string mn, string profile);

    [LoggerMessage(EventId = 9203, Level = LogLevel.Warning, Message = "HJ 212 station MN {Mn} could not be provisioned: {Problem}")]
    private static partial void LogProvisioningFailed(ILogger logger, string mn, string problem);
}
