using Taihu.Platform.Audit;
using Taihu.Platform.Events;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Integrations;

/// <summary>An integration as the API takes it; on an update, a null secret or password keeps the stored one.</summary>
public sealed record IntegrationInput(Guid? Id, string? Name, string? Type, bool? Enabled, IReadOnlyList<Guid>? DeviceProfileIds, IReadOnlyList<string>? MessageTypes,
    IntegrationConfiguration? Configuration);

/// <summary>An integration's counters: since the server started (sent, failed) and in storage now (the rest, and the error of the oldest event being retried).</summary>
public sealed record IntegrationStats(long Sent, long Failed, long Retrying, long Dead, long LagMs, long OutboxSize, string? LastError);

/// <summary>
/// Tenants' integrations through the API: validated (every error names its field), scoped to the caller's tenant,
/// audited; every change reloads the registry, so that the consumer and the delivery owners follow at once.
/// </summary>
public sealed class IntegrationService(SqlIntegrationStore store, IntegrationRegistry registry, IAuditLog audit, TimeProvider time)
{
    private const string EntityType = "INTEGRATION";
    private const string Mask = "******";
    private static readonly System.Buffers.SearchValues<char> HeaderNameCharacters =
        System.Buffers.SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    public async Task<Integration> SaveAsync(Caller caller, IntegrationInput input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(input);
        caller.RequireTenantAdmin();
        var tenantId = caller.TenantId!.Value;
        Integration? existing = null;
        if (input.Id is { } id)
        {
            existing = await store.GetAsync(id, tenantId, cancellationToken) ?? throw PlatformException.NotFound("The integration");
        }

        var integration = Validate(input, existing, tenantId);
        if (existing is null)
        {
            await store.CreateAsync(integration, cancellationToken);
        }
        else if (!await store.UpdateAsync(integration, cancellationToken))
        {
            throw PlatformException.NotFound("The integration");
        }

        await audit.WriteAsync(caller, existing is null ? "ADDED" : "UPDATED", EntityType, integration.Id.ToString(), integration.Name, cancellationToken: cancellationToken);
        await registry.ReloadAfterEditAsync(cancellationToken);
        return integration;
    }

    /// <summary>
    /// An integration of the caller's tenant. Every user of the tenant may read integrations (the console shows them
    /// to viewers); only its administrators see the values of the webhook's headers, which often carry credentials.
    /// </summary>
    public async Task<Integration> GetAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var integration = await store.GetAsync(id, caller.RequireTenant(), cancellationToken) ?? throw PlatformException.NotFound("The integration");
        return caller.CanManageTenant ? integration : Redacted(integration);
    }

    public async Task<Page<Integration>> ListAsync(Caller caller, PageRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var page = await store.ListAsync(caller.RequireTenant(), request, cancellationToken);
        return caller.CanManageTenant ? page : page with { Data = [.. page.Data.Select(Redacted)] };
    }

    public async Task DeleteAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        var existing = await GetToChangeAsync(caller, id, cancellationToken);
        await store.DeleteAsync(id, caller.TenantId!.Value, cancellationToken);
        await audit.WriteAsync(caller, "DELETED", EntityType, id.ToString(), existing.Name, cancellationToken: cancellationToken);
        await registry.ReloadAfterEditAsync(cancellationToken);
    }

    public async Task<IntegrationStats> StatsAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        await GetAsync(caller, id, cancellationToken);
        var stored = await store.StatsAsync(id, cancellationToken);
        var state = registry.Find(id);
        var lag = stored.OldestCreatedTime is { } oldest ? Math.Max(0, time.GetUtcNow().ToUnixTimeMilliseconds() - oldest) : 0;
        return new IntegrationStats(state?.Sent ?? 0, state?.Failed ?? 0, stored.Retrying, stored.Dead, lag, stored.OutboxSize, stored.LastError);
    }

    public async Task<Page<DeadLetter>> DeadLettersAsync(Caller caller, Guid id, PageRequest request, CancellationToken cancellationToken)
    {
        await GetAsync(caller, id, cancellationToken);
        return await store.ListDeadLettersAsync(id, request, cancellationToken);
    }

    /// <summary>Puts one dead letter (or all of them) back at the end of the outbox. Returns how many.</summary>
    public async Task<int> ReplayAsync(Caller caller, Guid id, Guid? deadLetterId, CancellationToken cancellationToken)
    {
        var integration = await GetToChangeAsync(caller, id, cancellationToken);
        var moved = await store.ReplayAsync(id, deadLetterId, cancellationToken);
        if (deadLetterId is not null && moved == 0)
        {
            throw PlatformException.NotFound("The dead letter");
        }

        await audit.WriteAsync(caller, "UPDATED", EntityType, id.ToString(), $"{integration.Name}: {moved} dead letter(s) replayed", cancellationToken: cancellationToken);
        await registry.ReloadAfterEditAsync(cancellationToken);
        return moved;
    }

    private async Task<Integration> GetToChangeAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(caller);
        caller.RequireTenantAdmin();
        return await store.GetAsync(id, caller.TenantId!.Value, cancellationToken) ?? throw PlatformException.NotFound("The integration");
    }

    /// <summary>An integration as a user who may not change it sees it: the headers' names, their values masked.</summary>
    private static Integration Redacted(Integration integration)
    {
        if (integration.Configuration.Headers is not { Count: > 0 } headers)
        {
            return integration;
        }

        var masked = new Dictionary<string, string>(headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, _) in headers)
        {
            masked[name] = Mask;
        }

        return integration with { Configuration = integration.Configuration with { Headers = masked } };
    }

    /// <summary>A secret as shown back: its first two characters and a mask.</summary>
    public static string? MaskSecret(string? secret) => secret is null ? null : (secret.Length >= 8 ? secret[..2] : "") + Mask;

    private Integration Validate(IntegrationInput input, Integration? existing, Guid tenantId)
    {
        var name = input.Name;
        if (string.IsNullOrWhiteSpace(name) || name.Length > 255 || name.Trim() != name)
        {
            throw PlatformException.BadRequest("name is 1 to 255 characters without surrounding spaces.");
        }

        var type = Integration.ParseType(input.Type) ?? throw PlatformException.BadRequest("type must be HTTP or MQTT.");
        if (input.MessageTypes is { } types)
        {
            for (var i = 0; i < types.Count; i++)
            {
                if (!PlatformEventTypes.TryParse(types[i], out _))
                {
                    throw PlatformException.BadRequest($"messageTypes[{i}] '{types[i]}' is not one of TELEMETRY, ATTRIBUTES, CONNECT, DISCONNECT, ALARM_CREATED, ALARM_UPDATED, ALARM_CLEARED, RPC_REQUEST.");
                }
            }
        }

        var given = input.Configuration ?? throw PlatformException.BadRequest("configuration is required.");
        var old = existing?.Type == type ? existing.Configuration : null;
        var configuration = given with { DeviceProfileIds = input.DeviceProfileIds, MessageTypes = input.MessageTypes };
        if (type == IntegrationType.Http)
        {
            if (!Uri.TryCreate(given.Url, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps) || url.Host.Length == 0)
            {
                throw PlatformException.BadRequest("configuration.url must be an absolute http or https URL.");
            }

            var secret = given.Secret;
            if (old?.Secret is { } stored && (secret is null || secret == MaskSecret(stored)))
            {
                secret = stored;
            }

            if (string.IsNullOrEmpty(secret) || secret.Length > 1024)
            {
                throw PlatformException.BadRequest("configuration.secret is required (1 to 1024 characters): it signs every request.");
            }

            if (given.RetryLimitMs is < 1_000 or > 30L * 86_400_000)
            {
                throw PlatformException.BadRequest("configuration.retryLimitMs is 1000 (1 s) to 2592000000 (30 days).");
            }

            if (given.RequestTimeoutMs is < 100 or > 300_000)
            {
                throw PlatformException.BadRequest("configuration.requestTimeoutMs is 100 to 300000 (5 min).");
            }

            if (given.Headers is { } headers)
            {
                foreach (var (header, value) in headers)
                {
                    if (string.IsNullOrEmpty(header) || header.AsSpan().IndexOfAnyExcept(HeaderNameCharacters) >= 0
                        || value is null || value.AsSpan().IndexOfAny("\r\n\0") >= 0)
                    {
                        throw PlatformException.BadRequest($"configuration.headers '{header}' is not a valid header name and value.");
                    }

                    if (header.Equals("Content-Type", StringComparison.OrdinalIgnoreCase) || header.Equals("X-Taihu-Signature", StringComparison.OrdinalIgnoreCase)
                        || header.Equals("Host", StringComparison.OrdinalIgnoreCase) || header.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                    {
                        throw PlatformException.BadRequest($"configuration.headers may not set {header}: the server sets it.");
                    }
                }
            }

            configuration = configuration with { Secret = secret, AnswerRpc = given.AnswerRpc ?? false, Topic = null, Host = null, Username = null, Password = null };
        }
        else
        {
            if (TopicTemplate.Check(given.Topic) is { } problem)
            {
                throw PlatformException.BadRequest(problem);
            }

            if (given.Qos is < 0 or > 2)
            {
                throw PlatformException.BadRequest("configuration.qos is 0, 1 or 2.");
            }

            if (given.Host is not null)
            {
                if (given.Host.Length == 0 || Uri.CheckHostName(given.Host) == UriHostNameType.Unknown)
                {
                    throw PlatformException.BadRequest("configuration.host must be a host name or an IP address (leave it out for Taihu's own broker).");
                }

                if (given.Port is < 1 or > 65_535)
                {
                    throw PlatformException.BadRequest("configuration.port is 1 to 65535.");
                }

                if (given.ProtocolVersion is not ("3.1.1" or "5.0"))
                {
                    throw PlatformException.BadRequest("configuration.protocolVersion is 3.1.1 or 5.0.");
                }
            }

            if (given.AnswerRpc == true)
            {
                throw PlatformException.BadRequest("configuration.answerRpc is for HTTP webhooks: an MQTT republish has no answer to give.");
            }

            var password = given.Password;
            if (old?.Password is { } storedPassword && (password is null || password == MaskSecret(storedPassword)))
            {
                password = storedPassword;
            }

            configuration = configuration with { Url = null, Headers = null, Secret = null, AnswerRpc = null, Password = password };
        }

        return new Integration(existing?.Id ?? Guid.NewGuid(), tenantId, name, type, input.Enabled ?? existing?.Enabled ?? true, configuration,
            existing?.CreatedTime ?? time.GetUtcNow().ToUnixTimeMilliseconds());
    }
}
