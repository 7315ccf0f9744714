using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Security;

namespace Taihu.Platform.Tenants;

/// <summary>
/// Tenants, users, logins and API keys. Tenants are a system administrator's business; users of a tenant are its
/// tenant administrator's. Passwords of people are PBKDF2 hashes (ASP.NET Core's PasswordHasher); a run of failed
/// logins makes the account wait, doubling each time, and each source address has its own allowance of failures
/// (<see cref="LoginLimiter"/>).
/// </summary>
public sealed partial class TenantService(
    ITenantStore store, IDeviceStore devices, IAuditLog audit, IOptions<SecurityOptions> options, IOptions<IngestOptions> ingest,
    LoginLimiter logins, TimeProvider time, ILogger<TenantService> logger, Telemetry.ITelemetryStore? telemetry = null)
{
    private readonly PasswordHasher<User> _hasher = new();

    /// <summary>Shortest password accepted for a person.</summary>
    public const int MinPasswordLength = 8;

    public async Task<Tenant> CreateTenantAsync(Caller caller, string title, int? ttlDays, CancellationToken cancellationToken = default)
    {
        caller.RequireSysAdmin();
        if (string.IsNullOrWhiteSpace(title) || title.Length > DeviceService.MaxNameLength)
        {
            throw PlatformException.BadRequest($"A tenant needs a title of 1 to {DeviceService.MaxNameLength} characters.");
        }

        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var tenant = new Tenant(Guid.CreateVersion7(), title, now, ttlDays);
        await store.CreateTenantAsync(tenant, cancellationToken);
        await devices.CreateProfileAsync(new DeviceProfile(Guid.CreateVersion7(), tenant.Id, "default", "The default device profile", true,
            ProvisionType.Disabled, null, null, DeviceProfile.DefaultInactivityTimeoutMs, now), cancellationToken);
        await audit.WriteAsync(caller, "ADDED", "TENANT", tenant.Id.ToString(), title, cancellationToken: cancellationToken);
        return tenant;
    }

    public async Task<Tenant> UpdateTenantAsync(Caller caller, Guid id, string title, int? ttlDays, CancellationToken cancellationToken = default)
    {
        caller.RequireSysAdmin();
        var tenant = await store.GetTenantAsync(id, cancellationToken) ?? throw PlatformException.NotFound("The tenant");
        tenant = tenant with { Title = title, TtlDays = ttlDays };
        await store.UpdateTenantAsync(tenant, cancellationToken);
        await audit.WriteAsync(caller, "UPDATED", "TENANT", id.ToString(), title, cancellationToken: cancellationToken);
        return tenant;
    }

    public async Task<Tenant> GetTenantAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        // A tenant's own users may read their tenant; nobody else but a system administrator.
        if (caller.Authority != Authority.SysAdmin && caller.TenantId != id)
        {
            throw PlatformException.NotFound("The tenant");
        }

        return await store.GetTenantAsync(id, cancellationToken) ?? throw PlatformException.NotFound("The tenant");
    }

    public Task<Page<Tenant>> ListTenantsAsync(Caller caller, PageRequest request, CancellationToken cancellationToken = default)
    {
        caller.RequireSysAdmin();
        return store.ListTenantsAsync(request, cancellationToken);
    }

    public async Task DeleteTenantAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        caller.RequireSysAdmin();
        var tenant = await store.GetTenantAsync(id, cancellationToken) ?? throw PlatformException.NotFound("The tenant");
        if (telemetry is not null)
        {
            // Every device's points go a slice at a time first, so that the deletion below is a short transaction.
            for (var page = 0; ; page++)
            {
                var devicesPage = await devices.ListDevicesAsync(id, new PageRequest(PageRequest.MaxPageSize, page), cancellationToken: cancellationToken);
                foreach (var device in devicesPage.Data)
                {
                    await telemetry.PurgeDeviceAsync(device.Seq, cancellationToken);
                }

                if (!devicesPage.HasNext)
                {
                    break;
                }
            }
        }

        await store.DeleteTenantAsync(id, cancellationToken);
        await audit.WriteAsync(caller, "DELETED", "TENANT", id.ToString(), tenant.Title, cancellationToken: cancellationToken);
    }

    /// <summary>
    /// Creates a user: a system administrator creates tenant administrators (of any tenant), a tenant administrator
    /// creates users of its own tenant. Without a password the user waits for activation (ThingsBoard's flow).
    /// </summary>
    public async Task<User> CreateUserAsync(Caller caller, string email, Authority authority, Guid? tenantId, string? firstName, string? lastName, string? password, CancellationToken cancellationToken = default)
    {
        if (caller.Authority == Authority.SysAdmin)
        {
            if (authority != Authority.SysAdmin && tenantId is null)
            {
                throw PlatformException.BadRequest("A tenant user needs tenantId.");
            }

            if (authority == Authority.SysAdmin)
            {
                tenantId = null;
            }
        }
        else
        {
            caller.RequireTenantAdmin();
            if (authority == Authority.SysAdmin || (tenantId is { } wanted && wanted != caller.TenantId))
            {
                throw PlatformException.Forbidden();
            }

            tenantId = caller.TenantId;
        }

        if (tenantId is { } tenant && await store.GetTenantAsync(tenant, cancellationToken) is null)
        {
            throw PlatformException.NotFound("The tenant");
        }

        if (string.IsNullOrWhiteSpace(email) || email.Length > 255 || !email.Contains('@', StringComparison.Ordinal))
        {
            throw PlatformException.BadRequest("A user needs a valid e-mail address.");
        }

        var user = new User(Guid.CreateVersion7(), tenantId, email.Trim().ToLowerInvariant(), authority, firstName, lastName, time.GetUtcNow().ToUnixTimeMilliseconds(), password is not null);
        string? hash = null;
        string? activation = null;
        if (password is not null)
        {
            CheckPassword(password);
            hash = _hasher.HashPassword(user, password);
        }
        else
        {
            activation = RandomNumberGenerator.GetHexString(40, lowercase: true);
        }

        await store.CreateUserAsync(user, hash, activation, cancellationToken);
        await audit.WriteAsync(caller, "ADDED", "USER", user.Id.ToString(), user.Email, cancellationToken: cancellationToken);
        return user;
    }

    public async Task<User> GetUserAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        var user = caller.Authority == Authority.SysAdmin
            ? await store.GetUserAsync(id, null, anyTenant: true, cancellationToken)
            : caller.UserId == id || caller.Authority == Authority.TenantAdmin ? await store.GetUserAsync(id, caller.TenantId, cancellationToken: cancellationToken) : null;
        return user ?? throw PlatformException.NotFound("The user");
    }

    public async Task<Page<User>> ListUsersAsync(Caller caller, Guid? tenantId, PageRequest request, CancellationToken cancellationToken = default)
    {
        if (caller.Authority == Authority.SysAdmin)
        {
            return await store.ListUsersAsync(tenantId, request, cancellationToken);
        }

        caller.RequireTenantAdmin();
        return await store.ListUsersAsync(caller.TenantId, request, cancellationToken);
    }

    public async Task DeleteUserAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        var user = await GetUserAsync(caller, id, cancellationToken);
        if (caller.Authority != Authority.SysAdmin)
        {
            caller.RequireTenantAdmin();
        }

        if (user.Id == caller.UserId)
        {
            throw PlatformException.BadRequest("You cannot delete yourself.");
        }

        await store.DeleteUserAsync(id, caller.Authority == Authority.SysAdmin ? null : caller.TenantId, cancellationToken);
        await audit.WriteAsync(caller, "DELETED", "USER", id.ToString(), user.Email, cancellationToken: cancellationToken);
    }

    /// <summary>ThingsBoard's activation link of a user who has not set a password yet.</summary>
    public async Task<string> GetActivationTokenAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        var user = await GetUserAsync(caller, id, cancellationToken);
        if (caller.Authority != Authority.SysAdmin)
        {
            caller.RequireTenantAdmin();
        }

        return await store.GetActivationTokenAsync(user.Id, cancellationToken) ?? throw PlatformException.BadRequest("The user is already activated.");
    }

    /// <summary>Sets the first password of a user from the activation token.</summary>
    public async Task<User> ActivateAsync(string activationToken, string password, CancellationToken cancellationToken = default)
    {
        CheckPassword(password);
        if (string.IsNullOrEmpty(activationToken))
        {
            throw PlatformException.NotFound("The activation token");
        }

        var hash = _hasher.HashPassword(null!, password);
        return await store.ActivateAsync(activationToken, hash, cancellationToken) ?? throw PlatformException.NotFound("The activation token");
    }

    /// <summary>
    /// Checks a login. The check is reserved with <see cref="LoginLimiter"/> first (per account and per source
    /// address, atomically), so failures in parallel are counted like failures in a row; an unknown account is
    /// limited and answered exactly as a known one (and costs the same hash).
    /// </summary>
    public async Task<UserSecrets> LoginAsync(string email, string password, IPAddress? remote = null, CancellationToken cancellationToken = default)
    {
        var account = (email ?? "").Trim().ToLowerInvariant();
        var permit = await logins.AcquireAsync(account, remote, cancellationToken);
        var outcome = AttemptOutcome.NotChecked;
        try
        {
            var secrets = await store.GetUserByEmailAsync(account, cancellationToken);
            if (secrets is null || secrets.PasswordHash is null)
            {
                // Hash anyway, so that an unknown e-mail costs as long as a wrong password.
                _hasher.VerifyHashedPassword(null!, DummyHash, password ?? "");
                outcome = AttemptOutcome.Failed;
                throw PlatformException.Unauthorized("Invalid username or password");
            }

            var result = _hasher.VerifyHashedPassword(secrets.User, secrets.PasswordHash, password ?? "");
            if (result == PasswordVerificationResult.Failed)
            {
                outcome = AttemptOutcome.Failed;
                throw PlatformException.Unauthorized("Invalid username or password");
            }

            outcome = AttemptOutcome.Succeeded;
            return secrets;
        }
        finally
        {
            logins.Release(permit, outcome);
        }
    }

    /// <summary>Ends every token of the user (logout): tokens carry a version that no longer matches.</summary>
    public Task LogoutAsync(Caller caller, CancellationToken cancellationToken = default) => store.BumpTokenVersionAsync(caller.UserId, cancellationToken);

    /// <summary>Creates an API key of the caller's tenant; the key is shown once and stored as its SHA-256.</summary>
    public async Task<(Guid Id, string Key)> CreateApiKeyAsync(Caller caller, string name, Authority authority, CancellationToken cancellationToken = default)
    {
        caller.RequireTenantAdmin();
        if (authority == Authority.SysAdmin)
        {
            throw PlatformException.Forbidden();
        }

        var key = "tk_" + RandomNumberGenerator.GetHexString(40, lowercase: true);
        var id = Guid.CreateVersion7();
        await store.CreateApiKeyAsync(id, caller.RequireTenant(), name, authority, CredentialHasher.Sha256(key), time.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken);
        await audit.WriteAsync(caller, "ADDED", "API_KEY", id.ToString(), name, cancellationToken: cancellationToken);
        return (id, key);
    }

    /// <summary>The calling user's own settings (language, time zone); none for an API key.</summary>
    public async Task<UserPreferences> GetPreferencesAsync(Caller caller, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return UserPreferences.FromAdditionalInfo(await store.GetUserAdditionalInfoAsync(caller.UserId, cancellationToken));
    }

    /// <summary>
    /// Stores the calling user's language and time zone in the user's additional info, other members kept. The
    /// language is ThingsBoard's form (<c>en_US</c>, <c>zh_CN</c>); the time zone an IANA name this server knows, or
    /// null for the browser's own.
    /// </summary>
    public async Task SavePreferencesAsync(Caller caller, UserPreferences preferences, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(preferences);
        if (preferences.Lang is { } lang && (lang.Length is not (2 or 5) || !char.IsAsciiLetterLower(lang[0]) || !char.IsAsciiLetterLower(lang[1])
            || (lang.Length == 5 && (lang[2] != '_' || !char.IsAsciiLetterUpper(lang[3]) || !char.IsAsciiLetterUpper(lang[4])))))
        {
            throw PlatformException.BadRequest("additionalInfo.lang is a language as ThingsBoard writes it, such as en_US or zh_CN.");
        }

        if (preferences.TimeZone is { } zone && (!zone.Contains('/', StringComparison.Ordinal) || !TimeZoneInfo.TryFindSystemTimeZoneById(zone, out _)))
        {
            throw PlatformException.BadRequest($"additionalInfo.timeZone '{zone}' is not a time zone this server knows (an IANA name such as Asia/Shanghai).");
        }

        var existing = await store.GetUserAdditionalInfoAsync(caller.UserId, cancellationToken);
        System.Text.Json.Nodes.JsonObject info;
        try
        {
            info = existing is null ? [] : System.Text.Json.Nodes.JsonNode.Parse(existing) as System.Text.Json.Nodes.JsonObject ?? [];
        }
        catch (System.Text.Json.JsonException)
        {
            info = [];
        }

        info["lang"] = preferences.Lang;
        info["timeZone"] = preferences.TimeZone;
        if (!await store.SetUserAdditionalInfoAsync(caller.UserId, info.ToJsonString(), cancellationToken))
        {
            throw PlatformException.NotFound("The user");
        }
    }

    /// <summary>The caller's tenant's API keys (tenant administrators).</summary>
    public Task<Page<ApiKey>> ListApiKeysAsync(Caller caller, PageRequest request, CancellationToken cancellationToken = default)
    {
        caller.RequireTenantAdmin();
        return store.ListApiKeysAsync(caller.RequireTenant(), request, cancellationToken);
    }

    /// <summary>Revokes an API key of the caller's tenant: requests with it are refused from now on (it is looked up on each one).</summary>
    public async Task RevokeApiKeyAsync(Caller caller, Guid id, CancellationToken cancellationToken = default)
    {
        caller.RequireTenantAdmin();
        if (!await store.DeleteApiKeyAsync(id, caller.RequireTenant(), cancellationToken))
        {
            throw PlatformException.NotFound("The API key");
        }

        await audit.WriteAsync(caller, "DELETED", "API_KEY", id.ToString(), null, cancellationToken: cancellationToken);
    }

    public Task<Caller?> FindApiKeyAsync(string key, CancellationToken cancellationToken = default) => store.FindApiKeyAsync(CredentialHasher.Sha256(key), cancellationToken);

    /// <summary>First start: creates the system administrator; a generated password is logged once.</summary>
    public async Task EnsureSysAdminAsync(CancellationToken cancellationToken = default)
    {
        if (await store.AnySysAdminAsync(cancellationToken))
        {
            return;
        }

        var security = options.Value;
        var password = string.IsNullOrEmpty(security.AdminPassword) ? RandomNumberGenerator.GetString("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", 20) : security.AdminPassword;
        var user = new User(Guid.CreateVersion7(), null, security.AdminEmail.ToLowerInvariant(), Authority.SysAdmin, "System", "Administrator", time.GetUtcNow().ToUnixTimeMilliseconds(), true);
        await store.CreateUserAsync(user, _hasher.HashPassword(user, password), null, cancellationToken);
        if (string.IsNullOrEmpty(security.AdminPassword))
        {
            LogGeneratedAdmin(logger, user.Email, password);
        }
        else
        {
            LogConfiguredAdmin(logger, user.Email);
        }
    }

    /// <summary>The retention sweep's view: every tenant with its time-to-live in days (0 = keep forever).</summary>
    public async Task<IReadOnlyList<(Guid Tenant, int TtlDays)>> RetentionPlanAsync(CancellationToken cancellationToken = default)
    {
        var plan = new List<(Guid, int)>();
        var request = new PageRequest(PageRequest.MaxPageSize);
        for (var page = 0; ; page++)
        {
            var tenants = await store.ListTenantsAsync(request with { Page = page }, cancellationToken);
            foreach (var tenant in tenants.Data)
            {
                plan.Add((tenant.Id, tenant.TtlDays ?? ingest.Value.DefaultTtlDays));
            }

            if (!tenants.HasNext)
            {
                return plan;
            }
        }
    }

    private static void CheckPassword(string password)
    {
        if (password.Length < MinPasswordLength)
        {
            throw PlatformException.BadRequest($"A password needs at least {MinPasswordLength} characters.");
        }
    }

    private static readonly string DummyHash = new PasswordHasher<User>().HashPassword(null!, "not a password of anyone");

    [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Created the system administrator {Email} with the generated password {Password}; it is shown only this once. Change it, or set Security:AdminPassword before the first start.")]
    private static partial void LogGeneratedAdmin(ILogger logger, string email, string password);

    [LoggerMessage(EventId = 2302, Level = LogLevel.Information, Message = "Created the system administrator {Email} with the configured password")]
    private static partial void LogConfiguredAdmin(ILogger logger, string email);
}
