namespace Taihu.Platform;

/// <summary>Which database holds the platform's state.</summary>
public enum StorageProvider
{
    /// <summary>SQLite files under the data directory: the embedded default, nothing to install.</summary>
    Sqlite,

    /// <summary>PostgreSQL, for a server or a cluster.</summary>
    PostgreSql,
}

/// <summary>How hard SQLite works to keep a commit (PostgreSQL keeps its own settings).</summary>
public enum SqliteDurability
{
    /// <summary>WAL with synchronous=NORMAL: a commit survives a killed process, not a power cut. Fastest.</summary>
    Normal,

    /// <summary>WAL with synchronous=FULL: a commit survives a power cut too, at about two thirds of the speed.</summary>
    Full,
}

/// <summary>Storage settings (section "Storage").</summary>
public sealed class StorageOptions
{
    /// <summary>Sqlite by default: <c>dotnet run</c> works with nothing installed.</summary>
    public StorageProvider Provider { get; set; } = StorageProvider.Sqlite;

    /// <summary>
    /// For PostgreSQL, an Npgsql connection string (e.g. <c>Host=127.0.0.1;Username=taihu;Password=..;Database=taihu</c>).
    /// For SQLite, leave empty: the file is <c>taihu.db</c> in the data directory.
    /// </summary>
    public string? ConnectionString { get; set; }

    /// <summary>Normal: survives a killed process (measured ~2.5x the rows/s of Full); Full for power-cut safety.</summary>
    public SqliteDurability SqliteDurability { get; set; } = SqliteDurability.Normal;

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (Provider == StorageProvider.PostgreSql && string.IsNullOrWhiteSpace(ConnectionString))
        {
            problems.Add("Storage:ConnectionString is required when Storage:Provider is PostgreSql.");
        }

        return problems;
    }
}

/// <summary>Telemetry ingest settings (section "Ingest").</summary>
public sealed class IngestOptions
{
    /// <summary>
    /// PUBACK (QoS 1), PUBREC (QoS 2) and HTTP 200 wait until the batch holding the message has committed, so an
    /// acknowledged point is never lost. Off: acknowledged on arrival, faster, and a crash loses the queue.
    /// </summary>
    public bool AckAfterCommit { get; set; } = true;

    /// <summary>Messages the queue holds before publishers wait: about a second of traffic at 10k msg/s.</summary>
    public int QueueCapacity { get; set; } = 10_000;

    /// <summary>Most points in one transaction; measured on SQLite: 100 gives ~214k rows/s, 1000 ~534k.</summary>
    public int MaxBatchPoints { get; set; } = 2_000;

    /// <summary>
    /// Least time from the start of one commit to the start of the next (group commit). Traffic spread evenly over
    /// time (terminals reporting on their own clocks) otherwise commits one or two messages at a time, and every
    /// commit costs the same fixed work (a connection, a transaction, an event-log row that the rules and the
    /// integrations read back), which then dominates a message's cost. The writer waits only after a batch of more
    /// than one message, and a message that finds the writer idle and this much time passed since the last commit is
    /// written at once, so light traffic and a lone publisher waiting for each answer wait for nothing. 0 turns it off.
    /// </summary>
    public TimeSpan MinCommitInterval { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Largest telemetry or attribute payload accepted (bytes). ThingsBoard's default limit is 64 KiB.</summary>
    public int MaxPayloadBytes { get; set; } = 64 * 1024;

    /// <summary>
    /// Earliest point timestamp accepted, as a date (UTC). ThingsBoard accepts any timestamp; a device whose clock
    /// was never set sends 1970, and such points would sit outside every retention window and every dashboard.
    /// 2000-01-01 refuses them with a reason the device can see.
    /// </summary>
    public DateTimeOffset EarliestTimestamp { get; set; } = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// How far ahead of the server's clock a point may be stamped. A point far in the future would stay the
    /// latest value until then and hide every later point; a day allows for clocks set to the wrong time zone.
    /// </summary>
    public TimeSpan MaxFutureSkew { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Points older than this many days are deleted (per tenant override on the tenant); 0 keeps them forever.</summary>
    public int DefaultTtlDays { get; set; } = 365;

    /// <summary>How often the retention sweep runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (QueueCapacity < 1 || MaxBatchPoints < 1 || MaxPayloadBytes < 1)
        {
            problems.Add("Ingest:QueueCapacity, Ingest:MaxBatchPoints and Ingest:MaxPayloadBytes must be positive.");
        }

        if (MinCommitInterval < TimeSpan.Zero || MinCommitInterval > TimeSpan.FromSeconds(1))
        {
            problems.Add("Ingest:MinCommitInterval must be between 0 and 1 second.");
        }

        if (MaxFutureSkew < TimeSpan.Zero)
        {
            problems.Add("Ingest:MaxFutureSkew must not be negative.");
        }

        return problems;
    }
}

/// <summary>Security settings (section "Security").</summary>
public sealed class SecurityOptions
{
    /// <summary>The first system administrator's e-mail, created on first start.</summary>
    public string AdminEmail { get; set; } = "sysadmin@taihu.local";

    /// <summary>Its password; when empty, one is generated and printed once in the log.</summary>
    public string? AdminPassword { get; set; }

    /// <summary>Lifetime of an access JWT (ThingsBoard: 2.5 hours).</summary>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromHours(2.5);

    /// <summary>Lifetime of a refresh token (ThingsBoard: 1 week).</summary>
    public TimeSpan RefreshTokenLifetime { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Failed logins in a row before the account waits; each further failure doubles the wait.</summary>
    public int FailedLoginsBeforeBackoff { get; set; } = 5;

    /// <summary>The first wait after too many failed logins; it doubles with each further failure (capped at 2^16 times).</summary>
    public TimeSpan LoginBackoff { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Whether an MQTT client with no credentials at all may connect, as a plain broker client in the default
    /// namespace (it never sees any tenant's topics). Off by default, as in Mosquitto 2.0 and ThingsBoard.
    /// </summary>
    public bool AllowAnonymousMqtt { get; set; }

    /// <summary>
    /// A Mosquitto password file (<c>user:$7$...</c> lines as <c>mosquitto_passwd</c> writes them) of plain broker
    /// users in the default namespace; read at start. Empty: none.
    /// </summary>
    public string? MqttPasswordFile { get; set; }

    /// <summary>A Mosquitto ACL file giving clients of the default namespace their rights; read at start. Empty: none.</summary>
    public string? MqttAclFile { get; set; }

    /// <summary>Devices may ask for credentials with user name "provision" (each profile still decides whether it allows it).</summary>
    public bool ProvisioningEnabled { get; set; } = true;

    /// <summary>Verified device passwords kept in memory so a reconnect storm does not hash again.</summary>
    public int CredentialCacheSize { get; set; } = 100_000;

    /// <summary>
    /// How long a device found by its credentials (token, MQTT user name or client id, certificate) is kept, so that
    /// a CONNECT or an HTTP device request need not read the database; any change to a device, its credentials or
    /// its profile forgets them all at once, on every node. Zero reads the database every time.
    /// </summary>
    public int DeviceCacheSeconds { get; set; } = 30;

    /// <summary>Most devices kept by their credentials (<see cref="DeviceCacheSeconds"/>); when full, all are forgotten and it refills.</summary>
    public int DeviceCacheSize { get; set; } = 100_000;

    /// <summary>
    /// Largest body of a call anyone may make (login, token refresh, activation, device provisioning). Their JSON is
    /// a few hundred bytes; 4 KiB leaves room for long names and keys while a stranger cannot make the server parse
    /// megabytes.
    /// </summary>
    public int MaxUnauthenticatedRequestBytes { get; set; } = 4 * 1024;

    /// <summary>Largest body of an authenticated management call: devices, profiles, attributes, users are small JSON.</summary>
    public int MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Shortest access token accepted when one is chosen (by an administrator or a provisioning request). Generated
    /// tokens are 20 random characters (~119 bits), as ThingsBoard's; 8 keeps chosen tokens such as serial numbers
    /// possible while refusing "7". Tokens are printable ASCII without spaces or '/' (they travel in URL paths).
    /// </summary>
    public int MinimumAccessTokenLength { get; set; } = 8;

    /// <summary>
    /// Failed device authentications (MQTT CONNECT, HTTP device API, credential conflicts) allowed per source
    /// address: this many at once, refilled at this many a minute. 30 a minute makes guessing even an 8-character
    /// token hopeless, and a fleet behind one address that keeps failing is refused cheaply. Successes cost nothing.
    /// </summary>
    public int DeviceAuthFailuresPerMinute { get; set; } = 30;

    /// <summary>Failed logins allowed per source address (any accounts): this many at once, refilled at this many a minute.</summary>
    public int LoginFailuresPerAddressPerMinute { get; set; } = 20;

    /// <summary>Source addresses and accounts the failure limits remember, each; when full, the oldest at rest are forgotten first.</summary>
    public int MaximumTrackedAddresses { get; set; } = 100_000;

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (MaxUnauthenticatedRequestBytes is < 256 or > 1024 * 1024)
        {
            problems.Add("Security:MaxUnauthenticatedRequestBytes must be between 256 and 1048576.");
        }

        if (MaxRequestBodyBytes is < 1024 or > 256 * 1024 * 1024)
        {
            problems.Add("Security:MaxRequestBodyBytes must be between 1024 and 268435456.");
        }

        if (MinimumAccessTokenLength is < 1 or > 255)
        {
            problems.Add("Security:MinimumAccessTokenLength must be between 1 and 255.");
        }

        if (DeviceCacheSeconds is < 0 or > 3600 || DeviceCacheSize < 0)
        {
            problems.Add("Security:DeviceCacheSeconds must be between 0 and 3600, and Security:DeviceCacheSize 0 or more.");
        }

        if (DeviceAuthFailuresPerMinute < 1)
        {
            problems.Add("Security:DeviceAuthFailuresPerMinute must be at least 1.");
        }

        if (LoginFailuresPerAddressPerMinute < 1)
        {
            problems.Add("Security:LoginFailuresPerAddressPerMinute must be at least 1.");
        }

        if (MaximumTrackedAddresses < 100)
        {
            problems.Add("Security:MaximumTrackedAddresses must be at least 100.");
        }

        if (FailedLoginsBeforeBackoff < 1)
        {
            problems.Add("Security:FailedLoginsBeforeBackoff must be at least 1.");
        }

        if (LoginBackoff <= TimeSpan.Zero || LoginBackoff > TimeSpan.FromHours(1))
        {
            problems.Add("Security:LoginBackoff must be more than 0 and at most 01:00:00.");
        }

        return problems;
    }
}
