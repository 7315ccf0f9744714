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
/// in the data directory (<c>jwt-signing.key</c>), so tokens survive a restart; on a cluster it is kept in the
/// shared database instead (the first node to start makes it), so that a token from one node works on every node. A token carries the user's token
/// version: logging out or changing the password bumps it, and every older token stops working at once.
/// </summary>
/// <remarks>
/// Refresh tokens are good for one exchange: each is remembered by its id (<c>jti</c>) in the database and the
/// exchange deletes that row, so of two exchanges racing exactly one wins. A refresh token presented again (a
/// thief's copy or the owner's, whichever came second) revokes every token of the user, as OAuth 2.0's refresh
/// token rotation recommends. Validated users are cached; <see cref="Forget"/> and <see cref="ForgetTenant"/>
/// drop them, and a read that raced with a forget is not cached (the generation check under the lock). On a
/// cluster a logout or password change on another node bumps the version in the database without this node's
/// cache hearing of it, so there a user is read again once their entry is <see cref="ClusterUserCacheTime"/> old.
/// </remarks>
public sealed partial class JwtTokens
{
    private const string Issuer = "taihu";
    private static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(30);
    private readonly SymmetricSecurityKey _key;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly SecurityOptions _options;
    private readonly TimeProvider _time;
    private readonly ITenantStore _store;
    private readonly ILogger<JwtTokens> _logger;
    private readonly ConcurrentDictionary<Guid, CachedUser> _users = new();

    /// <summary>On a cluster: how long a user read from the database is trusted before it is read again.</summary>
    internal static readonly TimeSpan ClusterUserCacheTime = TimeSpan.FromSeconds(5);

    private readonly long _userCacheTicks;

    private readonly record struct CachedUser(UserSecrets Secrets, long ReadAt);

    // Access tokens whose signature and claims were checked, by their exact text: a token presented again (an API
    // client calls with the same one until it expires) skips the parsing, the claims' dictionary and the HMAC
    // (lightweight RPC at 1,000 calls/s: docs/benchmarks.md, issue 11). Its expiry and its user's token version are
    // still checked on every use, so a logout or an expired token fails as before. Only a token that passed every
    // check is remembered, so nobody can fill this with made-up ones.
    private readonly ConcurrentDictionary<string, CheckedToken> _checked = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, CheckedToken>.AlternateLookup<ReadOnlySpan<char>> _checkedBySpan;

    /// <summary>Access tokens remembered at most; past it the memory starts over (tokens live an hour or so).</summary>
    internal const int MaxCheckedTokens = 10_000;

    private readonly record struct CheckedToken(Guid UserId, int Version, long Expires, long NotBefore);

    private readonly Lock _cacheGate = new();
    private long _generation;

    public JwtTokens(IOptions<ServerOptions> server, IOptions<SecurityOptions> options, TimeProvider time, ITenantStore store, ILogger<JwtTokens> logger,
        IOptions<Taihu.Cluster.ClusterNodeOptions> cluster)
    {
        _options = options.Value;
        _time = time;
        _store = store;
        _logger = logger;
        var clustered = cluster.Value.Enabled;
        _userCacheTicks = clustered ? (long)(ClusterUserCacheTime.TotalSeconds * time.TimestampFrequency) : long.MaxValue;
        // Made once per process, before the first token is issued or checked; the database is ready by then (the
        // platform's start-up ran before the listeners opened).
        _key = new SymmetricSecurityKey(clustered
            ? Convert.FromBase64String(store.GetOrAddSettingAsync(SigningKeySetting, Convert.ToBase64String(RandomNumberGenerator.GetBytes(64))).GetAwaiter().GetResult())
            : LoadOrCreateKey(server.Value.DataDirectory));
        _checkedBySpan = _checked.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>A new access token and refresh token for the user; the refresh token is remembered for one exchange.</summary>
    public async Task<(string Token, string RefreshToken)> IssueAsync(UserSecrets user, CancellationToken cancellationToken = default)
    {
        var tokenId = Guid.NewGuid().ToString("N");
        var now = _time.GetUtcNow();
        await _store.AddRefreshTokenAsync(tokenId, user.User.Id, (now + _options.RefreshTokenLifetime).ToUnixTimeMilliseconds(), now.ToUnixTimeMilliseconds(), cancellationToken);
        return (Create(user, "access", _options.TokenLifetime, Guid.NewGuid().ToString("N")), Create(user, "refresh", _options.RefreshTokenLifetime, tokenId));
    }

    /// <summary>Trades a refresh token for a new pair, once; a second use revokes every token of the user.</summary>
    public async Task<(string Token, string RefreshToken)> RefreshAsync(string refreshToken, CancellationToken cancellationToken = default)
    {
        var (user, claims) = await ValidateCoreAsync(refreshToken, "refresh", cancellationToken);
        if (claims.TryGetValue("jti", out var jti) && jti is string tokenId && await _store.ConsumeRefreshTokenAsync(tokenId, user.User.Id, cancellationToken))
        {
            return await IssueAsync(user, cancellationToken);
        }

        await _store.BumpTokenVersionAsync(user.User.Id, cancellationToken);
        Forget(user.User.Id);
        LogRefreshReused(_logger, user.User.Id);
        throw PlatformException.Unauthorized("Authentication failed: the refresh token was already used; every token of the user is revoked.");
    }

    /// <summary>The caller a valid access token names, or a 401 saying why not.</summary>
    public async Task<Caller> ValidateAsync(string token, string type = "access", CancellationToken cancellationToken = default)
    {
        var (user, claims) = await ValidateCoreAsync(token, type, cancellationToken);
        if (type == "access" && Seconds(claims.TryGetValue("exp", out var exp) ? exp : null) is { } expires)
        {
            if (_checked.Count >= MaxCheckedTokens)
            {
                _checked.Clear();
            }

            _checked[token] = new CheckedToken(user.User.Id, user.TokenVersion, expires, Seconds(claims.TryGetValue("nbf", out var nbf) ? nbf : null) ?? 0);
        }

        return new Caller(user.User.Id, user.User.TenantId, user.User.Authority, user.User.Email);
    }

    /// <summary>
    /// The caller of an access token checked before (<see cref="ValidateAsync"/> remembered it), or null when it was
    /// not; the same answers as <see cref="ValidateAsync"/> for it: expired, not valid yet, revoked.
    /// </summary>
    public ValueTask<Caller?> ValidateCheckedAsync(ReadOnlySpan<char> token, CancellationToken cancellationToken = default) =>
        _checkedBySpan.TryGetValue(token, out var known) ? ValidateCheckedAsync(known, cancellationToken) : ValueTask.FromResult<Caller?>(null);

    private async ValueTask<Caller?> ValidateCheckedAsync(CheckedToken known, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        if (known.Expires <= now.ToUnixTimeSeconds())
        {
            throw new PlatformException(401, 11, "Token has expired");
        }

        if (known.NotBefore > (now + ClockSkew).ToUnixTimeSeconds())
        {
            throw PlatformException.Unauthorized("Authentication failed: the token is not valid yet.");
        }

        var user = await UserAsync(known.UserId, cancellationToken);
        if (user is null || user.TokenVersion != known.Version)
        {
            throw PlatformException.Unauthorized("Authentication failed: the token was revoked.");
        }

        return new Caller(user.User.Id, user.User.TenantId, user.User.Authority, user.User.Email);
    }

    /// <summary>
    /// The caller a valid access token names and when the token expires (a long-lived connection such as a live
    /// WebSocket ends then), or a 401 saying why not.
    /// </summary>
    public async Task<(Caller Caller, DateTimeOffset Expires)> ValidateWithExpiryAsync(string token, CancellationToken cancellationToken = default)
    {
        var (user, claims) = await ValidateCoreAsync(token, "access", cancellationToken);
        var expires = DateTimeOffset.FromUnixTimeSeconds(Seconds(claims.TryGetValue("exp", out var exp) ? exp : null) ?? 0);
        return (new Caller(user.User.Id, user.User.TenantId, user.User.Authority, user.User.Email), expires);
    }

    private async Task<(UserSecrets User, IDictionary<string, object> Claims)> ValidateCoreAsync(string token, string type, CancellationToken cancellationToken)
    {
        var result = await _handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = Issuer,
            ValidateAudience = false,
            IssuerSigningKey = _key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            // Lifetime is checked below against our TimeProvider, so that expired and not-yet-valid are told apart.
            ValidateLifetime = false,
        });
        if (!result.IsValid)
        {
            throw PlatformException.Unauthorized("Authentication failed: the token is not valid.");
        }

        var claims = result.Claims;
        object? Claim(string name) => claims.TryGetValue(name, out var value) ? value : null;
        var now = _time.GetUtcNow();
        if (Seconds(Claim("exp")) is not { } expires || expires <= now.ToUnixTimeSeconds())
        {
            throw new PlatformException(401, 11, "Token has expired");
        }

        // A token not valid yet (nbf ahead of our clock by more than the skew between nodes) is refused.
        if (Seconds(Claim("nbf")) is { } notBefore && notBefore > (now + ClockSkew).ToUnixTimeSeconds())
        {
            throw PlatformException.Unauthorized("Authentication failed: the token is not valid yet.");
        }

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

        return (user, claims);
    }

    private static long? Seconds(object? claim) => claim switch
    {
        long l => l,
        int i => i,
        double d => (long)d,
        string text when long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed) => parsed,
        _ => null,
    };

    /// <summary>Forgets what is known of the user (after a logout, a password change or a deletion).</summary>
    public void Forget(Guid userId)
    {
        lock (_cacheGate)
        {
            _generation++;
            _users.TryRemove(userId, out _);
        }
    }

    /// <summary>Forgets every user of a tenant (after the tenant is deleted): their tokens fail from now on.</summary>
    public void ForgetTenant(Guid tenantId)
    {
        lock (_cacheGate)
        {
            _generation++;
            foreach (var (id, cached) in _users)
            {
                if (cached.Secrets.User.TenantId == tenantId)
                {
                    _users.TryRemove(id, out _);
                }
            }
        }
    }

    private async ValueTask<UserSecrets?> UserAsync(Guid id, CancellationToken cancellationToken)
    {
        if (_users.TryGetValue(id, out var known) && _time.GetTimestamp() - known.ReadAt < _userCacheTicks)
        {
            return known.Secrets;
        }

        long generation;
        lock (_cacheGate)
        {
            generation = _generation;
        }

        var user = await _store.GetUserSecretsAsync(id, cancellationToken);
        if (user is not null)
        {
            lock (_cacheGate)
            {
                // A forget since the read began may concern this user: use the row, do not keep it.
                if (generation == _generation)
                {
                    _users[id] = new CachedUser(user, _time.GetTimestamp());
                }
            }
        }

        return user;
    }

    private string Create(UserSecrets user, string type, TimeSpan lifetime, string tokenId)
    {
        var now = _time.GetUtcNow().UtcDateTime;
        var claims = new Dictionary<string, object>
        {
            ["sub"] = user.User.Id.ToString(),
            ["email"] = user.User.Email,
            ["scopes"] = new[] { User.AuthorityName(user.User.Authority) },
            ["typ"] = type,
            ["ver"] = user.TokenVersion,
            ["jti"] = tokenId,
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

    [LoggerMessage(EventId = 2401, Level = LogLevel.Warning, Message = "A refresh token of user {UserId} was presented a second time; every token of the user is revoked")]
    private static partial void LogRefreshReused(ILogger logger, Guid userId);

    /// <summary>The name of the signing key's row in the database's settings, on a cluster.</summary>
    internal const string SigningKeySetting = "jwt_signing_key";

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

            if (header.Length == 0 && Taihu.WebConsole.ConsoleSession.CallerOf(context.User) is { } session)
            {
                // The console's session cookie, for its pages' same-origin calls; it is SameSite=Strict, so a page
                // of another site cannot send it, and its user's token version was checked when it was read.
                caller = session;
            }
            else if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length <= 7)
            {
                throw PlatformException.Unauthorized("Authentication failed: send a JWT in 'X-Authorization: Bearer <token>' or 'Authorization', or an API key in 'X-Api-Key'.");
            }
            else
            {
                var tokens = services.GetRequiredService<JwtTokens>();
                var remembered = tokens.ValidateCheckedAsync(header.AsSpan(7).Trim(), context.RequestAborted);
                caller = await remembered ?? await tokens.ValidateAsync(header[7..].Trim(), cancellationToken: context.RequestAborted);
            }
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
