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

/// <summary>Settings shared by devices of one kind.</summary>
public sealed record DeviceProfile(
    Guid Id, Guid TenantId, string Name, string? Description, bool IsDefault, ProvisionType ProvisionType,
    string? ProvisionKey, string? ProvisionSecret, long InactivityTimeoutMs, long CreatedTime)
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

/// <summary>The kinds of device credentials, by ThingsBoard's names.</summary>
public enum CredentialsType
{
    AccessToken,
    MqttBasic,
    X509Certificate,
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
        _ => "ACCESS_TOKEN",
    };

    public static bool TryParseType(string? name, out CredentialsType type)
    {
        switch (name)
        {
            case null or "ACCESS_TOKEN": type = CredentialsType.AccessToken; return true;
            case "MQTT_BASIC": type = CredentialsType.MqttBasic; return true;
            case "X509_CERTIFICATE": type = CredentialsType.X509Certificate; return true;
            default: type = default; return false;
        }
    }
}
