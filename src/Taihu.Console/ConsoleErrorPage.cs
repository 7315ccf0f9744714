using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Localization;
using Taihu.Platform;
using Taihu.WebConsole.Resources;

namespace Taihu.WebConsole;

/// <summary>
/// What a browser gets when a console address fails: a page that says what happened in the user's language, with a
/// way back, never a blank page, a stack trace or the API's JSON. Only requests a browser makes to show a page (they
/// accept text/html) outside <c>/api</c> get it; the scripts' JSON endpoints and the API keep their problem details.
/// The page is written directly (no Blazor rendering), so it works even when rendering is what failed. The error
/// itself is logged by the exception handler, as every other.
/// </summary>
public static class ConsoleErrorPage
{
    public static IApplicationBuilder UseConsoleErrorPages(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.UseWhen(IsPageRequest, branch =>
        {
            branch.UseExceptionHandler(new ExceptionHandlerOptions
            {
                SuppressDiagnosticsCallback = context => context.Exception is PlatformException { Status: < 500 } or BadHttpRequestException { StatusCode: < 500 },
                ExceptionHandler = context =>
                {
                    var (status, message) = context.Features.Get<IExceptionHandlerFeature>()?.Error switch
                    {
                        PlatformException e => (e.Status, e.Message),
                        BadHttpRequestException e => (e.StatusCode, (string?)null),
                        _ => (500, null),
                    };
                    return WriteAsync(context, status, message);
                },
            });
            branch.UseStatusCodePages(context => WriteAsync(context.HttpContext, context.HttpContext.Response.StatusCode, null));
        });
    }

    private static bool IsPageRequest(HttpContext context) =>
        !context.Request.Path.StartsWithSegments("/api") && (HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsPost(context.Request.Method))
        && context.Request.Headers.Accept.ToString().Contains("text/html", StringComparison.OrdinalIgnoreCase);

    private static async Task WriteAsync(HttpContext context, int status, string? message)
    {
        var text = context.RequestServices.GetRequiredService<IStringLocalizer<ConsoleText>>();
        var title = status switch
        {
            404 => text["ErrorNotFoundTitle"].Value,
            403 => text["ErrorForbiddenTitle"].Value,
            >= 500 => text["ErrorServerTitle"].Value,
            _ => text["ErrorRequestTitle"].Value,
        };
        message ??= status switch
        {
            404 => text["ErrorNotFound"].Value,
            403 => text["ErrorForbidden"].Value,
            >= 500 => text["ErrorServer"].Value,
            _ => string.Format(System.Globalization.CultureInfo.CurrentCulture, text["ErrorRequest"].Value, status),
        };
        var html = HtmlEncoder.Default;
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/html; charset=utf-8";
        var lang = System.Globalization.CultureInfo.CurrentUICulture.Name is { Length: > 0 } name ? name : "en";
        await context.Response.WriteAsync($$"""
            <!DOCTYPE html>
            <html lang="{{html.Encode(lang)}}">
            <head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1" />
            <title>{{html.Encode(title)}} - Taihu</title>
            <style>body { font-family: Roboto, Helvetica, Arial, sans-serif; margin: 0; padding: 48px 16px; color: #212121; } main { max-width: 560px; margin: 0 auto; } h1 { font-weight: 400; } a { color: #594ae2; }</style></head>
            <body><main>
            <h1 data-testid="error-title">{{html.Encode(title)}}</h1>
            <p data-testid="error" role="alert">{{html.Encode(message)}}</p>
            <p><a href="/">{{html.Encode(text["ErrorBack"].Value)}}</a></p>
            </main></body></html>
            """, context.RequestAborted);
    }
}
