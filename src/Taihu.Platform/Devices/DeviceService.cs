using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Audit;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Devices;

/// <summary>What a caller sends to create or update a device.</summary>
/// <param name="AssignsGateway">Whether the draft sets the gateway the device is assigned to (<paramref name="GatewayId"/>, or none).</param>
public sealed record DeviceDraft(string Name, string? Type, string? Label, Guid? ProfileId, string? Group, bool IsGateway, bool AssignsGateway = false, Guid? GatewayId = null);

/// <summary>What a caller sends to set a device's credentials.</summary>
public sealed record CredentialsDraft(CredentialsType Type, string? AccessToken, string? ClientId, string? UserName, string? Password, string? CertificatePem);

/// <summary>
/// Devices, profiles and credentials for the management API. Every method takes the caller and works only inside
/// the caller's tenant; roles are checked here, below the endpoints, and every change is audited.
/// </summary>
public interface IDeviceService
{
    Task<Device> CreateAsync(Caller caller, DeviceDraft draft, CredentialsDraft? credentials = null, CancellationToken cancellationToken = default);

    Task<Device> UpdateAsync(Caller caller, Guid id, DeviceDraft draft, CancellationToken cancellationToken = default);

    Task<Device> GetAsync(Caller caller, Guid id, CancellationToken cancellationToken = default);

    /// <summary>The caller's tenant's device of exactly that name, or 404.</summary>
    Task<Device> GetByNameAsync(Caller caller, string name, CancellationToken cancellationToken = default);

    Task<Page<Device>> ListAsync(Caller caller, PageRequest request, string? type = null, CancellationToken cancellationToken = default);

    Task DeleteAsync(Caller caller, Guid id, CancellationToken cancellationToken = default);

    Task<DeviceCredentials> GetCredentialsAsync(Caller caller, Guid id, CancellationToken cancellationToken = default);

    Task<DeviceCredentials> SetCredentialsAsync(Caller caller, Guid id, CredentialsDraft draft, CancellationToken cancellationToken = default);

    Task<DeviceProfile> GetProfileAsync(Caller caller, Guid id, CancellationToken cancellationToken = default);

    Task<DeviceProfile> GetDefaultProfileAsync(Caller caller, CancellationToken cancellationToken = default);

    Task<Page<DeviceProfile>> ListProfilesAsync(Caller caller, PageRequest request, CancellationToken cancellationToken = default);

    Task<DeviceProfile> SaveProfileAsync(Caller caller, DeviceProfile profile, CancellationToken cancellationToken = default);

    Task DeleteProfileAsync(Caller caller, Guid id, CancellationToken cancellationToken = default);
}

/// <inheritdoc />
public sealed class DeviceService(IDeviceStore store, IAuditLog audit, IMqttClientDisconnector connections, TimeProvider time, IOptions<SecurityOptions> security,
    Telemetry.ITelemetryStore? telemetry = null, Events.EventSignal? events = null, DeviceRevocations? revocations = null, IDevicesElsewhere? elsewhere = null,
    DeviceCredentialsCache? found = null) : IDeviceService
{
    private readonly int _minimumTokenLength = security.Value.MinimumAccessTokenLength;

    /// <summary>Longest access token.</summary>
    public const int MaxTokenLength = 255;

    /// <summary>Longest device name, type or label.</summary>
    public const int MaxNameLength = 255;

    public async Task<Device> CreateAsync(Caller caller, DeviceDraft draft, CredentialsDraft? credentials = null, CancellationToken cancellationToken = default)
    {
        caller.RequireWrite();
        var tenant = caller.RequireTenant();
        Validate(draft);
        var profile = draft.ProfileId is { } profileId
            ? await store.GetProfileAsync(tenant, profileId, cancellationToken) ?? throw PlatformException.NotFound("The device profile")
            : await store.GetDefaultProfileAsync(tenant, cancellationToken) ?? throw PlatformException.NotFound("The default device profile");
        if (credentials is not null && credentials.Type != CredentialsType.AccessToken && caller.Authority != Authority.TenantAdmin)
        {
            throw PlatformException.Forbidden("Only a tenant administrator sets device credentials.");
        }

        var gatewayId = draft.AssignsGateway ? await AssignedGatewayAsync(caller, tenant, draft.GatewayId, cancellationToken) : null;
        var device = new Device(0, Guid.CreateVersion7(), tenant, draft.Name, draft.Type ?? profile.Name, draft.Label, profile.Id, draft.Group,
            draft.IsGateway, gatewayId, time.GetUtcNow().ToUnixTimeMilliseconds());
        var (stored, lookup, secret) = Prepare(device.Id, credentials ?? new CredentialsDraft(CredentialsType.AccessToken, null, null, null, null, null), _minimumTokenLength);
        try
        {
            device = await store.CreateDeviceAsync(device, stored, lookup, secret, cancellationToken);
        }
        catch (PlatformException e)
        {
            await audit.WriteAsync(caller, "ADDED", "DEVICE", device.Id.ToString(), draft.Name, e.Message, cancellationToken);
            throw;
        }

        await audit.WriteAsync(caller, "ADDED", "DEVICE", device.Id.ToString(), device.Name, cancellationToken: cancellationToken);
        return device;
    }

    /// <summary>Creates a device for the platform itself (provisioning, a gateway's child), audited as the device.</summary>
    public Task<Device> CreateInternalAsync(Guid tenant, string name, string? type, DeviceProfile profile, Guid? gatewayId, string? accessToken, CancellationToken cancellationToken = default) =>
        CreateInternalWithCredentialsAsync(tenant, name, type, profile, gatewayId, new CredentialsDraft(CredentialsType.AccessToken, accessToken, null, null, null, null), cancellationToken);

    /// <summary>Creates a device for the platform itself with the given credentials (a station or terminal provisioned by its profile's key).</summary>
    public async Task<Device> CreateInternalWithCredentialsAsync(Guid tenant, string name, string? type, DeviceProfile profile, Guid? gatewayId, CredentialsDraft credentials, CancellationToken cancellationToken = default)
    {
        Validate(new DeviceDraft(name, type, null, null, null, false));
        var device = new Device(0, Guid.CreateVersion7(), tenant, name, type ?? profile.Name, null, profile.Id, null, false, gatewayId, time.GetUtcNow().ToUnixTimeMilliseconds());
        var (stored, lookup, secret) = Prepare(device.Id, credentials, _minimumTokenLength);
        return await store.CreateDeviceAsync(device, stored, lookup, secret, cancellationToken);
    }

    public async Task<Device> UpdateAsync(Caller caller, Guid id, DeviceDraft draft, CancellationToken cancellationToken = default)
    {
        caller.RequireWrite();
        var tenant = caller.RequireTenant();
        Validate(draft);
        var existing = await store.GetDeviceAsync(tenant, id, cancellationToken) ?? throw PlatformException.NotFound("The device");
        var profileId = existing.ProfileId;
        if (draft.ProfileId is { } wanted && wanted != existing.ProfileId)
        {
            profileId = (await store.GetProfileAsync(tenant, wanted, cancellationToken) ?? throw PlatformException.NotFound("The device profile")).Id;
        }

        var gatewayId = existing.GatewayId;
        if (draft.AssignsGateway && draft.GatewayId != gatewayId)
        {
            gatewayId = draft.GatewayId == id ? throw PlatformException.BadRequest("A device cannot be assigned to itself.") : await AssignedGatewayAsync(caller, tenant, draft.GatewayId, cancellationToken);
        }

        var updated = existing with
        {
            Name = draft.Name, Type = draft.Type ?? existing.Type, Label = draft.Label, ProfileId = profileId, Group = draft.Group, IsGateway = draft.IsGateway, GatewayId = gatewayId,
        };
        await store.UpdateDeviceAsync(updated, cancellationToken);
        DeviceChanged(updated.Seq);
        await audit.WriteAsync(caller, "UPDATED", "DEVICE", id.ToString(), updated.Name, cancellationToken: cancellationToken);
        if (existing.GatewayId is { } previous && previous != gatewayId)
        {
            // A live gateway connection remembers the devices it speaks for; it reconnects without this one.
            DisconnectDevice(previous, "A device was taken away from this gateway.");
        }

        return updated;
    }

    public async Task<Device> GetAsync(Caller caller, Guid id, CancellationToken cancellationToken = default) =>
        await store.GetDeviceAsync(caller.RequireTenant(), id, cancellationToken) ?? throw PlatformException.NotFound("The device");

    public async Task<Device> GetByNameAsync(Caller caller, string name, CancellationToken cancellationToken = default) =>
        await store.GetDeviceByNameAsync(caller.RequireTenant(), name, cancellationToken) ?? throw PlatformException.NotFound("The device");

    public Task<Page<Device>> ListAsync(Caller caller, PageRequest request, string? type = null, CancellationToken cancellationToken = default) =>
        store.ListDevicesAsync(caller.RequireTenant(), request, type, cancellationToken);

    public async Task DeleteAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        caller.RequireWrite();
        var tenant = caller.RequireTenant();
        var device = await store.GetDeviceAsync(tenant, id, cancellationToken) ?? throw PlatformException.NotFound("The device");
        DisconnectDevice(id, "The device was deleted.");
        if (telemetry is not null)
        {
            // Its points go a slice at a time first, so that the deletion below is a short transaction.
            await telemetry.PurgeDeviceAsync(device.Seq, cancellationToken);
        }

        await store.DeleteDeviceAsync(tenant, id, cancellationToken);
        DeviceChanged(device.Seq);
        await audit.WriteAsync(caller, "DELETED", "DEVICE", id.ToString(), device.Name, cancellationToken: cancellationToken);
    }

    public async Task<DeviceCredentials> GetCredentialsAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        var tenant = caller.RequireTenant();
        if (caller.Authority != Authority.TenantAdmin)
        {
            throw PlatformException.Forbidden("Only a tenant administrator reads device credentials.");
        }

        return await store.GetCredentialsAsync(tenant, id, cancellationToken) ?? throw PlatformException.NotFound("The device");
    }

    public async Task<DeviceCredentials> SetCredentialsAsync(Caller caller, Guid id, CredentialsDraft draft, CancellationToken cancellationToken = default)
    {
        caller.RequireTenantAdmin();
        var tenant = caller.RequireTenant();
        var device = await store.GetDeviceAsync(tenant, id, cancellationToken) ?? throw PlatformException.NotFound("The device");
        var (stored, lookup, secret) = Prepare(id, draft, _minimumTokenLength);
        if (!await store.SaveCredentialsAsync(tenant, stored, lookup, secret, cancellationToken))
        {
            throw PlatformException.NotFound("The device");
        }

        // Whoever connected with the old credentials no longer may.
        DisconnectDevice(id, "The device's credentials were changed.");
        await audit.WriteAsync(caller, "CREDENTIALS_UPDATED", "DEVICE", id.ToString(), device.Name, cancellationToken: cancellationToken);
        return stored;
    }

    public async Task<DeviceProfile> GetProfileAsync(Caller caller, Guid id, CancellationToken cancellationToken = default) =>
        await store.GetProfileAsync(caller.RequireTenant(), id, cancellationToken) ?? throw PlatformException.NotFound("The device profile");

    public async Task<DeviceProfile> GetDefaultProfileAsync(Caller caller, CancellationToken cancellationToken = default) =>
        await store.GetDefaultProfileAsync(caller.RequireTenant(), cancellationToken) ?? throw PlatformException.NotFound("The default device profile");

    public Task<Page<DeviceProfile>> ListProfilesAsync(Caller caller, PageRequest request, CancellationToken cancellationToken = default) =>
        store.ListProfilesAsync(caller.RequireTenant(), request, cancellationToken);

    public async Task<DeviceProfile> SaveProfileAsync(Caller caller, DeviceProfile profile, CancellationToken cancellationToken = default)
    {
        caller.RequireTenantAdmin();
        var tenant = caller.RequireTenant();
        if (string.IsNullOrWhiteSpace(profile.Name) || profile.Name.Length > MaxNameLength)
        {
            throw PlatformException.BadRequest($"A device profile needs a name of 1 to {MaxNameLength} characters.");
        }

        if (profile.ProvisionType != ProvisionType.Disabled && (string.IsNullOrEmpty(profile.ProvisionKey) || string.IsNullOrEmpty(profile.ProvisionSecret)))
        {
            throw PlatformException.BadRequest("Provisioning needs a provision key and a provision secret.");
        }

        if (profile.RateLimits is { MessagesPerSecond: < 0 } or { BytesPerSecond: < 0 })
        {
            throw PlatformException.BadRequest("rateLimits.maxPublishRate and rateLimits.maxPublishBytesRate must not be negative (0 is no limit).");
        }

        profile = profile with { TenantId = tenant, InactivityTimeoutMs = profile.InactivityTimeoutMs > 0 ? profile.InactivityTimeoutMs : DeviceProfile.DefaultInactivityTimeoutMs };
        var existing = profile.Id == Guid.Empty ? null : await store.GetProfileAsync(tenant, profile.Id, cancellationToken);
        if (existing is null)
        {
            profile = profile with { Id = profile.Id == Guid.Empty ? Guid.CreateVersion7() : profile.Id, IsDefault = false, CreatedTime = time.GetUtcNow().ToUnixTimeMilliseconds() };
            await store.CreateProfileAsync(profile, cancellationToken);
            await audit.WriteAsync(caller, "ADDED", "DEVICE_PROFILE", profile.Id.ToString(), profile.Name, cancellationToken: cancellationToken);
        }
        else
        {
            profile = profile with { IsDefault = existing.IsDefault, CreatedTime = existing.CreatedTime };
            await store.UpdateProfileAsync(profile, cancellationToken);
            ProfileChanged(profile.Id);
            await audit.WriteAsync(caller, "UPDATED", "DEVICE_PROFILE", profile.Id.ToString(), profile.Name, cancellationToken: cancellationToken);
        }

        return profile;
    }

    public async Task DeleteProfileAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        caller.RequireTenantAdmin();
        var tenant = caller.RequireTenant();
        var profile = await store.GetProfileAsync(tenant, id, cancellationToken) ?? throw PlatformException.NotFound("The device profile");
        if (!await store.DeleteProfileAsync(tenant, id, cancellationToken))
        {
            throw PlatformException.BadRequest("The default profile, or a profile that devices use, cannot be deleted.");
        }

        ProfileChanged(id);
        await audit.WriteAsync(caller, "DELETED", "DEVICE_PROFILE", id.ToString(), profile.Name, cancellationToken: cancellationToken);
    }

    /// <summary>
    /// Closes the connections of a device (and the devices behind it, when it is a gateway): MQTT ones here, those of
    /// the other protocols' listeners through <see cref="DeviceRevocations"/>.
    /// </summary>
    /// <remarks>On a cluster every other node closes the device's connections there too.</remarks>
    public void DisconnectDevice(Guid deviceId, string reason)
    {
        DisconnectDeviceHere(deviceId, reason);
        elsewhere?.DisconnectDevice(deviceId, reason);
    }

    /// <summary>Closes the connections of a device to this node only (another node of a cluster asks it).</summary>
    public void DisconnectDeviceHere(Guid deviceId, string reason)
    {
        // Another node changed its credentials or deleted it: what this node kept of it goes first.
        found?.Clear();
        connections.Disconnect(identity => identity.State is DeviceSession session && session.Device.Id == deviceId, ReasonCode.NotAuthorized, reason);
        revocations?.Revoke(new DeviceRevocation(deviceId, null, reason));
    }

    /// <summary>Closes the connections of every device of a tenant (the tenant is being deleted), on every node of a cluster.</summary>
    public void DisconnectTenant(Guid tenantId, string reason)
    {
        DisconnectTenantHere(tenantId, reason);
        elsewhere?.DisconnectTenant(tenantId, reason);
    }

    /// <summary>Closes the connections of every device of a tenant to this node only (another node of a cluster asks it).</summary>
    public void DisconnectTenantHere(Guid tenantId, string reason)
    {
        found?.Clear();
        connections.Disconnect(identity => identity.State is DeviceSession session && session.Device.TenantId == tenantId, ReasonCode.NotAuthorized, reason);
        revocations?.Revoke(new DeviceRevocation(null, tenantId, reason));
    }

    // This process's caches hear of a change at once (the event signal); a cluster's other nodes are told.
    private void DeviceChanged(long deviceSeq)
    {
        events?.NotifyDeviceChanged(deviceSeq);
        elsewhere?.DeviceChanged(deviceSeq);
    }

    private void ProfileChanged(Guid profileId)
    {
        events?.NotifyProfileChanged(profileId);
        elsewhere?.ProfileChanged(profileId);
    }

    /// <summary>The row to store for a credentials draft: what is shown, the lookup key, and the hashed secret.</summary>
    /// <remarks>
    /// A chosen access token is <paramref name="minimumTokenLength"/> to 255 characters of printable ASCII other than
    /// space and '/': it travels as an MQTT user name and in the HTTP device API's path, and short ones are guessed.
    /// Tokens given to existing devices before the rule keep working; generated ones are 20 random characters.
    /// </remarks>
    public static (DeviceCredentials Stored, string Lookup, string? SecretHash) Prepare(Guid deviceId, CredentialsDraft draft, int minimumTokenLength)
    {
        switch (draft.Type)
        {
            case CredentialsType.AccessToken:
                var token = string.IsNullOrEmpty(draft.AccessToken) ? CredentialHasher.NewAccessToken() : draft.AccessToken;
                if (!IsValidAccessToken(token, minimumTokenLength))
                {
                    throw PlatformException.BadRequest($"An access token is {minimumTokenLength} to {MaxTokenLength} characters of printable ASCII without spaces or '/'.");
                }

                return (new DeviceCredentials(deviceId, CredentialsType.AccessToken, token, null, null, null), TokenLookup(token), null);
            case CredentialsType.MqttBasic:
                if (string.IsNullOrEmpty(draft.ClientId) && string.IsNullOrEmpty(draft.UserName))
                {
                    throw PlatformException.BadRequest("MQTT basic credentials need a client id, a user name, or both.");
                }

                if (!string.IsNullOrEmpty(draft.UserName) && string.IsNullOrEmpty(draft.Password))
                {
                    throw PlatformException.BadRequest("MQTT basic credentials with a user name need a password.");
                }

                var lookup = string.IsNullOrEmpty(draft.UserName) ? BasicClientLookup(draft.ClientId!) : BasicUserLookup(draft.UserName);
                var hash = string.IsNullOrEmpty(draft.Password) ? null : CredentialHasher.HashPassword(draft.Password);
                var shown = string.IsNullOrEmpty(draft.UserName) ? draft.ClientId : draft.UserName;
                return (new DeviceCredentials(deviceId, CredentialsType.MqttBasic, shown, draft.ClientId, draft.UserName, null), lookup, hash);
            case CredentialsType.Hj212:
                // credentialsId is the station's MN, credentialsValue its PW (carried as AccessToken and Password).
                if (!IsValidHj212Code(draft.AccessToken, MaxHj212MnLength) || !IsValidHj212Code(draft.Password, MaxHj212PwLength))
                {
                    throw PlatformException.BadRequest($"HJ 212 credentials are the station's MN as credentialsId (1 to {MaxHj212MnLength} characters of printable ASCII, no ';', ',', '=' or '&') "
                        + $"and its PW as credentialsValue (1 to {MaxHj212PwLength} such characters).");
                }

                return (new DeviceCredentials(deviceId, CredentialsType.Hj212, draft.AccessToken, null, null, null), Hj212Lookup(draft.AccessToken!), CredentialHasher.HashPassword(draft.Password!));
            case CredentialsType.Jt808:
                // credentialsId is the terminal's phone number, credentialsValue the authentication code (generated when absent).
                var phone = draft.AccessToken;
                if (phone is null || phone.Length is 0 or > 20 || phone.AsSpan().ContainsAnyExceptInRange('0', '9'))
                {
                    throw PlatformException.BadRequest("JT/T 808 credentials are the terminal's phone number as credentialsId (1 to 20 digits, as its BCD number reads), "
                        + "and optionally the authentication code as credentialsValue.");
                }

                var code = string.IsNullOrEmpty(draft.Password) ? CredentialHasher.NewAccessToken() : draft.Password;
                if (code.Length > MaxJt808AuthCodeLength || !IsValidAccessToken(code, 1))
                {
                    throw PlatformException.BadRequest($"A JT/T 808 authentication code is 1 to {MaxJt808AuthCodeLength} characters of printable ASCII without spaces or '/'.");
                }

                return (new DeviceCredentials(deviceId, CredentialsType.Jt808, phone, null, code, null), Jt808Lookup(phone), null);
            default:
                if (string.IsNullOrWhiteSpace(draft.CertificatePem))
                {
                    throw PlatformException.BadRequest("X.509 credentials need the device certificate in PEM.");
                }

                string thumbprint;
                try
                {
                    using var certificate = X509Certificate2.CreateFromPem(draft.CertificatePem);
                    thumbprint = Thumbprint(certificate);
                }
                catch (CryptographicException)
                {
                    throw PlatformException.BadRequest("The device certificate is not a valid PEM certificate.");
                }

                return (new DeviceCredentials(deviceId, CredentialsType.X509Certificate, thumbprint, null, null, draft.CertificatePem), CertificateLookup(thumbprint), null);
        }
    }

    /// <summary>Whether a chosen access token has the length and alphabet tokens must have.</summary>
    public static bool IsValidAccessToken(string token, int minimumTokenLength)
    {
        if (token.Length < minimumTokenLength || token.Length > MaxTokenLength)
        {
            return false;
        }

        foreach (var c in token)
        {
            if (c is <= ' ' or > '~' or '/')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Lower-case hex SHA-256 of the certificate's DER bytes.</summary>
    public static string Thumbprint(X509Certificate2 certificate) => Convert.ToHexStringLower(certificate.GetCertHash(HashAlgorithmName.SHA256));

    public static string TokenLookup(string token) => "t:" + CredentialHasher.Sha256(token);

    public static string BasicUserLookup(string userName) => "u:" + userName;

    public static string BasicClientLookup(string clientId) => "c:" + clientId;

    public static string CertificateLookup(string thumbprint) => "x:" + thumbprint;

    /// <summary>Longest HJ 212 <c>MN</c> (the standard's is 24 characters) and <c>PW</c> (6 in the standard; some stations send more).</summary>
    public const int MaxHj212MnLength = 24;

    public const int MaxHj212PwLength = 32;

    /// <summary>Longest JT/T 808 authentication code (its length travels in one byte in 2019's 0x0102).</summary>
    public const int MaxJt808AuthCodeLength = 64;

    public static string Hj212Lookup(string mn) => "h:" + mn;

    /// <summary>
    /// The lookup of a JT/T 808 phone number: its digits without leading zeros, so that a 2013 terminal's 12 digits
    /// and the same number sent by a 2019 terminal in 20 digits find the same device.
    /// </summary>
    public static string Jt808Lookup(string phoneDigits) => "j:" + phoneDigits.TrimStart('0');

    private static bool IsValidHj212Code(string? value, int maxLength)
    {
        if (string.IsNullOrEmpty(value) || value.Length > maxLength)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (c is <= ' ' or > '~' or ';' or ',' or '=' or '&')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The gateway a device is assigned to: a gateway device of the same tenant, or none.</summary>
    private async Task<Guid?> AssignedGatewayAsync(Caller caller, Guid tenant, Guid? gatewayId, CancellationToken cancellationToken)
    {
        if (gatewayId is not { } wanted)
        {
            return null;
        }

        if (caller.Authority != Authority.TenantAdmin)
        {
            // Assigning a device gives a gateway the right to speak for it, as credentials do.
            throw PlatformException.Forbidden("Only a tenant administrator assigns a device to a gateway.");
        }

        var gateway = await store.GetDeviceAsync(tenant, wanted, cancellationToken) ?? throw PlatformException.NotFound("The gateway");
        return gateway.IsGateway ? gateway.Id : throw PlatformException.BadRequest("additionalInfo.lastConnectedGateway must name a gateway device (additionalInfo.gateway true).");
    }

    private static void Validate(DeviceDraft draft)
    {
        if (string.IsNullOrWhiteSpace(draft.Name) || draft.Name.Length > MaxNameLength)
        {
            throw PlatformException.BadRequest($"A device needs a name of 1 to {MaxNameLength} characters.");
        }

        if (draft.Type?.Length > MaxNameLength || draft.Label?.Length > MaxNameLength || draft.Group?.Length > MaxNameLength)
        {
            throw PlatformException.BadRequest($"Device type, label and group are at most {MaxNameLength} characters.");
        }
    }
}
