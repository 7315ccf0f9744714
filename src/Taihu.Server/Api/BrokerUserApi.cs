using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.BrokerUsers;

namespace Taihu.Server.Api;

/// <summary>What a tenant administrator sends to create or change a broker user; on a change, null keeps the value.</summary>
public sealed record BrokerUserRequest(string? UserName, string? Password, IReadOnlyList<TopicRuleInput>? Rules);

public sealed record TopicRuleDto(string Access, string Topic);

/// <summary>A broker user as the API shows it; the password never leaves the server.</summary>
public sealed record BrokerUserDto(Guid Id, Guid TenantId, string UserName, IReadOnlyList<TopicRuleDto> Rules, long CreatedTime)
{
    public static BrokerUserDto From(TenantBrokerUser user) =>
        new(user.Id, user.TenantId, user.UserName, [.. user.Rules.Select(r => new TopicRuleDto(TenantBrokerUser.AccessName(r.Rights), r.Filter))], user.CreatedTime);
}

/// <summary>
/// Broker users of the caller's tenant (Taihu's own calls; ThingsBoard has none): MQTT clients that are not
/// devices, with a password and topic rules. Tenant administrators only; every change is audited.
/// </summary>
public static class BrokerUserApi
{
    public static IEndpointRouteBuilder MapBrokerUserApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/mqtt/users").WithTags("Broker users");
        api.MapPost("", async (BrokerUserRequest body, HttpContext context, TenantBrokerUserService users, CancellationToken ct) =>
            Results.Ok(BrokerUserDto.From(await users.CreateAsync(await context.CallerAsync(), body.UserName, body.Password, body.Rules, ct))))
            .WithName("CreateBrokerUser").WithSummary("Creates a broker user of the caller's tenant: userName (unique on the server), password (8 to 1024 characters), rules [{access: read|write|readwrite|deny, topic}].");

        api.MapGet("", async (HttpContext context, TenantBrokerUserService users, CancellationToken ct) =>
            Results.Ok((await users.ListAsync(await context.CallerAsync(), ct)).Select(BrokerUserDto.From).ToList()))
            .WithName("ListBrokerUsers").WithSummary("The broker users of the caller's tenant, by user name.");

        api.MapGet("/{id:guid}", async (Guid id, HttpContext context, TenantBrokerUserService users, CancellationToken ct) =>
            Results.Ok(BrokerUserDto.From(await users.GetAsync(await context.CallerAsync(), id, ct))))
            .WithName("GetBrokerUser");

        api.MapPut("/{id:guid}", async (Guid id, BrokerUserRequest body, HttpContext context, TenantBrokerUserService users, IMqttClientDisconnector connections, CancellationToken ct) =>
        {
            var user = await users.UpdateAsync(await context.CallerAsync(), id, body.Password, body.Rules, ct);
            // Rights are compiled at CONNECT: live connections reconnect to get the new ones (or be refused).
            Disconnect(connections, id, "The MQTT user was changed.");
            return Results.Ok(BrokerUserDto.From(user));
        }).WithName("UpdateBrokerUser").WithSummary("Replaces the rules and/or the password; the user's live connections are closed so that they reconnect under the new ones. The user name cannot change.");

        api.MapDelete("/{id:guid}", async (Guid id, HttpContext context, TenantBrokerUserService users, IMqttClientDisconnector connections, CancellationToken ct) =>
        {
            await users.DeleteAsync(await context.CallerAsync(), id, ct);
            Disconnect(connections, id, "The MQTT user was deleted.");
            return Results.Ok();
        }).WithName("DeleteBrokerUser").WithSummary("Deletes a broker user; its live connections are closed.");
        return app;
    }

    private static void Disconnect(IMqttClientDisconnector connections, Guid userId, string reason)
    {
        var owner = TenantBrokerUserService.SessionOwner(userId);
        connections.Disconnect(identity => identity.SessionOwner == owner, ReasonCode.NotAuthorized, reason);
    }
}
