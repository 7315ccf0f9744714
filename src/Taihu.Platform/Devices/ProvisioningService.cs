using System.Buffers;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Taihu.Platform.Audit;
using Taihu.Platform.Security;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Devices;

/// <summary>
/// Device provisioning as ThingsBoard does it: a device sends its name with the profile's provision key and
/// secret, and gets an access token back. The profile decides: create new devices, only hand out the credentials
/// of devices created beforehand, or refuse.
/// </summary>
public sealed class ProvisioningService(IDeviceStore store, DeviceService devices, IAuditLog audit, DeviceAuthenticationLimiter limiter)
{
    /// <summary>
    /// Answers a request payload (MQTT <c>/provision/request</c> or <c>POST /api/v1/provision</c>) with the response
    /// JSON. A wrong key or secret, and a chosen token another device holds, count against the source address as
    /// failed device authentications; beyond the limit the request is refused unchecked with a 429
    /// <see cref="PlatformException"/>.
    /// </summary>
    public async Task<byte[]> ProvisionAsync(ReadOnlyMemory<byte> payload, IPAddress address, CancellationToken cancellationToken = default)
    {
        var request = Parse(payload.Span);
        var permit = await limiter.AcquireAsync(address, cancellationToken);
        if (!permit.Granted)
        {
            throw PlatformException.TooManyRequests(DeviceAuthenticationLimiter.Refusal(permit), permit.RetryAfter);
        }

        var outcome = AttemptOutcome.NotChecked;
        try
        {
            (var response, outcome) = await ProvisionCheckedAsync(request, cancellationToken);
            return response;
        }
        finally
        {
            limiter.Release(address, outcome);
        }
    }

    private async Task<(byte[] Response, AttemptOutcome Outcome)> ProvisionCheckedAsync(
        (string? DeviceName, string? Key, string? Secret, string? Token) request, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(request.Key) || string.IsNullOrEmpty(request.Secret))
        {
            return (Failure("NOT_FOUND", "Provision data was not found: provisionDeviceKey and provisionDeviceSecret are required."), AttemptOutcome.NotChecked);
        }

        var profile = await store.FindProfileByProvisionKeyAsync(request.Key, cancellationToken);
        if (profile is null || profile.ProvisionType == ProvisionType.Disabled || profile.ProvisionSecret is null
            || !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(profile.ProvisionSecret), Encoding.UTF8.GetBytes(request.Secret)))
        {
            return (Failure("NOT_FOUND", "Provision data was not found."), AttemptOutcome.Failed);
        }

        if (string.IsNullOrWhiteSpace(request.DeviceName))
        {
            return (Failure("FAILURE", "deviceName is required."), AttemptOutcome.Succeeded);
        }

        var existing = await store.GetDeviceByNameAsync(profile.TenantId, request.DeviceName, cancellationToken);
        var caller = new Caller(Guid.Empty, profile.TenantId, Authority.TenantAdmin, "provisioning");
        if (profile.ProvisionType == ProvisionType.CheckPreProvisionedDevices)
        {
            if (existing is null || existing.ProfileId != profile.Id)
            {
                return (Failure("NOT_FOUND", $"No device named '{request.DeviceName}' was created beforehand in this profile."), AttemptOutcome.Succeeded);
            }

            var credentials = await store.GetCredentialsAsync(profile.TenantId, existing.Id, cancellationToken);
            if (credentials is null || credentials.Type != CredentialsType.AccessToken)
            {
                return (Failure("FAILURE", "The device's credentials are not an access token."), AttemptOutcome.Succeeded);
            }

            await audit.WriteAsync(caller, "PROVISION_SUCCESS", "DEVICE", existing.Id.ToString(), existing.Name, cancellationToken: cancellationToken);
            return (Success(credentials.CredentialsId!), AttemptOutcome.Succeeded);
        }

        if (existing is not null)
        {
            return (Failure("FAILURE", $"A device named '{request.DeviceName}' is already provisioned."), AttemptOutcome.Succeeded);
        }

        try
        {
            var device = await devices.CreateInternalAsync(profile.TenantId, request.DeviceName, null, profile, null, request.Token, cancellationToken);
            var credentials = await store.GetCredentialsAsync(profile.TenantId, device.Id, cancellationToken);
            await audit.WriteAsync(caller, "PROVISION_SUCCESS", "DEVICE", device.Id.ToString(), device.Name, cancellationToken: cancellationToken);
            return (Success(credentials!.CredentialsId!), AttemptOutcome.Succeeded);
        }
        catch (CredentialsInUseException e)
        {
            // The chosen token exists somewhere: a guess like any other.
            return (Failure("FAILURE", e.Message), AttemptOutcome.Failed);
        }
        catch (PlatformException e)
        {
            return (Failure("FAILURE", e.Message), AttemptOutcome.Succeeded);
        }
    }

    private static byte[] Success(string token)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("status", "SUCCESS");
            writer.WriteString("credentialsType", "ACCESS_TOKEN");
            writer.WriteString("credentialsValue", token);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>ThingsBoard's failure answer: <c>{"status":"NOT_FOUND"|"FAILURE","errorMsg":".."}</c>.</summary>
    public static byte[] Failure(string status, string message)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("status", status);
            writer.WriteString("errorMsg", message);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static (string? DeviceName, string? Key, string? Secret, string? Token) Parse(ReadOnlySpan<byte> payload)
    {
        try
        {
            var reader = new Utf8JsonReader(payload);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new PayloadException("A provisioning request is a JSON object with deviceName, provisionDeviceKey and provisionDeviceSecret.");
            }

            string? name = null, key = null, secret = null, token = null, type = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var property = reader.GetString();
                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                {
                    reader.Skip();
                    continue;
                }

                var value = reader.GetString();
                switch (property)
                {
                    case "deviceName": name = value; break;
                    case "provisionDeviceKey": key = value; break;
                    case "provisionDeviceSecret": secret = value; break;
                    case "token": token = value; break;
                    case "credentialsType": type = value; break;
                }
            }

            if (type is not null && type != "ACCESS_TOKEN")
            {
                throw new PayloadException($"credentialsType {type} cannot be provisioned here; use ACCESS_TOKEN.");
            }

            return (name, key, secret, token);
        }
        catch (JsonException e)
        {
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }
    }
}
