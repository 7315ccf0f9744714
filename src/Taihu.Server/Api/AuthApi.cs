using System.Text.Json;
using Taihu.Platform;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>Logging in, refreshing, logging out, activation and API keys (create, list, revoke) (ThingsBoard's /api/auth calls).</summary>
public static class AuthApi
{
    public sealed record LoginRequest(string? Username, string? Password);

    public sealed record RefreshRequest(string? RefreshToken);

    public sealed record ActivateRequest(string? ActivateToken, string? Password);

    public sealed record ApiKeyRequest(string? Name, string? Authority);

    /// <summary>An API key as listed: never the key itself.</summary>
    public sealed record ApiKeyDto(EntityIdDto Id, string Name, string Authority, long CreatedTime)
    {
        public static ApiKeyDto From(ApiKey key) => new(new EntityIdDto("API_KEY", key.Id), key.Name, User.AuthorityName(key.Authority), key.CreatedTime);
    }

    public static IEndpointRouteBuilder MapAuthApi(this IEndpointRouteBuilder app)
    {
        var auth = app.MapGroup("/api").WithTags("Authentication");
        auth.MapPost("/auth/login", async (LoginRequest request, HttpContext context, TenantService tenants, JwtTokens tokens, CancellationToken ct) =>
        {
            var user = await tenants.LoginAsync(request.Username ?? "", request.Password ?? "", context.Connection.RemoteIpAddress, ct);
            var (token, refresh) = await tokens.IssueAsync(user, ct);
            return Results.Ok(new TokenPairDto(token, refresh));
        }).WithBodyLimit(BodyLimit.Unauthenticated).WithName("Login").WithSummary("Logs in with e-mail and password; returns a JWT and a refresh token.");

        auth.MapPost("/auth/token", async (RefreshRequest request, JwtTokens tokens, CancellationToken ct) =>
        {
            var (token, refresh) = await tokens.RefreshAsync(request.RefreshToken ?? "", ct);
            return Results.Ok(new TokenPairDto(token, refresh));
        }).WithBodyLimit(BodyLimit.Unauthenticated).WithName("RefreshToken").WithSummary("Trades a refresh token for a new pair; each refresh token works once, and a second use revokes every token of the user.");

        auth.MapPost("/auth/logout", async (HttpContext context, TenantService tenants, JwtTokens tokens, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            await tenants.LogoutAsync(caller, ct);
            tokens.Forget(caller.UserId);
            return Results.Ok();
        }).WithName("Logout").WithSummary("Ends every token of the calling user.");

        auth.MapGet("/auth/user", async (HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            return Results.Ok((await tenants.GetUserAsync(caller, caller.UserId, ct)).ToDto());
        }).WithName("CurrentUser").WithSummary("The calling user.");

        auth.MapPost("/noauth/activate", async (ActivateRequest request, TenantService tenants, ITenantStore store, JwtTokens tokens, CancellationToken ct) =>
        {
            var user = await tenants.ActivateAsync(request.ActivateToken ?? "", request.Password ?? "", ct);
            var secrets = await store.GetUserSecretsAsync(user.Id, ct) ?? throw PlatformException.NotFound("The user");
            var (token, refresh) = await tokens.IssueAsync(secrets, ct);
            return Results.Ok(new TokenPairDto(token, refresh));
        }).WithBodyLimit(BodyLimit.Unauthenticated).WithName("Activate").WithSummary("Sets a new user's password from the activation token; returns a JWT pair.");

        auth.MapPost("/apiKey", async (ApiKeyRequest request, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            if (string.IsNullOrWhiteSpace(request.Name))
            {
                throw PlatformException.BadRequest("An API key needs a name.");
            }

            var authority = Authority.Operator;
            if (request.Authority is not null && !User.TryParseAuthority(request.Authority, out authority))
            {
                throw PlatformException.BadRequest("authority is TENANT_ADMIN, OPERATOR or VIEWER.");
            }

            var (id, key) = await tenants.CreateApiKeyAsync(caller, request.Name, authority, ct);
            return Results.Ok(new { id = new EntityIdDto("API_KEY", id), name = request.Name, authority = User.AuthorityName(authority), key });
        }).WithName("CreateApiKey").WithSummary("Creates an API key for integrations (sent as X-Api-Key); the key is shown only now.");

        auth.MapGet("/apiKeys", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            var found = await tenants.ListApiKeysAsync(await context.CallerAsync(), Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct);
            return Results.Ok(new Page<ApiKeyDto>([.. found.Data.Select(ApiKeyDto.From)], found.TotalPages, found.TotalElements, found.HasNext));
        }).WithName("GetApiKeys").WithSummary("The tenant's API keys, a page at a time (sortProperty name or createdTime); the keys themselves are never shown again.");

        auth.MapDelete("/apiKey/{id:guid}", async (Guid id, HttpContext context, TenantService tenants, CancellationToken ct) =>
        {
            await tenants.RevokeApiKeyAsync(await context.CallerAsync(), id, ct);
            return Results.Ok();
        }).WithName("RevokeApiKey").WithSummary("Revokes an API key: the next request that sends it is refused (401).");
        return app;
    }

    internal static JsonElement Body(JsonElement? body) => body ?? throw PlatformException.BadRequest("A JSON body is required.");
}
