using System.Collections.Concurrent;
using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Taihu.Broker.Hosting;
using Taihu.Platform;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>
/// Issues and checks the JWTs of the management API (HS256). The signing key is generated on first start and kept
/// in the data directory (<c>jwt-signing.key</c>), so tokens survive a restart. A token carries the user's token
/// version: logging out or changing the password bumps it, and every older token stops working at once.
/// </summary>
public sealed class JwtTokens
{
    private const string Issuer = "taihu";
    private readonly SymmetricSecurityKey _key;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly SecurityOptions _options;
    private readonly TimeProvider _time;
    private readonly ITenantStore _store;
    private readonly ConcurrentDictionary<Guid, UserSecrets> _users = new();

    public JwtTokens(IOptions<ListenerOptions> listeners, IOptions<SecurityOptions> options, TimeProvider time, ITenantStore store)
    {
        _options = options.Value;
        _time = time;
        _store = store;
        _key = new SymmetricSecurityKey(LoadOrCreateKey(listeners.Value.DataDirectory));
    }

    /// <summary>A new access token and refresh token for the user.</summary>
    public (string Token, string RefreshToken) Issue(UserSecrets user) =>
        (Create(user, "access", _options.TokenLifetime), Create(user, "refresh", _options.RefreshTokenLifetime));

    /// <summary>The caller a valid access token names, or a 401 saying why not.</summary>
    public async Task<Caller> ValidateAsync(string token, string type = "access", CancellationToken cancellationToken = default)
    {
        var result = await _handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = Issuer,
            ValidateAudience = false,
            IssuerSigningKey = _key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            ClockSkew = TimeSpan.FromSeconds(30),
            LifetimeValidator = (notBefore, expires, _, _) => expires is { } e && e > _time.GetUtcNow().UtcDateTime,
        });
        if (!result.IsValid)
        {
            throw result.Exception is SecurityTokenExpiredException || result.Exception?.Message.Contains("Lifetime", StringComparison.Ordinal) == true
                ? new PlatformException(401, 11, "Token has expired")
                : PlatformException.Unauthorized("Authentication failed: the token is not valid.");
        }

        var claims = result.Claims;
        object? Claim(string name) => claims.TryGetValue(name, out var value) ? value : null;
        if (!Equals(Claim("typ"), type) || !Guid.TryParse(Claim("sub") as string, out var userId))
        {
            throw PlatformException.Unauthorized("Authentication failed: the token is not valid.");
        }

        var user = await UserAsync(userId, cancellationToken);
        var version = Convert.ToInt32(Claim("ver") ?? -1, System.Globalization.CultureInfo.InvariantCulture);
        if (user is null || user.TokenVersion != version)
        {
            throw PlatformException.Unauthorized("Authentication failed: the token was revoked.");
        }

        return new Caller(user.User.Id, user.User.TenantId, user.User.Authority, user.User.Email);
    }

    /// <summary>Forgets what is known of the user (after a logout, a password change or a deletion).</summary>
    public void Forget(Guid userId) => _users.TryRemove(userId, out _);

    private async ValueTask<UserSecrets?> UserAsync(Guid id, CancellationToken cancellationToken)
    {
        if (_users.TryGetValue(id, out var known))
        {
            return known;
        }

        var user = await _store.GetUserSecretsAsync(id, cancellationToken);
        if (user is not null)
        {
            _users[id] = user;
        }

        return user;
    }

    private string Create(UserSecrets user, string type, TimeSpan lifetime)
    {
        var now = _time.GetUtcNow().UtcDateTime;
        var claims = new Dictionary<string, object>
        {
            ["sub"] = user.User.Id.ToString(),
            ["email"] = user.User.Email,
            ["scopes"] = new[] { User.AuthorityName(user.User.Authority) },
            ["typ"] = type,
            ["ver"] = user.TokenVersion,
            ["jti"] = Guid.NewGuid().ToString("N"),
        };
        if (user.User.TenantId is { } tenant)
        {
            claims["tenantId"] = tenant.ToString();
        }

        return _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Claims = claims,
            IssuedAt = now,
            NotBefore = now,
            Expires = now + lifetime,
            SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.HmacSha256),
        });
    }

    private static byte[] LoadOrCreateKey(string dataDirectory)
    {
        Directory.CreateDirectory(dataDirectory);
        var path = Path.Combine(dataDirectory, "jwt-signing.key");
        if (File.Exists(path))
        {
            var existing = Convert.FromBase64String(File.ReadAllText(path).Trim());
            if (existing.Length >= 32)
            {
                return existing;
            }
        }

        var key = RandomNumberGenerator.GetBytes(64);
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, Convert.ToBase64String(key));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        // Two processes starting at once: the first rename wins and both read the same key.
        try
        {
            File.Move(temporary, path, overwrite: false);
        }
        catch (IOException)
        {
            File.Delete(temporary);
        }

        return Convert.FromBase64String(File.ReadAllText(path).Trim());
    }
}

/// <summary>Who is calling: from <c>X-Authorization: Bearer ..</c> or <c>Authorization: Bearer ..</c> (JWT), or <c>X-Api-Key</c>.</summary>
public static class CallerResolution
{
    private const string ItemKey = "taihu.caller";

    /// <summary>The authenticated caller of this request, or a 401.</summary>
    public static async ValueTask<Caller> CallerAsync(this HttpContext context)
    {
        if (context.Items.TryGetValue(ItemKey, out var known) && known is Caller caller)
        {
            return caller;
        }

        var services = context.RequestServices;
        if (context.Request.Headers["X-Api-Key"].ToString() is { Length: > 0 } apiKey)
        {
            caller = await services.GetRequiredService<TenantService>().FindApiKeyAsync(apiKey, context.RequestAborted)
                ?? throw PlatformException.Unauthorized("Authentication failed: unknown API key.");
        }
        else
        {
            var header = context.Request.Headers["X-Authorization"].ToString();
            if (header.Length == 0)
            {
                header = context.Request.Headers.Authorization.ToString();
            }

            if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length <= 7)
            {
                throw PlatformException.Unauthorized("Authentication failed: send a JWT in 'X-Authorization: Bearer <token>' or 'Authorization', or an API key in 'X-Api-Key'.");
            }

            caller = await services.GetRequiredService<JwtTokens>().ValidateAsync(header[7..].Trim(), cancellationToken: context.RequestAborted);
        }

        context.Items[ItemKey] = caller;
        return caller;
    }

    /// <summary>Reads a ThingsBoard id member (<c>{"id":"..","entityType":".."}</c>) or a plain string.</summary>
    public static Guid? EntityId(System.Text.Json.JsonElement body, string property)
    {
        if (body.ValueKind != System.Text.Json.JsonValueKind.Object || !body.TryGetProperty(property, out var value))
        {
            return null;
        }

        var text = value.ValueKind switch
        {
            System.Text.Json.JsonValueKind.Object when value.TryGetProperty("id", out var id) && id.ValueKind == System.Text.Json.JsonValueKind.String => id.GetString(),
            System.Text.Json.JsonValueKind.String => value.GetString(),
            _ => null,
        };
        return text is null ? null : Guid.TryParse(text, out var guid) ? guid : throw PlatformException.BadRequest($"{property} is not a valid id.");
    }

    /// <summary>A string member of a JSON body, or null.</summary>
    public static string? Text(System.Text.Json.JsonElement body, string property) =>
        body.ValueKind == System.Text.Json.JsonValueKind.Object && body.TryGetProperty(property, out var value) && value.ValueKind == System.Text.Json.JsonValueKind.String
            ? value.GetString()
            : null;
}
