using System.Text.Json;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>Tenants and users, with ThingsBoard's calls, so that its bootstrap scripts work unchanged.</summary>
public static class TenantApi
{
    public static IEndpointRouteBuilder MapTenantApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Tenants and users");
        api.MapPost("/tenant", async (JsonElement body, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            var title = CallerResolution.Text(body, "title") ?? "";
            int? ttl = body.TryGetProperty("ttlDays", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetInt32() : null;
            var tenant = CallerResolution.EntityId(body, "id") is { } id
                ? await tenants.UpdateTenantAsync(caller, id, title, ttl, ct)
                : await tenants.CreateTenantAsync(caller, title, ttl, ct);
            return Results.Ok(tenant.ToDto());
        }).WithName("SaveTenant").WithSummary("Creates a tenant (or updates one when the body has an id). System administrators only.");

        api.MapGet("/tenant/{id:guid}", async (Guid id, HttpContext context, TenantService tenants, CancellationToken ct) =>
            Results.Ok((await tenants.GetTenantAsync(await context.CallerAsync(), id, ct)).ToDto())).WithName("GetTenant");

        api.MapDelete("/tenant/{id:guid}", async (Guid id, HttpContext context, TenantService tenants, DeviceService devices, JwtTokens tokens, Taihu.Broker.Extensibility.IMqttClientDisconnector connections, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            caller.RequireSysAdmin();
            // Its devices go first, so that nothing they send lands while their data is purged; again after the
            // deletion, for any that connected meanwhile. Its users' cached tokens go once the rows are gone (API
            // keys are looked up on every call).
            devices.DisconnectTenant(id, "The tenant was deleted.");
            await tenants.DeleteTenantAsync(caller, id, ct);
            tokens.ForgetTenant(id);
            devices.DisconnectTenant(id, "The tenant was deleted.");
            connections.Disconnect(identity => Taihu.Platform.BrokerUsers.TenantBrokerUserService.IsTenantUser(identity, id), Taihu.Mqtt.ReasonCode.NotAuthorized, "The tenant was deleted.");
            return Results.Ok();
        }).WithName("DeleteTenant").WithSummary("Deletes a tenant with all its users, devices and data; its users' tokens and API keys stop working and its devices are disconnected at once.");

        api.MapGet("/tenants", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, HttpContext context, TenantService tenants, CancellationToken ct) =>
            Results.Ok((await tenants.ListTenantsAsync(await context.CallerAsync(), Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct)).Map(t => t.ToDto())))
            .WithName("ListTenants");

        api.MapPost("/user", async (JsonElement body, bool? sendActivationMail, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            if (!User.TryParseAuthority(CallerResolution.Text(body, "authority") ?? "TENANT_ADMIN", out var authority))
            {
                throw PlatformException.BadRequest("authority is SYS_ADMIN, TENANT_ADMIN, OPERATOR or VIEWER.");
            }

            // Taihu sends no mail: the activation link is read with GET /api/user/{id}/activationLink, or a
            // password given here ("password", a Taihu extension) makes the user active at once.
            _ = sendActivationMail;
            var user = await tenants.CreateUserAsync(caller, CallerResolution.Text(body, "email") ?? "", authority, CallerResolution.EntityId(body, "tenantId"),
                CallerResolution.Text(body, "firstName"), CallerResolution.Text(body, "lastName"), CallerResolution.Text(body, "password"), ct);
            return Results.Ok(user.ToDto());
        }).WithName("SaveUser").WithSummary("Creates a user; without a password the user is activated through the activation link.");

        api.MapGet("/user/{id:guid}", async (Guid id, HttpContext context, TenantService tenants, CancellationToken ct) =>
            Results.Ok((await tenants.GetUserAsync(await context.CallerAsync(), id, ct)).ToDto())).WithName("GetUser");

        api.MapDelete("/user/{id:guid}", async (Guid id, HttpContext context, TenantService tenants, JwtTokens tokens, CancellationToken ct) =>
        {
            await tenants.DeleteUserAsync(await context.CallerAsync(), id, ct);
            tokens.Forget(id);
            return Results.Ok();
        }).WithName("DeleteUser");

        api.MapGet("/user/{id:guid}/activationLink", async (Guid id, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var token = await tenants.GetActivationTokenAsync(await context.CallerAsync(), id, ct);
            var request = context.Request;
            return Results.Text($"{request.Scheme}://{request.Host}/api/noauth/activate?activateToken={token}");
        }).WithName("GetActivationLink").WithSummary("The link (with activateToken) that a new user opens to set a password.");

        api.MapGet("/tenant/{tenantId:guid}/users", async (Guid tenantId, int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            if (caller.Authority != Authority.SysAdmin && caller.TenantId != tenantId)
            {
                throw PlatformException.NotFound("The tenant");
            }

            return Results.Ok((await tenants.ListUsersAsync(caller, tenantId, Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct)).Map(u => u.ToDto()));
        }).WithName("ListTenantUsers");

        api.MapGet("/users", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            return Results.Ok((await tenants.ListUsersAsync(caller, caller.TenantId, Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct)).Map(u => u.ToDto()));
        }).WithName("ListUsers").WithSummary("Users of the caller's tenant (system administrators: the system administrators).");
        return app;
    }
}
