namespace Taihu.Platform.Tenants;

/// <summary>A business using the platform; everything it owns is invisible to every other tenant.</summary>
public sealed record Tenant(Guid Id, string Title, long CreatedTime, int? TtlDays);

/// <summary>What a user may do. The names are ThingsBoard's authorities, plus the two read roles Taihu adds.</summary>
public enum Authority
{
    /// <summary>Manages tenants and their administrators; sees no tenant's devices or data.</summary>
    SysAdmin,

    /// <summary>Manages everything in its tenant.</summary>
    TenantAdmin,

    /// <summary>Reads and writes devices, attributes and telemetry of its tenant; not users, profiles or credentials.</summary>
    Operator,

    /// <summary>Reads its tenant's devices and data; changes nothing.</summary>
    Viewer,
}

/// <summary>
/// A user's own settings for the console, kept in the user's additional info as ThingsBoard keeps them:
/// <see cref="Lang"/> as ThingsBoard writes it (<c>en_US</c>, <c>zh_CN</c>), <see cref="TimeZone"/> an IANA name
/// (<c>Asia/Shanghai</c>); null: not chosen (the browser's).
/// </summary>
public sealed record UserPreferences(string? Lang, string? TimeZone)
{
    /// <summary>Nothing chosen.</summary>
    public static readonly UserPreferences None = new(null, null);

    /// <summary>The preferences kept in a user's additional info (a JSON object), or <see cref="None"/> when it has none or is not JSON.</summary>
    public static UserPreferences FromAdditionalInfo(string? json)
    {
        if (json is null)
        {
            return None;
        }

        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(json);
            var root = document.RootElement;
            return root.ValueKind == System.Text.Json.JsonValueKind.Object ? new UserPreferences(Text(root, "lang"), Text(root, "timeZone")) : None;
        }
        catch (System.Text.Json.JsonException)
        {
            return None;
        }

        static string? Text(System.Text.Json.JsonElement root, string name) =>
            root.TryGetProperty(name, out var value) && value.ValueKind == System.Text.Json.JsonValueKind.String ? value.GetString() : null;
    }
}

/// <summary>An API key of a tenant as it is listed: its name and authority; the key itself is shown once, at creation.</summary>
public sealed record ApiKey(Guid Id, Guid TenantId, string Name, Authority Authority, long CreatedTime);

/// <summary>A person who logs in (or an API key acting as one).</summary>
public sealed record User(Guid Id, Guid? TenantId, string Email, Authority Authority, string? FirstName, string? LastName, long CreatedTime, bool Activated)
{
    /// <summary>The user's language and time zone (from the user's additional info), as the API shows them in <c>additionalInfo</c>.</summary>
    public UserPreferences Preferences { get; init; } = UserPreferences.None;

    public static string AuthorityName(Authority authority) => authority switch
    {
        Authority.SysAdmin => "SYS_ADMIN",
        Authority.TenantAdmin => "TENANT_ADMIN",
        Authority.Operator => "OPERATOR",
        _ => "VIEWER",
    };

    public static bool TryParseAuthority(string? name, out Authority authority)
    {
        switch (name)
        {
            case "SYS_ADMIN": authority = Authority.SysAdmin; return true;
            case "TENANT_ADMIN": authority = Authority.TenantAdmin; return true;
            case "OPERATOR": authority = Authority.Operator; return true;
            case "VIEWER": authority = Authority.Viewer; return true;
            default: authority = default; return false;
        }
    }
}

/// <summary>
/// Who is calling the management API: a user from a JWT, or an API key. Every service method takes one and
/// scopes its queries by <see cref="TenantId"/>; that is where tenant isolation is enforced.
/// </summary>
public sealed record Caller(Guid UserId, Guid? TenantId, Authority Authority, string Name)
{
    public bool CanManageTenant => Authority == Authority.TenantAdmin;

    public bool CanWriteData => Authority is Authority.TenantAdmin or Authority.Operator;

    /// <summary>The caller's tenant, or 403 when the caller has none (a system administrator).</summary>
    public Guid RequireTenant() => TenantId ?? throw PlatformException.Forbidden("This call needs a tenant user; system administrators manage tenants, not their devices.");

    public void RequireSysAdmin()
    {
        if (Authority != Authority.SysAdmin)
        {
            throw PlatformException.Forbidden();
        }
    }

    public void RequireTenantAdmin()
    {
        RequireTenant();
        if (Authority != Authority.TenantAdmin)
        {
            throw PlatformException.Forbidden();
        }
    }

    public void RequireWrite()
    {
        RequireTenant();
        if (!CanWriteData)
        {
            throw PlatformException.Forbidden();
        }
    }
}
