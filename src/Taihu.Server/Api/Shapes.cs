using System.Text.Json;
using Taihu.Platform;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>ThingsBoard's entity id: <c>{"entityType":"DEVICE","id":".."}</c>.</summary>
public sealed record EntityIdDto(string EntityType, Guid Id);

public sealed record DeviceAdditionalInfo(bool Gateway, string? Description, string? Group, Guid? LastConnectedGateway);

public sealed record DeviceDto(EntityIdDto Id, long CreatedTime, EntityIdDto TenantId, EntityIdDto CustomerId, string Name, string Type, string? Label,
    EntityIdDto DeviceProfileId, DeviceAdditionalInfo AdditionalInfo);

public sealed record CredentialsDto(EntityIdDto Id, long CreatedTime, EntityIdDto DeviceId, string CredentialsType, string? CredentialsId, string? CredentialsValue);

public sealed record TenantDto(EntityIdDto Id, long CreatedTime, string Title, string Name, int? TtlDays);

public sealed record UserDto(EntityIdDto Id, long CreatedTime, EntityIdDto? TenantId, EntityIdDto CustomerId, string Email, string Name, string Authority,
    string? FirstName, string? LastName, UserAdditionalInfo AdditionalInfo);

/// <summary>
/// A user's additional info: whether the user has a password yet, and the language (<c>lang</c>, ThingsBoard's
/// <c>en_US</c>/<c>zh_CN</c>) and time zone (an IANA name) the user chose in the console; null: not chosen.
/// </summary>
public sealed record UserAdditionalInfo(bool UserCredentialsEnabled, string? Lang, string? TimeZone);

public sealed record ProvisionConfigurationDto(string Type, string? ProvisionDeviceKey, string? ProvisionDeviceSecret);

public sealed record DeviceProfileDto(EntityIdDto Id, long CreatedTime, EntityIdDto TenantId, string Name, string? Description, bool Default, string Type,
    string TransportType, string ProvisionType, string? ProvisionDeviceKey, ProfileDataDto ProfileData);

/// <summary><see cref="Alarms"/> is profileData.alarms exactly as it was saved, or null.</summary>
public sealed record ProfileDataDto(ProvisionConfigurationDto ProvisionConfiguration, long InactivityTimeoutMs, RateLimitsDto? RateLimits, JsonElement? Alarms);

/// <summary>A profile's publish limits per device connection; null takes the broker's, 0 is no limit.</summary>
public sealed record RateLimitsDto(int? MaxPublishRate, long? MaxPublishBytesRate);

public sealed record AuditDto(EntityIdDto Id, long CreatedTime, EntityIdDto? TenantId, EntityIdDto? UserId, string? UserName, string ActionType,
    EntityIdDto? EntityId, string? EntityName, string ActionStatus, string? ActionFailureDetails);

public sealed record PageDto<T>(IReadOnlyList<T> Data, int TotalPages, long TotalElements, bool HasNext);

public sealed record TokenPairDto(string Token, string RefreshToken);

/// <summary>Maps domain records to ThingsBoard's JSON shapes.</summary>
public static class Shapes
{
    /// <summary>ThingsBoard's "no customer" id, which its clients expect to find on every entity.</summary>
    public static readonly EntityIdDto NullCustomer = new("CUSTOMER", Guid.Parse("13814000-1dd2-11b2-8080-808080808080"));

    public static DeviceDto ToDto(this Device d) => new(new EntityIdDto("DEVICE", d.Id), d.CreatedTime, new EntityIdDto("TENANT", d.TenantId), NullCustomer,
        d.Name, d.Type, d.Label, new EntityIdDto("DEVICE_PROFILE", d.ProfileId), new DeviceAdditionalInfo(d.IsGateway, null, d.Group, d.GatewayId));

    public static CredentialsDto ToDto(this DeviceCredentials c) => new(new EntityIdDto("DEVICE_CREDENTIALS", c.DeviceId), 0, new EntityIdDto("DEVICE", c.DeviceId),
        DeviceCredentials.TypeName(c.Type), c.CredentialsId,
        c.Type switch
        {
            CredentialsType.MqttBasic => System.Text.Json.JsonSerializer.Serialize(new { clientId = c.ClientId, userName = c.UserName }),
            CredentialsType.X509Certificate => c.CertificatePem,
            CredentialsType.Jt808 => c.UserName,
            _ => null,
        });

    public static TenantDto ToDto(this Tenant t) => new(new EntityIdDto("TENANT", t.Id), t.CreatedTime, t.Title, t.Title, t.TtlDays);

    public static UserDto ToDto(this User u) => new(new EntityIdDto("USER", u.Id), u.CreatedTime, u.TenantId is { } t ? new EntityIdDto("TENANT", t) : null,
        NullCustomer, u.Email, u.Email, User.AuthorityName(u.Authority), u.FirstName, u.LastName, new UserAdditionalInfo(u.Activated, u.Preferences.Lang, u.Preferences.TimeZone));

    public static DeviceProfileDto ToDto(this DeviceProfile p) => new(new EntityIdDto("DEVICE_PROFILE", p.Id), p.CreatedTime, new EntityIdDto("TENANT", p.TenantId),
        p.Name, p.Description, p.IsDefault, "DEFAULT", "DEFAULT", DeviceProfile.ProvisionTypeName(p.ProvisionType), p.ProvisionKey,
        new ProfileDataDto(new ProvisionConfigurationDto(DeviceProfile.ProvisionTypeName(p.ProvisionType), p.ProvisionKey, null), p.InactivityTimeoutMs,
            p.RateLimits is { } limits ? new RateLimitsDto(limits.MessagesPerSecond, limits.BytesPerSecond) : null, RawJson(p.AlarmsJson)));

    private static JsonElement? RawJson(string? json)
    {
        if (json is null)
        {
            return null;
        }

        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }

    public static AuditDto ToDto(this AuditEntry a) => new(new EntityIdDto("AUDIT_LOG", a.Id), a.CreatedTime,
        a.TenantId is { } t ? new EntityIdDto("TENANT", t) : null, a.UserId is { } u ? new EntityIdDto("USER", u) : null, a.UserName, a.ActionType,
        a.EntityType is not null && Guid.TryParse(a.EntityId, out var e) ? new EntityIdDto(a.EntityType, e) : null, a.EntityName,
        a.Success ? "SUCCESS" : "FAILURE", a.FailureDetails);

    public static PageDto<TOut> Map<TIn, TOut>(this Page<TIn> page, Func<TIn, TOut> map)
    {
        var data = new List<TOut>(page.Data.Count);
        foreach (var item in page.Data)
        {
            data.Add(map(item));
        }

        return new PageDto<TOut>(data, page.TotalPages, page.TotalElements, page.HasNext);
    }

    /// <summary>ThingsBoard's paging query: pageSize, page, textSearch, sortProperty, sortOrder (ASC/DESC).</summary>
    public static PageRequest Paging(int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder)
    {
        if (pageSize is <= 0 || page is < 0)
        {
            throw PlatformException.BadRequest("pageSize must be positive and page must not be negative.");
        }

        return new PageRequest(pageSize ?? 10, page ?? 0, textSearch, sortProperty, string.Equals(sortOrder, "DESC", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>A value as ThingsBoard's telemetry API shows it: typed with useStrictDataTypes, otherwise a string.</summary>
    public static object? Value(KvValue value, bool strict) => !strict
        ? value.ToString()
        : value.Type switch
        {
            DataType.Boolean => value.Boolean,
            DataType.Long => value.Long,
            DataType.Double => value.Double,
            DataType.Json => System.Text.Json.JsonDocument.Parse(value.Text!).RootElement.Clone(),
            _ => value.Text,
        };
}
