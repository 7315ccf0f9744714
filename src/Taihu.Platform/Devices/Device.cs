namespace Taihu.Platform.Devices;

/// <summary>A device of a tenant. <see cref="Seq"/> is the compact number telemetry rows are keyed by.</summary>
public sealed record Device(
    long Seq, Guid Id, Guid TenantId, string Name, string Type, string? Label, Guid ProfileId, string? Group,
    bool IsGateway, Guid? GatewayId, long CreatedTime);

/// <summary>How devices of a profile may provision themselves (ThingsBoard's provisioning strategies).</summary>
public enum ProvisionType
{
    /// <summary>Provisioning requests are refused.</summary>
    Disabled,

    /// <summary>A request with the profile's key and secret creates the device if it does not exist.</summary>
    AllowCreateNewDevices,

    /// <summary>A request may only fetch the credentials of a device created beforehand.</summary>
    CheckPreProvisionedDevices,
}

/// <summary>
/// Settings shared by devices of one kind. <see cref="RateLimits"/> are the publish limits of each device
/// connection in this profile (a tenant sets its own for all its devices through its default profile).
/// <see cref="AlarmsJson"/> is profileData.alarms as the user saved it (already checked by
/// <c>Rules.AlarmRuleParser</c>), or null for none; it is kept as text so that every field comes back unchanged.
/// </summary>
public sealed record DeviceProfile(
    Guid Id, Guid TenantId, string Name, string? Description, bool IsDefault, ProvisionType ProvisionType,
    string? ProvisionKey, string? ProvisionSecret, long InactivityTimeoutMs, long CreatedTime, PublishRateLimits? RateLimits = null,
    string? AlarmsJson = null)
{
    /// <summary>ThingsBoard's default inactivity timeout: 10 minutes.</summary>
    public const long DefaultInactivityTimeoutMs = 600_000;

    public static string ProvisionTypeName(ProvisionType type) => type switch
    {
        ProvisionType.AllowCreateNewDevices => "ALLOW_CREATE_NEW_DEVICES",
        ProvisionType.CheckPreProvisionedDevices => "CHECK_PRE_PROVISIONED_DEVICES",
        _ => "DISABLED",
    };

    public static bool TryParseProvisionType(string? name, out ProvisionType type)
    {
        switch (name)
        {
            case null or "DISABLED": type = ProvisionType.Disabled; return true;
            case "ALLOW_CREATE_NEW_DEVICES": type = ProvisionType.AllowCreateNewDevices; return true;
            case "CHECK_PRE_PROVISIONED_DEVICES": type = ProvisionType.CheckPreProvisionedDevices; return true;
            default: type = default; return false;
        }
    }
}

/// <summary>The kinds of device credentials, by ThingsBoard's names (and Taihu's own for the Chinese national protocols).</summary>
public enum CredentialsType
{
    AccessToken,
    MqttBasic,
    X509Certificate,

    /// <summary>An HJ 212 station: its <c>MN</c> (credentialsId) and the <c>PW</c> its frames carry (credentialsValue, kept hashed).</summary>
    Hj212,

    /// <summary>
    /// A JT/T 808 terminal: its phone number (credentialsId, the digits of its BCD number) and the authentication
    /// code the platform hands out at registration (credentialsValue, shown to administrators as access tokens are).
    /// </summary>
    Jt808,
}

/// <summary>
/// A device's credentials as an administrator sees them. <see cref="CredentialsId"/> is the access token, the
/// certificate's SHA-256 thumbprint, or for MQTT basic the client id and/or user name; passwords never appear.
/// </summary>
public sealed record DeviceCredentials(Guid DeviceId, CredentialsType Type, string? CredentialsId, string? ClientId, string? UserName, string? CertificatePem)
{
    public static string TypeName(CredentialsType type) => type switch
    {
        CredentialsType.MqttBasic => "MQTT_BASIC",
        CredentialsType.X509Certificate => "X509_CERTIFICATE",
        CredentialsType.Hj212 => "HJ212",
        CredentialsType.Jt808 => "JT808",
        _ => "ACCESS_TOKEN",
    };

    public static bool TryParseType(string? name, out CredentialsType type)
    {
        switch (name)
        {
            case null or "ACCESS_TOKEN": type = CredentialsType.AccessToken; return true;
            case "MQTT_BASIC": type = CredentialsType.MqttBasic; return true;
            case "X509_CERTIFICATE": type = CredentialsType.X509Certificate; return true;
            case "HJ212": type = CredentialsType.Hj212; return true;
            case "JT808": type = CredentialsType.Jt808; return true;
            default: type = default; return false;
        }
    }
}

/// <summary>
/// Publish limits for each MQTT connection of a device, overriding the broker's
/// <c>Broker:MaximumPublishRatePerConnection</c> and <c>Broker:MaximumPublishBytesRatePerConnection</c>: null takes
/// the broker's, 0 is no limit. Going over one ends the connection (5.0: DISCONNECT 0x96 naming the limit).
/// </summary>
/// <param name="MessagesPerSecond">PUBLISH packets per second.</param>
/// <param name="BytesPerSecond">PUBLISH payload bytes per second.</param>
public sealed record PublishRateLimits(int? MessagesPerSecond, long? BytesPerSecond)
{
    /// <summary>Null when neither limit is set, so that a profile without limits stores nothing.</summary>
    public static PublishRateLimits? Of(int? messagesPerSecond, long? bytesPerSecond) =>
        messagesPerSecond is null && bytesPerSecond is null ? null : new PublishRateLimits(messagesPerSecond, bytesPerSecond);
}
