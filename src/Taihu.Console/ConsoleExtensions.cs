using System.Globalization;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Localization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using MudBlazor.Services;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Platform.Tenants;
using Taihu.WebConsole.Components;

namespace Taihu.WebConsole;

/// <summary>
/// The web console: Blazor components rendered on the server (static rendering; no page needs a live circuit yet),
/// signed in with a cookie over the platform's own users and roles. Pages call the platform services with the
/// signed-in user as the caller, so every permission check is the one the JWT API makes.
/// </summary>
public static class ConsoleExtensions
{
    public static IServiceCollection AddTaihuConsole(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddRazorComponents();
        services.AddMudServices();
        services.AddLocalization();
        services.AddScoped<HomeStats>();
        services.Configure<RequestLocalizationOptions>(options =>
        {
            var cultures = ConsoleLanguages.Cultures();
            options.DefaultRequestCulture = new RequestCulture(cultures[0]);
            options.SupportedCultures = cultures;
            options.SupportedUICultures = cultures;
            // The choice made with the language switch (a cookie), else the browser's Accept-Language.
            options.RequestCultureProviders = [new CookieRequestCultureProvider(), new AcceptLanguageHeaderRequestCultureProvider()];
        });
        services.AddCascadingAuthenticationState();
        services.AddAuthorization();
        services.AddAuthentication(ConsoleSession.Scheme).AddCookie(ConsoleSession.Scheme, options =>
        {
            options.Cookie.Name = "taihu.console";
            options.Cookie.HttpOnly = true;
            // Strict: a page of another site cannot make the browser send the session with its requests.
            options.Cookie.SameSite = SameSiteMode.Strict;
            options.LoginPath = "/login";
            options.LogoutPath = "/logout";
            options.AccessDeniedPath = "/login";
            options.ExpireTimeSpan = TimeSpan.FromHours(8);
            options.SlidingExpiration = true;
            options.Events.OnValidatePrincipal = ConsoleSession.ValidateAsync;
        });
        return services;
    }

    public static WebApplication MapTaihuConsole(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        // The console's pages speak the user's language; the API and the device endpoints stay culture-free.
        app.UseWhen(context => !context.Request.Path.StartsWithSegments("/api"), branch => branch.UseRequestLocalization());
        // A page that fails, or an address with no page, is told in words (ConsoleErrorPage).
        app.UseConsoleErrorPages();
        // The console's session is a cookie: an API request without cookies (a script, a dashboard, the load
        // generator: a JWT or an API key in a header) has no session to read, so the cookie handler is not run for it
        // (it cost about 1.3 KB and a service scope's lookups per call at a thousand RPC calls a second).
        app.UseWhen(context => !context.Request.Path.StartsWithSegments("/api") || context.Request.Headers.ContainsKey("Cookie"),
            branch => branch.UseAuthentication());
        // The host adds authentication in front of everything unless the application did (a branch's marker is
        // the branch's own): tell it this one did, as UseAuthentication would.
        ((IApplicationBuilder)app).Properties["__AuthenticationMiddlewareSet"] = true;
        app.UseAuthorization();
        app.UseAntiforgery();
        app.MapStaticAssets();
        app.MapRazorComponents<ConsoleApp>();

        app.MapPost("/logout", async (HttpContext context, [FromForm] string? returnUrl) =>
        {
            await context.SignOutAsync(ConsoleSession.Scheme);
            return Results.LocalRedirect("/login");
        }).ExcludeFromDescription();

        // ThingsBoard's activation link (GET /api/user/{id}/activationLink) opened in a browser: the console's page
        // where the new user sets a password. The token goes along; the API's POST on the same path is unchanged.
        app.MapGet("/api/noauth/activate", (string? activateToken) =>
            Results.Redirect("/activate?activateToken=" + Uri.EscapeDataString(activateToken ?? ""))).ExcludeFromDescription();

        // The language switch: the signed-in user's language is stored with the user (it follows them to another
        // browser); before sign-in it is this browser's until the user signs in. Then back to the page it was on.
        app.MapGet("/console/language", async (HttpContext context, TenantService tenants, string? culture, string? returnUrl) =>
        {
            if (ConsoleLanguages.Cultures().FirstOrDefault(c => c.Name == culture) is { } chosen)
            {
                ConsolePreferences.SetCulture(context.Response, chosen);
                if (ConsoleSession.CallerOf(context.User) is { } caller)
                {
                    var stored = await tenants.GetPreferencesAsync(caller, context.RequestAborted);
                    await tenants.SavePreferencesAsync(caller, stored with { Lang = ConsolePreferences.ToLang(chosen) }, context.RequestAborted);
                }
                else
                {
                    context.Response.Cookies.Append(ConsolePreferences.ChosenBeforeSignInCookie, "1",
                        new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Lax, IsEssential = true });
                }
            }

            // Only a path of this site: never an open redirect.
            var local = returnUrl is { Length: > 0 } && returnUrl[0] == '/' && !returnUrl.StartsWith("//", StringComparison.Ordinal)
                && !returnUrl.StartsWith("/\\", StringComparison.Ordinal);
            return Results.LocalRedirect(local ? returnUrl! : "/");
        }).ExcludeFromDescription();

        // The Home page polls this for its live figures.
        app.MapGet("/console/home/stats", async (HttpContext context, HomeStats stats, CancellationToken ct) =>
        {
            if (ConsoleSession.CallerOf(context.User) is not { } caller)
            {
                return Results.Problem(statusCode: 401, detail: "Your session has ended; sign in again.");
            }

            try
            {
                return Results.Ok(await stats.ReadAsync(caller, ct));
            }
            catch (PlatformException e)
            {
                return Results.Problem(statusCode: e.Status, detail: e.Message);
            }
        }).ExcludeFromDescription();

        // The device page's live values: server-sent events from the ingest's commits (see DeviceStream).
        app.MapGet("/console/devices/{id:guid}/stream", (Guid id, HttpContext context, IDeviceStore devices, ITelemetryStore telemetry, LiveFeed feed, ITenantStore users,
            Microsoft.Extensions.Hosting.IHostApplicationLifetime lifetime) => DeviceStream.RunAsync(id, context, devices, telemetry, feed, users, lifetime.ApplicationStopping)).ExcludeFromDescription();

        // The device page polls this for its latest values: the numbers stay off any Blazor circuit.
        app.MapGet("/console/devices/{id:guid}/latest", async (Guid id, HttpContext context, DeviceDataService data, CancellationToken ct) =>
        {
            if (ConsoleSession.CallerOf(context.User) is not { } caller)
            {
                return Results.Problem(statusCode: 401, detail: "Your session has ended; sign in again.");
            }

            try
            {
                var latest = await data.GetLatestAsync(caller, id, null, ct);
                return Results.Ok(latest.Select(p => new { key = p.Key, ts = p.Ts, value = p.Value.ToString() }));
            }
            catch (PlatformException e)
            {
                return Results.Problem(statusCode: e.Status, detail: e.Message);
            }
        }).ExcludeFromDescription();
        return app;
    }
}

/// <summary>The console's languages: English, and Simplified Chinese where the runtime has ICU.</summary>
public static class ConsoleLanguages
{
    public const string English = "en";
    public const string Chinese = "zh-CN";

    /// <summary>
    /// English first (the default). Both need the culture data of ICU (libicu); a process running with invariant
    /// globalization (a test host) can create neither, and then the console speaks English with invariant formats.
    /// </summary>
    public static IList<CultureInfo> Cultures()
    {
        var cultures = new List<CultureInfo>(2);
        foreach (var name in (ReadOnlySpan<string>)[English, Chinese])
        {
            try
            {
                cultures.Add(CultureInfo.GetCultureInfo(name, predefinedOnly: true));
            }
            catch (CultureNotFoundException)
            {
            }
        }

        return cultures.Count > 0 ? cultures : [CultureInfo.InvariantCulture];
    }
}

/// <summary>The console's cookie session: who is signed in, as the platform's <see cref="Caller"/>.</summary>
public static class ConsoleSession
{
    public const string Scheme = "TaihuConsole";

    private const string TenantClaim = "taihu:tenant";
    private const string VersionClaim = "taihu:ver";

    public static ClaimsPrincipal Principal(UserSecrets secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        var user = secrets.User;
        var claims = new List<Claim>
        {
            new(ClaimTypes.NameIdentifier, user.Id.ToString()),
            new(ClaimTypes.Name, user.Email),
            new(ClaimTypes.Role, User.AuthorityName(user.Authority)),
            new(VersionClaim, secrets.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        };
        if (user.TenantId is { } tenant)
        {
            claims.Add(new Claim(TenantClaim, tenant.ToString()));
        }

        return new ClaimsPrincipal(new ClaimsIdentity(claims, Scheme));
    }

    /// <summary>The signed-in caller, or null when nobody is signed in.</summary>
    public static Caller? CallerOf(ClaimsPrincipal? principal)
    {
        if (principal?.Identity is not { IsAuthenticated: true } || !Guid.TryParse(principal.FindFirstValue(ClaimTypes.NameIdentifier), out var id)
            || !User.TryParseAuthority(principal.FindFirstValue(ClaimTypes.Role), out var authority))
        {
            return null;
        }

        Guid? tenant = Guid.TryParse(principal.FindFirstValue(TenantClaim), out var t) ? t : null;
        return new Caller(id, tenant, authority, principal.FindFirstValue(ClaimTypes.Name) ?? "");
    }

    /// <summary>
    /// A session ends when its user is deleted, logs out of the API or changes the password (the token version the
    /// JWTs carry moves on), as a JWT does.
    /// </summary>
    public static async Task ValidateAsync(CookieValidatePrincipalContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var store = context.HttpContext.RequestServices.GetRequiredService<ITenantStore>();
        if (!await IsCurrentAsync(context.Principal, store, context.HttpContext.RequestAborted))
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(Scheme);
        }
    }

    /// <summary>
    /// Whether the session's user still exists and its tokens have not been ended since it signed in; also asked
    /// now and then by a long request (a live stream) that outlives the check made when it started.
    /// </summary>
    public static async Task<bool> IsCurrentAsync(ClaimsPrincipal? principal, ITenantStore store, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (!Guid.TryParse(principal?.FindFirstValue(ClaimTypes.NameIdentifier), out var id))
        {
            return false;
        }

        var secrets = await store.GetUserSecretsAsync(id, cancellationToken);
        return secrets is not null && secrets.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) == principal!.FindFirstValue(VersionClaim);
    }

}
