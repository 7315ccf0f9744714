using System.Text.Json;
using System.Text.Json.Nodes;
using Taihu.Platform;
using Taihu.Platform.Integrations;

namespace Taihu.Server.Api;

/// <summary>What a tenant administrator posts: no id creates, an id of the tenant's updates.</summary>
public sealed record IntegrationRequest(EntityIdDto? Id, string? Name, string? Type, bool? Enabled, IReadOnlyList<Guid>? DeviceProfileIds, IReadOnlyList<string>? MessageTypes,
    IntegrationConfiguration? Configuration);

/// <summary>
/// An integration as the API shows it: the configuration holds only its type's settings, the secret and the broker
/// password masked (posting the masked value back keeps the stored one).
/// </summary>
public sealed record IntegrationDto(EntityIdDto Id, long CreatedTime, EntityIdDto TenantId, string Name, string Type, bool Enabled,
    IReadOnlyList<Guid>? DeviceProfileIds, IReadOnlyList<string>? MessageTypes, JsonObject Configuration)
{
    private static readonly string[] HttpSettings = ["url", "headers", "secret", "retryLimitMs", "requestTimeoutMs", "answerRpc"];
    private static readonly string[] OwnBrokerSettings = ["topic", "qos"];
    private static readonly string[] ExternalBrokerSettings = ["topic", "qos", "host", "port", "tls", "username", "password", "protocolVersion"];

    public static IntegrationDto From(Integration i)
    {
        var shown = i.Configuration with
        {
            DeviceProfileIds = null,
            MessageTypes = null,
            Secret = IntegrationService.MaskSecret(i.Configuration.Secret),
            Password = IntegrationService.MaskSecret(i.Configuration.Password),
        };
        var all = JsonNode.Parse(shown.ToJson())!.AsObject();
        var keep = i.Type == IntegrationType.Http ? HttpSettings : i.Configuration.Host is null ? OwnBrokerSettings : ExternalBrokerSettings;
        var configuration = new JsonObject();
        foreach (var name in keep)
        {
            if (all[name] is { } value)
            {
                configuration[name] = value.DeepClone();
            }
        }

        return new(new EntityIdDto("INTEGRATION", i.Id), i.CreatedTime, new EntityIdDto("TENANT", i.TenantId), i.Name, Integration.TypeName(i.Type), i.Enabled,
            i.Configuration.DeviceProfileIds, i.Configuration.MessageTypes, configuration);
    }
}

/// <summary>A dead letter: the event as it would have been sent, why it was given up, after how many attempts.</summary>
public sealed record DeadLetterDto(Guid Id, Guid IntegrationId, string DeviceId, string DeviceName, string Type, JsonElement Event, string Reason, int Attempts,
    int LastStatus, long CreatedTime, long DeadTime)
{
    public static DeadLetterDto From(DeadLetter d) => new(d.Id, d.IntegrationId, d.DeviceId, d.DeviceName, d.EventType, JsonDocument.Parse(d.Body).RootElement.Clone(),
        d.Reason, d.Attempts, d.LastStatus, d.CreatedTime, d.DeadTime);
}

/// <summary>
/// Integrations out (Taihu's own calls in ThingsBoard's style; see docs/integrations.md): HTTP webhooks and MQTT
/// republish per tenant, their counters and their dead letters. Every user of the tenant reads them (a webhook's
/// header values masked but for administrators); tenant administrators change them; every change is audited.
/// </summary>
public static class IntegrationApi
{
    public static IEndpointRouteBuilder MapIntegrationApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Integrations");
        api.MapPost("/integration", async (IntegrationRequest body, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
        {
            var input = new IntegrationInput(body.Id?.Id, body.Name, body.Type, body.Enabled, body.DeviceProfileIds, body.MessageTypes, body.Configuration);
            return Results.Ok(IntegrationDto.From(await integrations.SaveAsync(await context.CallerAsync(), input, ct)));
        }).WithName("SaveIntegration").WithSummary("Creates an integration (no id) or updates one of the caller's tenant: type HTTP (configuration.url, headers, secret, retryLimitMs, requestTimeoutMs, answerRpc) or MQTT (configuration.topic, qos, and host, port, tls, username, password, protocolVersion for an external broker).");

        api.MapGet("/integration/{id:guid}", async (Guid id, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
            Results.Ok(IntegrationDto.From(await integrations.GetAsync(await context.CallerAsync(), id, ct))))
            .WithName("GetIntegration");

        api.MapGet("/integrations", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, HttpContext context,
            IntegrationService integrations, CancellationToken ct) =>
        {
            var found = await integrations.ListAsync(await context.CallerAsync(), Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct);
            return Results.Ok(new Page<IntegrationDto>([.. found.Data.Select(IntegrationDto.From)], found.TotalPages, found.TotalElements, found.HasNext));
        }).WithName("GetIntegrations").WithSummary("The caller's tenant's integrations, a page at a time (sortProperty name, type or createdTime).");

        api.MapDelete("/integration/{id:guid}", async (Guid id, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
        {
            await integrations.DeleteAsync(await context.CallerAsync(), id, ct);
            return Results.Ok();
        }).WithName("DeleteIntegration").WithSummary("Deletes an integration with its outbox and dead letters.");

        api.MapGet("/integration/{id:guid}/stats", async (Guid id, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
            Results.Ok(await integrations.StatsAsync(await context.CallerAsync(), id, ct)))
            .WithName("GetIntegrationStats").WithSummary("sent and failed (attempts) since the server started; retrying, dead, outboxSize and lagMs (the oldest waiting event's age) now.");

        api.MapGet("/integration/{id:guid}/deadLetters", async (Guid id, int? pageSize, int? page, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
        {
            var found = await integrations.DeadLettersAsync(await context.CallerAsync(), id, Shapes.Paging(pageSize, page, null, null, null), ct);
            return Results.Ok(new Page<DeadLetterDto>([.. found.Data.Select(DeadLetterDto.From)], found.TotalPages, found.TotalElements, found.HasNext));
        }).WithName("GetIntegrationDeadLetters").WithSummary("Events given up on, oldest first, each with the reason, the attempts and the last HTTP status.");

        api.MapPost("/integration/{id:guid}/deadLetters/{deadLetterId:guid}/replay", async (Guid id, Guid deadLetterId, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
            Results.Ok(new { replayed = await integrations.ReplayAsync(await context.CallerAsync(), id, deadLetterId, ct) }))
            .WithName("ReplayIntegrationDeadLetter").WithSummary("Puts a dead letter back at the end of the outbox, its attempts reset.");

        api.MapPost("/integration/{id:guid}/deadLetters/replay", async (Guid id, HttpContext context, IntegrationService integrations, CancellationToken ct) =>
            Results.Ok(new { replayed = await integrations.ReplayAsync(await context.CallerAsync(), id, null, ct) }))
            .WithName("ReplayIntegrationDeadLetters").WithSummary("Puts every dead letter of the integration back at the end of its outbox.");
        return app;
    }
}
