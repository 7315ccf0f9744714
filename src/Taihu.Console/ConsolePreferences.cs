using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Localization;
using Taihu.Platform;
using Taihu.Platform.Tenants;

namespace Taihu.WebConsole;

/// <summary>
/// The user's language and time zone. They are the user's, stored with the user (<see cref="TenantService.SavePreferencesAsync"/>,
/// in the user's additional info as ThingsBoard keeps <c>lang</c>), and applied to a browser when the user signs in
/// there. Each browser keeps a copy in cookies (ASP.NET Core's culture cookie, and <c>taihu.tz</c>), so that a page
/// is rendered without a database read. A language chosen on the sign-in page, before anyone is signed in, becomes
/// the user's at sign-in.
/// </summary>
public static class ConsolePreferences
{
    public const string TimeZoneCookie = "taihu.tz";

    /// <summary>Set when the language was switched on the sign-in page: the next sign-in keeps it as the user's.</summary>
    public const string ChosenBeforeSignInCookie = "taihu.lang.chosen";

    /// <summary>The culture's name as ThingsBoard writes a user's <c>lang</c>: <c>en_US</c>, <c>zh_CN</c>.</summary>
    public static string ToLang(CultureInfo culture) => culture?.Name == ConsoleLanguages.Chinese ? "zh_CN" : "en_US";

    /// <summary>The console's culture for a stored <c>lang</c>, or null when the console does not speak it.</summary>
    public static CultureInfo? FromLang(string? lang)
    {
        var name = lang switch
        {
            "zh_CN" or "zh" => ConsoleLanguages.Chinese,
            { } l when l.StartsWith("en", StringComparison.Ordinal) => ConsoleLanguages.English,
            _ => null,
        };
        return ConsoleLanguages.Cultures().FirstOrDefault(c => c.Name == name);
    }

    public static void SetCulture(HttpResponse response, CultureInfo culture)
    {
        ArgumentNullException.ThrowIfNull(response);
        response.Cookies.Append(CookieRequestCultureProvider.DefaultCookieName, CookieRequestCultureProvider.MakeCookieValue(new RequestCulture(culture)),
            new CookieOptions { Expires = DateTimeOffset.UtcNow.AddYears(1), HttpOnly = true, SameSite = SameSiteMode.Lax, IsEssential = true });
    }

    /// <summary>The browser's copy of the user's time zone; null: the browser's own.</summary>
    public static void SetTimeZone(HttpResponse response, string? zone)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (zone is null)
        {
            response.Cookies.Delete(TimeZoneCookie);
            return;
        }

        response.Cookies.Append(TimeZoneCookie, zone,
            new CookieOptions { Expires = DateTimeOffset.UtcNow.AddYears(1), HttpOnly = true, SameSite = SameSiteMode.Lax, IsEssential = true });
    }

    /// <summary>The time zone to show times in, from the cookie; only an IANA-shaped name is taken (it goes into the page).</summary>
    public static string? TimeZoneOf(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var zone = request.Cookies[TimeZoneCookie];
        if (zone is null || zone.Length is 0 or > 64 || !zone.Contains('/', StringComparison.Ordinal))
        {
            return null;
        }

        foreach (var c in zone)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('/' or '_' or '-' or '+'))
            {
                return null;
            }
        }

        return zone;
    }

    /// <summary>
    /// Called once the user is signed in: a language just chosen on the sign-in page becomes the user's; otherwise
    /// the user's stored language and time zone are applied to this browser.
    /// </summary>
    public static async Task ApplyAtSignInAsync(HttpContext context, Caller caller, TenantService tenants)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(tenants);
        var stored = await tenants.GetPreferencesAsync(caller, context.RequestAborted);
        if (context.Request.Cookies.ContainsKey(ChosenBeforeSignInCookie))
        {
            context.Response.Cookies.Delete(ChosenBeforeSignInCookie);
            await tenants.SavePreferencesAsync(caller, stored with { Lang = ToLang(CultureInfo.CurrentUICulture) }, context.RequestAborted);
        }
        else if (FromLang(stored.Lang) is { } culture)
        {
            SetCulture(context.Response, culture);
        }

        SetTimeZone(context.Response, stored.TimeZone);
    }
}
