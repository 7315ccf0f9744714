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
            if (CallerResolution.EntityId(body, "id") is { } id)
            {
                return Results.Ok((await UpdateOwnUserAsync(caller, id, body, tenants, ct)).ToDto());
            }

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
        }).WithName("SaveUser").WithSummary("Creates a user (without a password the user is activated through the activation link); with the caller's own id, saves the caller's additionalInfo.lang and additionalInfo.timeZone.");

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

    /// <summary>
    /// ThingsBoard's clients save a user by posting it back whole, with its id; the console's language switch is such a
    /// save. Taihu lets users change their own language and time zone this way; what else the body carries must be
    /// what is stored (a changed e-mail, role or name is refused, naming the field), and other users are not changed.
    /// </summary>
    private static async Task<User> UpdateOwnUserAsync(Caller caller, Guid id, JsonElement body, TenantService tenants, CancellationToken ct)
    {
        if (id != caller.UserId)
        {
            throw PlatformException.Forbidden("Only users themselves change a user (their language and time zone); other users are created and deleted.");
        }

        var user = await tenants.GetUserAsync(caller, id, ct);
        var email = CallerResolution.Text(body, "email");
        if (email is not null && !string.Equals(email.Trim(), user.Email, StringComparison.OrdinalIgnoreCase))
        {
            throw PlatformException.BadRequest("email cannot be changed.");
        }

        if (CallerResolution.Text(body, "authority") is { } authority && authority != User.AuthorityName(user.Authority))
        {
            throw PlatformException.BadRequest("authority cannot be changed.");
        }

        foreach (var (name, stored) in new[] { ("firstName", user.FirstName), ("lastName", user.LastName) })
        {
            if (body.TryGetProperty(name, out var given) && given.ValueKind != JsonValueKind.Null && given.ValueKind != JsonValueKind.Undefined
                && (given.ValueKind != JsonValueKind.String || given.GetString() != stored))
            {
                throw PlatformException.BadRequest($"{name} cannot be changed.");
            }
        }

        if (!body.TryGetProperty("additionalInfo", out var info) || info.ValueKind == JsonValueKind.Null)
        {
            return user;
        }

        if (info.ValueKind != JsonValueKind.Object)
        {
            throw PlatformException.BadRequest("additionalInfo is an object.");
        }

        // A member left out keeps what is stored; null clears it (the browser's language and time zone again).
        var preferences = new UserPreferences(Member(info, "lang", user.Preferences.Lang), Member(info, "timeZone", user.Preferences.TimeZone));
        await tenants.SavePreferencesAsync(caller, preferences, ct);
        return user with { Preferences = preferences };

        static string? Member(JsonElement info, string name, string? stored) =>
            !info.TryGetProperty(name, out var value) ? stored
            : value.ValueKind switch
            {
                JsonValueKind.String => value.GetString(),
                JsonValueKind.Null => null,
                _ => throw PlatformException.BadRequest($"additionalInfo.{name} is a string or null."),
            };
    }
}
